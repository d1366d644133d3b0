import { FcUffdError } from '../errors.js';
import { errnoName } from '../kernel/errors.js';
import { classifyErrno } from '../kernel/policy.js';

/** The VMM's address space is gone (ESRCH): it exited. Not an error of ours; stop quietly. */
export class VmGoneError extends FcUffdError {
  constructor(readonly op: string) {
    super('VM_GONE', `the VMM's address space is gone (${op} returned ESRCH)`, { op });
  }
}

/** The error that ends a VM after a uffd ioctl failed on memory the guest needs: VmGoneError for ESRCH, else VM_IOCTL. */
export function ioctlFailure(op: string, address: number, lenBytes: number, errno: number): FcUffdError {
  if (classifyErrno(errno) === 'gone') return new VmGoneError(op);
  return new FcUffdError('VM_IOCTL', `${op} of ${lenBytes} bytes at 0x${address.toString(16)} failed: ${errnoName(errno)} (errno ${errno})`, {
    op,
    address,
    len: lenBytes,
    errno,
  });
}
