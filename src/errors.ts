/**
 * Every failure the handler reports has a stable `code` (callers and tests match on it, never on the
 * message). Codes are grouped by layer: HANDSHAKE_* (what the VMM sent), SNAPSHOT_* (the memory we
 * serve from), VM_* (a running VM's fault loop), CONFIG_* (what the operator asked for:
CONFIG_INVALID an option value, CONFIG_OUTPUT_EXISTS an output that would overwrite a file).
 */
export type ErrorCode =
  | 'HANDSHAKE_TIMEOUT'
  | 'HANDSHAKE_EOF'
  | 'HANDSHAKE_TRUNCATED'
  | 'HANDSHAKE_NO_FD'
  | 'HANDSHAKE_TOO_MANY_FDS'
  | 'HANDSHAKE_JSON'
  | 'HANDSHAKE_SHAPE'
  | 'HANDSHAKE_PAGE_SIZE'
  | 'HANDSHAKE_ALIGNMENT'
  | 'HANDSHAKE_OVERLAP'
  | 'HANDSHAKE_BEYOND_SNAPSHOT'
  | 'HANDSHAKE_RECV'
  | 'HANDSHAKE_UFFD_BLOCKING'
  | 'HANDSHAKE_NOT_UFFD'
  | 'SNAPSHOT_OPEN'
  | 'SNAPSHOT_EMPTY'
  | 'SNAPSHOT_MANIFEST_INVALID'
  | 'SNAPSHOT_MANIFEST_VERSION'
  | 'SNAPSHOT_MANIFEST_CORRUPT'
  | 'SNAPSHOT_MANIFEST_MISSING'
  | 'SNAPSHOT_CORRUPT_CHUNK'
  | 'SNAPSHOT_MISSING_CHUNK'
  | 'SNAPSHOT_STORE'
  | 'VM_FAULT_OUTSIDE_REGIONS'
  | 'VM_IOCTL'
  | 'VM_UNEXPECTED_EVENT'
  | 'VM_READ'
  | 'WORKING_SET'
  | 'WORKING_SET_MISMATCH'
  | 'CONFIG'
  | 'CONFIG_INVALID'
  | 'CONFIG_OUTPUT_EXISTS'
  | 'INTERNAL';

export class FcUffdError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.name = 'FcUffdError';
  }
}
