import fs from 'node:fs';
import { xorshift32 as rng } from './prng.js';

const WORDS = 'kernel page fault guest memory snapshot restore vcpu balloon region offset zero copy firecracker microvm handler'.split(' ');

export interface DemoImageStats {
  sizeBytes: number;
  zeroPages: number;
  holePages: number;
  textPages: number;
  randomPages: number;
}

/**
 * Writes a memory image shaped like a booted guest's: about half zero pages (some left as holes,
 * as sparse snapshots have them, some written as zeros), text-like pages (compressible, like
 * kernel text and page cache) and random pages (like encrypted or compressed data), in runs of
 * mixed length as real allocations cluster.
 */
export function writeDemoImage(path: string, sizeBytes: number, seed = 42): DemoImageStats {
  const pageSize = 4096;
  const pages = Math.floor(sizeBytes / pageSize);
  const random = rng(seed);
  const stats: DemoImageStats = { sizeBytes: pages * pageSize, zeroPages: 0, holePages: 0, textPages: 0, randomPages: 0 };
  const fd = fs.openSync(path, 'w');
  try {
    fs.ftruncateSync(fd, pages * pageSize);
    const page = Buffer.alloc(pageSize);
    let p = 0;
    while (p < pages) {
      const run = Math.min(pages - p, 1 + Math.floor(random() * 64));
      const r = random();
      const kind = r < 0.3 ? 'hole' : r < 0.55 ? 'zero' : r < 0.8 ? 'text' : 'random';
      for (let i = 0; i < run; i++, p++) {
        if (kind === 'hole') {
          stats.holePages++;
          continue;
        }
        if (kind === 'zero') {
          page.fill(0);
          stats.zeroPages++;
        } else if (kind === 'text') {
          let off = 0;
          while (off < pageSize) off += page.write(`${WORDS[Math.floor(random() * WORDS.length)]!} ${p} `, off);
          stats.textPages++;
        } else {
          for (let off = 0; off < pageSize; off += 4) page.writeUInt32LE((random() * 0x1_0000_0000) >>> 0, off);
          stats.randomPages++;
        }
        fs.writeSync(fd, page, 0, pageSize, p * pageSize);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return stats;
}
