/**
 * The one error root. Every failure the handler reports is an FcUffdError (or a subclass: SyscallError,
 * StoreError, ChunkFormatError, VmGoneError) with a stable `code` from this union: callers and tests
 * match on the code, never on the message. Codes are grouped by layer: FC_UFFD_* (the addon itself),
 * SYSCALL (a kernel call), HANDSHAKE_* (what the VMM sent), STORE_* (a chunk store), SNAPSHOT_* (the
 * memory we serve from), VM_* (a running VM's fault loop), CONFIG and CONFIG_* (what the operator asked for:
 * CONFIG_INVALID an option value, CONFIG_OUTPUT_EXISTS an output that would overwrite a file),
 * TRACE_* (restore timelines), CONTROL_* (a daemon control API request: each maps to one HTTP status,
 * see docs/control-api.yaml).
 */
export type ErrorCode =
  | 'FC_UFFD_USAGE'
  | 'FC_UFFD_ADDON_MISSING'
  | 'SYSCALL'
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
  | 'STORE_NOT_FOUND'
  | 'STORE_IO'
  | 'STORE_INVALID_NAME'
  | 'STORE_TIMEOUT'
  | 'STORE_HTTP_STATUS'
  | 'STORE_INTEGRITY'
  | 'STORE_ABORTED'
  | 'STORE_CONFIG'
  /** A VM's chunk could not be read from its store after the retries (timeout, server down, 5xx, bytes that never verified): that VM is stopped. */
  | 'STORE_FETCH_FAILED'
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
  | 'SNAPSHOT_CHUNK_FORMAT'
  | 'VM_FAULT_OUTSIDE_REGIONS'
  | 'VM_IOCTL'
  | 'VM_PAGE_NOT_INSTALLED'
  | 'VM_UNEXPECTED_EVENT'
  | 'VM_READ'
  | 'VM_GONE'
  | 'WORKING_SET'
  | 'WORKING_SET_MISMATCH'
  | 'TRACE_OPEN'
  | 'TRACE_FORMAT'
  | 'CONFIG'
  | 'CONTROL_BAD_REQUEST'
  | 'CONTROL_FORBIDDEN'
  | 'CONTROL_NOT_FOUND'
  | 'CONTROL_METHOD_NOT_ALLOWED'
  | 'CONTROL_CONFLICT'
  | 'CONTROL_BODY_TOO_LARGE'
  | 'CONTROL_STOPPING'
  | 'CONFIG_INVALID'
  | 'CONFIG_OUTPUT_EXISTS'
  /** An output file could not be written for want of space or by an I/O error (ENOSPC, EDQUOT, EIO). */
  | 'OUTPUT_WRITE'
  | 'ABORTED'
  | 'EMULATOR_MISSING'
  | 'INTERNAL';

export class FcUffdError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}
