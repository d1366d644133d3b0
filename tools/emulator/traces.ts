import fs from 'node:fs';
import { xorshift32 } from '../prng.js';

export interface ClusteredTraceOptions {
  /** Share of the image's 4 KiB pages touched (0..1). */
  fraction: number;
  seed?: number;
  /** Longest run of consecutive pages; run lengths skew short (mean ~ a quarter of this). */
  maxClusterPages?: number;
  /** Share of touches that write. */
  writeFraction?: number;
}

/**
 * Writes an emulator trace (`<ms> <file offset> <r|w>` lines) shaped like a restored guest's
 * accesses: runs of consecutive pages at random places, in random order, until `fraction` of the
 * pages is touched. Deterministic for a seed.
 */
export function writeClusteredTrace(file: string, sizeBytes: number, o: ClusteredTraceOptions): void {
  const rnd = xorshift32(o.seed ?? 7);
  const maxCluster = o.maxClusterPages ?? 64;
  const writeFraction = o.writeFraction ?? 0.3;
  const pages = Math.floor(sizeBytes / 4096);
  const want = Math.floor(pages * o.fraction);
  const seen = new Uint8Array(pages);
  const lines: string[] = [];
  let touched = 0;
  while (touched < want) {
    const len = 1 + Math.floor(rnd() * rnd() * maxCluster);
    const start = Math.floor(rnd() * pages);
    for (let p = start; p < Math.min(pages, start + len) && touched < want; p++) {
      if (seen[p]) continue;
      seen[p] = 1;
      touched++;
      lines.push(`0 ${p * 4096} ${rnd() < writeFraction ? 'w' : 'r'}`);
    }
  }
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
}
