import { constants as osConstants } from 'node:os';

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);

/** `EEXIST` for 17, or `E<n>` for an errno this platform does not name. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

export const ERRNO = osConstants.errno;

/** A syscall that failed, with the errno kept as a number and a name, never flattened into prose. */
export class SyscallError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
    detail?: string,
  ) {
    super(`${syscall} failed: ${errnoName(errno)} (errno ${errno})${detail ? `: ${detail}` : ''}`);
    this.name = 'SyscallError';
    this.code = errnoName(errno);
  }
}

/** Throws SyscallError for a negative native result, returns it otherwise. */
export function check(syscall: string, result: number, detail?: string): number {
  if (result < 0) throw new SyscallError(syscall, -result, detail);
  return result;
}
