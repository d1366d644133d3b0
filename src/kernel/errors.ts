import { constants as osConstants } from 'node:os';
import { FcUffdError } from '../errors.js';

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, value]) => [value, name]));

/** `EEXIST` for 17, or `E<n>` for an errno this platform does not name. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

export const ERRNO = osConstants.errno;

/** A syscall that failed (code SYSCALL), with the errno kept as a number and a name, never flattened into prose. */
export class SyscallError extends FcUffdError {
  readonly errnoName: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
    detail?: string,
  ) {
    super('SYSCALL', `${syscall} failed: ${errnoName(errno)} (errno ${errno})${detail ? `: ${detail}` : ''}`, {
      syscall,
      errno: errnoName(errno),
    });
    this.errnoName = errnoName(errno);
  }
}

/** Throws SyscallError for a negative native result, returns it otherwise. */
export function check(syscall: string, result: number, detail?: string): number {
  if (result < 0) throw new SyscallError(syscall, -result, detail);
  return result;
}
