// The test-only addon (tools/test-addon/test-addon.c): what tests, the benchmarks and tools need to
// play Firecracker's side in-process. src/ never loads it (dependency-cruiser forbids src -> tools),
// and the published package neither builds nor ships it. Built by `npm run build:tools`.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FcUffdError } from '../src/errors.js';

/** Every function returns >= 0 on success, -errno on failure; wrong argument types throw FC_UFFD_USAGE. */
export interface TestAddon {
  sendWithFds(fd: number, buf: Uint8Array, fds: Int32Array): number;
  /** /dev/userfaultfd's USERFAULTFD_IOC_NEW (useDevice) or the userfaultfd(2) syscall, as Firecracker does. */
  uffdCreate(flags: number, useDevice: boolean): number;
  /** out = [features lo, features hi, ioctls lo, ioctls hi] */
  uffdApi(uffd: number, features: number, out: Int32Array): number;
  register(uffd: number, start: number, len: number, mode: number): number;
  /** Firecracker's guest memory mapping (private anonymous, 2 MiB hugetlb when asked); an address. */
  mapAnonymous(len: number, hugetlb2m: boolean): number;
  unmap(addr: number, len: number): number;
  madvise(addr: number, len: number, advice: number): number;
  /** Copies dst.length bytes from addr, faulting like a vCPU: call it off the handler's thread. */
  readMemory(addr: number, dst: Uint8Array): number;
}

function load(): TestAddon {
  const require = createRequire(import.meta.url);
  const candidate = path.resolve(
    path.dirname(fileURLToPath(import.meta.url)),
    '../../tools/test-addon/build/Release/uffd_test_native.node',
  );
  try {
    return require(candidate) as TestAddon;
  } catch (err) {
    throw new FcUffdError(
      'FC_UFFD_ADDON_MISSING',
      `cannot load the test-only addon ${candidate} (run \`npm run build:tools\`): ${(err as Error).message.split('\n')[0]}`,
    );
  }
}

export const testNative: TestAddon = load();
