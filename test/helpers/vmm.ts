// Plays Firecracker's side of the protocol inside the test process, with the real kernel
// userfaultfd: maps guest memory as Firecracker does, creates and registers the uffd, and sends
// the handshake. Faults are then raised by reading that memory from this thread while the handler
// serves them from its own worker thread.
import { native } from '../../src/kernel/native.js';
import { testNative } from '../../tools/test-native.js';
import { O_CLOEXEC, O_NONBLOCK, UFFD_FEATURE_EVENT_REMOVE, UFFDIO_REGISTER_MODE_MISSING } from '../../src/kernel/constants.js';
import { check } from '../../src/kernel/errors.js';

export interface InProcessVmm {
  uffd: number;
  conn: number;
  regions: Array<{ hostAddr: number; sizeBytes: number; fileOffset: number }>;
  close(): void;
}

export function startInProcessVmm(
  socketPath: string,
  regionSizes: number[],
  pageSizeBytes = 4096,
  uffdFlags = O_CLOEXEC | O_NONBLOCK,
): InProcessVmm {
  const regions: InProcessVmm['regions'] = [];
  let fileOffset = 0;
  for (const sizeBytes of regionSizes) {
    const hostAddr = check('mmap', testNative.mapAnonymous(sizeBytes, pageSizeBytes !== 4096));
    regions.push({ hostAddr, sizeBytes, fileOffset });
    fileOffset += sizeBytes;
  }
  const uffd = check('userfaultfd', testNative.uffdCreate(uffdFlags, true));
  check('UFFDIO_API', testNative.uffdApi(uffd, UFFD_FEATURE_EVENT_REMOVE, new Int32Array(4)));
  for (const r of regions) check('UFFDIO_REGISTER', testNative.register(uffd, r.hostAddr, r.sizeBytes, UFFDIO_REGISTER_MODE_MISSING));
  const conn = check('connect', native.connectUnix(socketPath));
  const json = JSON.stringify(
    regions.map((r) => ({
      base_host_virt_addr: r.hostAddr,
      size: r.sizeBytes,
      offset: r.fileOffset,
      page_size: pageSizeBytes,
      page_size_kib: pageSizeBytes,
    })),
  );
  check('sendmsg', testNative.sendWithFds(conn, Buffer.from(json), Int32Array.of(uffd)));
  return {
    uffd,
    conn,
    regions,
    close() {
      native.close(conn);
      native.close(uffd);
      for (const r of regions) testNative.unmap(r.hostAddr, r.sizeBytes);
    },
  };
}
