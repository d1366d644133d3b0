// The one place the native addon is loaded and typed. Everything else imports `native` from
// here; nothing outside src/kernel/ should need to.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { FcUffdError } from '../errors.js';

/** A read-only file mapping owned by the addon: a copy() source that JS cannot read. */
export interface Mapping {
  readonly __brand: 'Mapping';
}

/** Anything copy() accepts as the source of the bytes it installs (wrap a SharedArrayBuffer in a Uint8Array). */
export type CopySource = Mapping | ArrayBufferView | ArrayBuffer;

/**
 * The addon's surface. Every function returns a number: >= 0 on success, -errno on failure;
 * wrong argument types throw a TypeError with code FC_UFFD_USAGE. What only tests need (playing the
 * VMM: guest memory, uffd registration, sending the handshake) is in the test-only addon
 * (tools/test-native.ts), not here.
 */
export interface NativeAddon {
  listenUnix(path: string, mode: number, backlog: number): number;
  accept(listenFd: number): number;
  connectUnix(path: string): number;
  /** out = [pid, uid, gid] */
  peerCred(fd: number, out: Int32Array): number;
  /** info = [msg_flags, fd count, ...fds]; returns payload bytes. */
  recvWithFds(fd: number, buf: Uint8Array, info: Int32Array): number;
  close(fd: number): number;
  /** fcntl(F_GETFL); -errno on failure. */
  fdFlags(fd: number): number;
  eventfdCreate(): number;
  eventfdSignal(fd: number): number;
  eventfdDrain(fd: number): number;
  pidfdOpen(pid: number): number;
  pidfdSendSignal(pidfd: number, signal: number): number;
  /** ppoll for POLLIN on up to 8 fds, up to timeoutUs (< 0: forever); revents[i] for fds[i]. */
  poll(fds: Int32Array, revents: Int32Array, timeoutUs: number): number;
  epollCreate(): number;
  /** Registers fd for EPOLLIN (hang-ups always reported) under a tag 0..2^31-1. */
  epollAdd(epfd: number, fd: number, tag: number): number;
  epollDel(epfd: number, fd: number): number;
  /** Blocks up to timeoutUs (< 0: forever); out = [tag, events]* for the ready fds; returns their count. */
  epollWait(epfd: number, out: Int32Array, timeoutUs: number): number;
  /** One read() of whole uffd_msg records (all pending that fit); -EAGAIN when none was pending. */
  readEvents(uffd: number, buf: Uint8Array): number;
  mapFile(fd: number, len: number): Mapping | number;
  unmapFile(mapping: Mapping): number;
  lseek(fd: number, offset: number, whence: number): number;
  /**
   * memcpy of src into dst at dstOffset (bounds checked: a usage TypeError otherwise); returns
   * src.length. Into shared memory it is several times faster than TypedArray.set (see addon.c).
   */
  copyBytes(dst: Uint8Array, dstOffset: number, src: Uint8Array): number;
  /** posix_fadvise; 0 or -errno. */
  fadvise(fd: number, offset: number, len: number, advice: number): number;
  unregister(uffd: number, start: number, len: number): number;
  wake(uffd: number, start: number, len: number): number;
  copy(uffd: number, dst: number, src: CopySource, srcOffset: number, len: number, dontWake: boolean): number;
  zeropage(uffd: number, dst: number, len: number, dontWake: boolean): number;
  /** ABI values compiled from <linux/userfaultfd.h> and friends. */
  readonly constants: Readonly<Record<string, number>>;
}

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  const tried: string[] = [];
  for (const flavour of ['Release', 'Debug']) {
    const candidate = path.join(root, 'build', flavour, 'uffd_native.node');
    try {
      return require(candidate) as NativeAddon;
    } catch (err) {
      tried.push(`${candidate}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new FcUffdError(
    'FC_UFFD_ADDON_MISSING',
    `firecracker-uffd: cannot load the native addon (run \`npm install\` to build it with node-gyp). Tried:\n  ${tried.join('\n  ')}`,
  );
}

export const native: NativeAddon = load();
