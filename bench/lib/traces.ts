// The access traces the fault-around simulator (bench/fault-around-sim.ts) and the in-process fault
// loop benchmark (bench/fault-loop-cost.ts) replay, with each image's zero-page map. The images are the
// bench's (bench/lib/data.ts demoImage, seed 42), so the counts match the bench scenarios
// random-5pct-512m and dense-seq-128m; the real trace is the fixture's when it is there.
import fs from 'node:fs';
import { demoImage, realGuest } from './data.js';

const PS = 4096;
const MiB = 1024 * 1024;

export interface Trace {
  name: string;
  what: string;
  /** Page indices in access order. */
  pages: Uint32Array;
  /** 1 per zero page of the image. */
  zero: Uint8Array;
  sizeBytes: number;
}

function zeroMap(file: string): Uint8Array {
  const size = fs.statSync(file).size;
  const zero = new Uint8Array(Math.floor(size / PS));
  const buf = Buffer.allocUnsafe(8 * MiB);
  const fd = fs.openSync(file, 'r');
  try {
    for (let off = 0; off < size; off += buf.length) {
      const n = fs.readSync(fd, buf, 0, buf.length, off);
      for (let p = 0; p + PS <= n; p += PS) {
        let z = true;
        for (let i = p; i < p + PS; i += 8)
          if (buf.readBigUInt64LE(i) !== 0n) {
            z = false;
            break;
          }
        if (z) zero[(off + p) / PS] = 1;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return zero;
}

const M64 = (1n << 64n) - 1n;
/** fc-emu's rng_next (tools/emulator/workload.c): splitmix64. */
function splitmix(state: { s: bigint }): bigint {
  state.s = (state.s + 0x9e3779b97f4a7c15n) & M64;
  let z = state.s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

/** The pages fc-emu --pattern random touches for vCPU 0 of 1 (pool = every page), in order. */
function emulatorRandomPages(npages: number, touch: number, seed: number): Uint32Array {
  const st = { s: (BigInt(seed) * 0x9e3779b97f4a7c15n) & M64 };
  splitmix(st);
  const perm = new Uint32Array(npages);
  for (let k = 0; k < npages; k++) perm[k] = k;
  const out = new Uint32Array(touch);
  for (let k = 0; k < touch; k++) {
    const j = k % npages;
    const r = j + Number(splitmix(st) % BigInt(npages - j));
    const tmp = perm[j]!;
    perm[j] = perm[r]!;
    perm[r] = tmp;
    out[k] = perm[j]!;
    splitmix(st); // the write/read draw
  }
  return out;
}

export function traces(dataDir: string, fixtureDir: string): Trace[] {
  const out: Trace[] = [];
  const real = realGuest(dataDir, fixtureDir);
  if (typeof real === 'string') process.stdout.write(`note: ${real}: the real trace is skipped\n`);
  else {
    const lines = fs
      .readFileSync(real.trace, 'utf8')
      .split('\n')
      .filter((l) => l.trim());
    out.push({
      name: 'real',
      what: `real restore trace, ${lines.length} faults over 128 MiB`,
      pages: Uint32Array.from(lines, (l) => Number(l.split(' ')[1]) / PS),
      zero: zeroMap(real.image.path),
      sizeBytes: real.image.sizeBytes,
    });
  }
  const r = demoImage(dataDir, 512 * MiB);
  const rz = zeroMap(r.path);
  out.push({
    name: 'random',
    what: 'random 5 % of 512 MiB (6,553 pages, fc-emu seed 1)',
    pages: emulatorRandomPages(rz.length, 6553, 1),
    zero: rz,
    sizeBytes: r.sizeBytes,
  });
  const d = demoImage(dataDir, 128 * MiB);
  const dz = zeroMap(d.path);
  out.push({
    name: 'dense',
    what: 'every page of 128 MiB in order',
    pages: Uint32Array.from({ length: dz.length }, (_, i) => i),
    zero: dz,
    sizeBytes: d.sizeBytes,
  });
  return out;
}
