// The memory images and access traces the scenarios run on. The real guest fixture (a Firecracker
// v1.14 snapshot and the faults of its restore) is used when ../shared has it; otherwise, and for the
// larger sizes, a generated image (writeDemoImage) and a generated clustered trace stand in, and the
// report says which one ran.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { writeDemoImage } from '../../tools/demo-image.js';
import { writeClusteredTrace } from '../../tools/emulator/traces.js';

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

/** A restore-like clustered trace (tools/emulator/traces.ts), made once and reused across runs. */
export function clusteredTrace(dataDir: string, sizeBytes: number, fraction: number, seed = 7): string {
  const file = path.join(dataDir, `clustered-${sizeBytes / MiB}m-${Math.round(fraction * 100)}pct-${seed}.txt`);
  if (fs.existsSync(file)) return file;
  writeClusteredTrace(`${file}.tmp`, sizeBytes, { fraction, seed });
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
    // Each suite's data directory is made by whoever runs first; on a fresh machine that may be this.
    fs.mkdirSync(dataDir, { recursive: true });
    const r = spawnSync('zstd', ['-d', '-q', '-f', zst, '-o', `${mem}.tmp`], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.error || r.status !== 0)
      return `cannot decompress ${zst} (needs the zstd command): ${r.error?.message ?? r.stderr.toString().trim()}`;
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
