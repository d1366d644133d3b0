import { ERRNO } from './errors.js';

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
