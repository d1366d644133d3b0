import { FcUffdError } from '../errors.js';
import { errnoName } from '../kernel/errors.js';
import { classifyErrno } from '../kernel/policy.js';
import type { UffdEvent } from '../kernel/msg.js';

/** The VMM's address space is gone (ESRCH): it exited. Not an error of ours; stop quietly. */
export class VmGoneError extends FcUffdError {
  constructor(readonly op: string) {
    super('VM_GONE', `the VMM's address space is gone (${op} returned ESRCH)`, { op });
  }
}

/** The error that ends a VM after a uffd ioctl failed on memory the guest needs: VmGoneError for ESRCH, else VM_IOCTL. */
export function ioctlFailure(op: string, address: number, lenBytes: number, errno: number): FcUffdError {
  if (classifyErrno(errno) === 'gone') return new VmGoneError(op);
  return new FcUffdError(
    'VM_IOCTL',
    `${op} of ${lenBytes} bytes at 0x${address.toString(16)} failed: ${errnoName(errno)} (errno ${errno})`,
    {
      op,
      address,
      len: lenBytes,
      errno,
    },
  );
}

/**
 * The kernel keeps answering EEXIST for a page its vCPU keeps faulting on: the page is not mapped.
 * UFFDIO_COPY into hugetlbfs answers EEXIST, not ENOMEM, when no huge page can be allocated
 * (measured on Linux 6.18 with an empty pool); waking the vCPU then only makes it fault again.
 */
export function pageNotInstalled(address: number, lenBytes: number, faults: number): FcUffdError {
  return new FcUffdError(
    'VM_PAGE_NOT_INSTALLED',
    `the page at 0x${address.toString(16)} (${lenBytes} bytes) was faulted on ${faults} times in a row and the kernel answered EEXIST each time, yet it is not mapped: ` +
      'on hugetlbfs this is how UFFDIO_COPY reports an empty huge page pool. Reserve more huge pages (vm.nr_hugepages) or run fewer VMs at once',
    { address, len: lenBytes, faults },
  );
}

/** A uffd event Firecracker never asks for (it registers for page faults and REMOVE only). */
export function unexpectedEvent(event: UffdEvent): FcUffdError {
  return new FcUffdError(
    'VM_UNEXPECTED_EVENT',
    `unexpected userfaultfd event ${event.type}${event.type === 'unknown' ? ` (0x${event.code.toString(16)})` : ''}: Firecracker requests only page faults and REMOVE`,
    { event },
  );
}
