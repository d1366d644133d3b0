// The memory images and access traces the scenarios run on. The real guest fixture (a Firecracker
// v1.14 snapshot and the faults of its restore) is used when ../shared has it; otherwise, and for the
// larger sizes, a generated image (writeDemoImage) and a generated clustered trace stand in, and the
// report says which one ran.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { writeDemoImage } from '../../src/snapshot/demo-image.js';

export interface Image {
  path: string;
  sizeBytes: number;
  origin: string;
}

const MiB = 1024 * 1024;

/** A generated demo image of `sizeBytes`, made once and reused across runs of the suite. */
export function demoImage(dataDir: string, sizeBytes: number, seed = 42): Image {
  const file = path.join(dataDir, `demo-${sizeBytes / MiB}m-${seed}.mem`);
  if (!fs.existsSync(file) || fs.statSync(file).size !== sizeBytes) {
    writeDemoImage(`${file}.tmp`, sizeBytes, seed);
    fs.renameSync(`${file}.tmp`, file);
  }
  return { path: file, sizeBytes, origin: `generated demo image (writeDemoImage, ${sizeBytes / MiB} MiB, seed ${seed})` };
}

/**
 * A restore-like trace over `pages` pages: clusters of 1–64 consecutive pages (mean ~16) at random
 * places, visited in random order, until `fraction` of the pages is touched; 30 % of touches write.
 */
export function clusteredTrace(dataDir: string, sizeBytes: number, fraction: number, seed = 7): string {
  const file = path.join(dataDir, `clustered-${sizeBytes / MiB}m-${Math.round(fraction * 100)}pct-${seed}.txt`);
  if (fs.existsSync(file)) return file;
  let x = seed >>> 0 || 1;
  const rnd = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
  const pages = sizeBytes / 4096;
  const want = Math.floor(pages * fraction);
  const seen = new Uint8Array(pages);
  const lines: string[] = [];
  let touched = 0;
  while (touched < want) {
    const len = 1 + Math.floor(rnd() * rnd() * 64);
    const start = Math.floor(rnd() * pages);
    for (let p = start; p < Math.min(pages, start + len) && touched < want; p++) {
      if (seen[p]) continue;
      seen[p] = 1;
      touched++;
      lines.push(`0 ${p * 4096} ${rnd() < 0.3 ? 'w' : 'r'}`);
    }
  }
  fs.writeFileSync(`${file}.tmp`, `${lines.join('\n')}\n`);
  fs.renameSync(`${file}.tmp`, file);
  return file;
}

export interface RealGuest {
  image: Image;
  trace: string;
}

/** The real guest fixture, decompressed into dataDir; undefined (with the reason) when unavailable. */
export function realGuest(dataDir: string, fixtureDir: string): RealGuest | string {
  const zst = path.join(fixtureDir, 'memory.zst');
  const gz = path.join(fixtureDir, 'restore-trace.txt.gz');
  if (!fs.existsSync(zst) || !fs.existsSync(gz)) return `real guest fixture not found at ${fixtureDir}`;
  const mem = path.join(dataDir, 'real-guest-128m.mem');
  const trace = path.join(dataDir, 'real-guest-128m.trace.txt');
  if (!fs.existsSync(mem)) {
    const r = spawnSync('zstd', ['-d', '-q', '-f', zst, '-o', `${mem}.tmp`], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.error || r.status !== 0) return `cannot decompress ${zst} (needs the zstd command): ${r.error?.message ?? r.stderr.toString().trim()}`;
    fs.renameSync(`${mem}.tmp`, mem);
  }
  if (!fs.existsSync(trace)) fs.writeFileSync(trace, zlib.gunzipSync(fs.readFileSync(gz)));
  return { image: { path: mem, sizeBytes: fs.statSync(mem).size, origin: `real Firecracker v1.14 guest (${fixtureDir})` }, trace };
}

/** Reads a file through the page cache so that the next restore finds it warm. */
export function warmPageCache(file: string): void {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(8 * MiB);
  try {
    for (let off = 0; ; off += buf.length) if (fs.readSync(fd, buf, 0, buf.length, off) === 0) break;
  } finally {
    fs.closeSync(fd);
  }
}
