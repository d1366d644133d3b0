// Entry point of the zero-page scan thread (zero-scan.ts): classifies every PAGE_UNKNOWN page of a
// memory file as zero or data by reading it, at a low priority (SCAN_NICE_STEPS).
import fs from 'node:fs';
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { CLASS_GRANULE_BYTES, PAGE_DATA, PAGE_UNKNOWN, PAGE_ZERO } from '../memory/source.js';
import type { ZeroScanData, ZeroScanMessage } from './zero-scan.js';

const SCAN_BLOCK_BYTES = 1024 * 1024;

const { fd, sizeBytes, classMap, stop } = workerData as ZeroScanData;
const stopped = new Int32Array(stop);
const post = (m: ZeroScanMessage): void => parentPort!.postMessage(m);

/**
 * Nice steps below the process (os.setPriority() with no pid sets the calling thread's; lowering
 * one's own priority needs no privilege). Not SCHED_IDLE: with every CPU busy (a restore whose
 * vCPUs outnumber the CPUs) an idle thread never ran, and zero pages went on being copied into the
 * guest; at +10 the scan still gets a small share.
 */
const SCAN_NICE_STEPS = 10;
os.setPriority(Math.min(19, os.getPriority() + SCAN_NICE_STEPS));

const classes = new Uint8Array(classMap);
const block = Buffer.alloc(SCAN_BLOCK_BYTES);
const zero = Buffer.alloc(CLASS_GRANULE_BYTES);
try {
  for (let offset = 0; offset < sizeBytes && Atomics.load(stopped, 0) === 0; offset += SCAN_BLOCK_BYTES) {
    const first = offset / CLASS_GRANULE_BYTES;
    const pages = Math.ceil(Math.min(SCAN_BLOCK_BYTES, sizeBytes - offset) / CLASS_GRANULE_BYTES);
    let unknown = false;
    for (let i = 0; i < pages && !unknown; i++) unknown = classes[first + i] === PAGE_UNKNOWN;
    if (!unknown) continue;
    const bytesRead = fs.readSync(fd, block, 0, Math.min(SCAN_BLOCK_BYTES, sizeBytes - offset), offset);
    // The owner sets the flag before closing the fd, so a read that raced the close (and may have
    // read another file that reused the fd number) is seen here and never classifies anything.
    if (Atomics.load(stopped, 0) === 1) break;
    for (let i = 0; i < pages; i++) {
      if (classes[first + i] !== PAGE_UNKNOWN) continue;
      const start = i * CLASS_GRANULE_BYTES;
      const end = Math.min(start + CLASS_GRANULE_BYTES, bytesRead);
      // A page cut short by EOF counts as data: the handshake check keeps regions inside the file.
      const isZero = end - start === CLASS_GRANULE_BYTES && block.compare(zero, 0, CLASS_GRANULE_BYTES, start, end) === 0;
      classes[first + i] = isZero ? PAGE_ZERO : PAGE_DATA;
    }
  }
  post({ type: 'done' });
} catch (err) {
  // EBADF after the owner closed the fd is a stop, not a failure.
  if (Atomics.load(stopped, 0) === 0) post({ type: 'failed', message: (err as Error).message });
}
