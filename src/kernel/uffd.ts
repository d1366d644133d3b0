import { native, type CopySource } from './native.js';
import { syscallNow } from './policy.js';

/**
 * The ioctls a fault loop answers faults with. Each returns bytes done (> 0, possibly less than
 * asked: resume after them) or -errno, never throws for a kernel refusal; see policy.ts for what
 * each errno means. `wake: false` is UFFDIO_*_MODE_DONTWAKE.
 */
export interface UffdOps {
  copy(dst: number, src: CopySource, srcOffset: number, len: number, wake: boolean): number;
  zeropage(dst: number, len: number, wake: boolean): number;
  /** 0 or -errno */
  wake(start: number, len: number): number;
  /** 0 or -errno */
  unregister(start: number, len: number): number;
}

/**
 * A userfaultfd received from the VMM, the one handle for every uffd operation the handler makes
 * (registering is the VMM's job: only the test-only addon can). The fd is the VMM's open file too:
 * never change its flags.
 */
export class Uffd implements UffdOps {
  constructor(readonly fd: number) {}

  /** Whole uffd_msg records into buf: bytes read, undefined when none is pending, or -errno. */
  readEvents(buf: Uint8Array): number | undefined {
    return syscallNow(() => native.readEvents(this.fd, buf));
  }

  copy(dst: number, src: CopySource, srcOffset: number, len: number, wake: boolean): number {
    return native.copy(this.fd, dst, src, srcOffset, len, !wake);
  }

  zeropage(dst: number, len: number, wake: boolean): number {
    return native.zeropage(this.fd, dst, len, !wake);
  }

  wake(start: number, len: number): number {
    return native.wake(this.fd, start, len);
  }

  unregister(start: number, len: number): number {
    return native.unregister(this.fd, start, len);
  }

  close(): void {
    native.close(this.fd);
  }
}
