import { ERRNO } from './errors.js';

/**
 * The EINTR/EAGAIN policy of every syscall outside the install ioctls (recvmsg, accept, read of the
 * uffd, poll, epoll_wait): EINTR (a signal came first, nothing happened) is retried at once; EAGAIN
 * on a non-blocking fd means "nothing now" and comes back as undefined: wait for the fd to poll ready
 * again. Any other result (a value, or another -errno) is returned as is. For UFFDIO_COPY and
 * UFFDIO_ZEROPAGE, EAGAIN means something else (the address space is changing): classifyErrno.
 */
export function syscallNow(call: () => number): number | undefined {
  for (;;) {
    const rc = call();
    if (rc === -ERRNO.EINTR) continue;
    return rc === -ERRNO.EAGAIN ? undefined : rc;
  }
}

/**
 * What an errno from UFFDIO_COPY / UFFDIO_ZEROPAGE / UFFDIO_WAKE means for the handler. The whole
 * errno policy lives here:
 * - `exists`: EEXIST, the page is already mapped (another fault or a prefetch won the race). Success,
 *   but the faulting thread may still sleep: wake the range.
 * - `retry`: EAGAIN, the address space is changing (a REMOVE event is pending or the madvise that
 *   raised it has not finished). Read more events, then retry after a short capped backoff.
 * - `gone`: ESRCH, the VMM's mm is gone (it exited). Stop serving that VM quietly.
 * - `fatal`: anything else. The guest must not run on with memory we could not install.
 */
export type ErrnoClass = 'exists' | 'retry' | 'gone' | 'fatal';

export function classifyErrno(errno: number): ErrnoClass {
  switch (errno) {
    case ERRNO.EEXIST:
      return 'exists';
    case ERRNO.EAGAIN:
      return 'retry';
    case ERRNO.ESRCH:
      return 'gone';
    default:
      return 'fatal';
  }
}
