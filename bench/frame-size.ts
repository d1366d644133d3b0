// Suite `frame-size`: which zstd frame size a framed chunk uses (docs/chunked-format.md). On the
// real guest (4 MiB chunks): stored bytes (ratio), decode + verify time of one frame, how many
// frames (ranged reads) and bytes the real restore trace needs, and the manifest size for 128 MiB,
// 1 GiB and 8 GiB snapshots (the 128 MiB manifest tiled with distinct digests).
//   node dist/bench/frame-size.js [--fixture DIR] [--data-dir DIR]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { analyzeChunk, decodeFrames, encodeChunkBlob, encodeChunkBlobFramed, pageCount, isZeroPage } from '../src/snapshot/chunk-format.js';
import { encodeManifest, type ChunkEntry, type Manifest } from '../src/snapshot/manifest.js';
import { realGuest } from './lib/data.js';
import { RESULTS_DIR, writeResults } from './lib/results.js';
import { quantile } from './lib/stats.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const CHUNK = 4 * MiB;
const SIZES = [64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, CHUNK];
const LINKS = [
  { name: '1 ms + 500 MB/s', rttMs: 1, bytesPerMs: 500e3 },
  { name: '20 ms + 100 MB/s', rttMs: 20, bytesPerMs: 100e3 },
];

const { values } = parseArgs({ options: { fixture: { type: 'string' }, 'data-dir': { type: 'string' } } });
const root = path.resolve(RESULTS_DIR, '..', '..');
const fixture = values.fixture ?? path.resolve(root, '../shared/fixtures/real-guest-128m');
const dataDir = values['data-dir'] ?? path.join(os.tmpdir(), 'fc-uffd-bench');
fs.mkdirSync(dataDir, { recursive: true });
const real = realGuest(dataDir, fixture);
if (typeof real === 'string') {
  process.stdout.write(`skipped: ${real}\n`);
  process.exit(0);
}
const mem = fs.readFileSync(real.image.path);
const touched = new Set<number>();
for (const line of fs.readFileSync(real.trace, 'utf8').split('\n')) {
  const off = Number(line.split(' ')[1]);
  if (Number.isFinite(off) && off < mem.length) touched.add(Math.floor(off / 4096));
}

interface Row {
  frameKiB: number;
  storedMiB: number;
  ratio: number;
  decodeUsP50: number;
  decodeUsP99: number;
  meanFrameKiB: number;
  restoreFrames: number;
  restoreMiB: number;
  firstFaultMs: Record<string, number>;
  manifestKiB: { '128MiB': number; '1GiB': number; '8GiB': number };
}

const rows: Row[] = [];
const dataBytes = (() => {
  let n = 0;
  for (let c = 0; c < mem.length; c += CHUNK) {
    const a = analyzeChunk(mem.subarray(c, c + CHUNK));
    n += a.dataPages * 4096;
  }
  return n;
})();

for (const F of SIZES) {
  let stored = 0;
  const decodeUs: number[] = [];
  const frameLens: number[] = [];
  const entries: ChunkEntry[] = [];
  let restoreFrames = 0;
  let restoreBytes = 0;
  for (let c = 0; c * CHUNK < mem.length; c++) {
    const chunk = mem.subarray(c * CHUNK, (c + 1) * CHUNK);
    const a = analyzeChunk(chunk);
    if (a.dataPages === 0) {
      entries.push(null);
      continue;
    }
    const zeroPages = a.zeroPages ? { zeroPages: Buffer.from(a.zeroBitmap).toString('base64') } : {};
    if (F === CHUNK) {
      const blob = encodeChunkBlob(chunk, a);
      stored += blob.length;
      entries.push({ digest: 'f'.repeat(64), storedBytes: blob.length, ...zeroPages });
      // One frame = the whole chunk: a first fault needs all of it.
      const f = encodeChunkBlobFramed(chunk, a, F);
      const out = new Uint8Array(CHUNK);
      const t1 = performance.now();
      decodeFrames(f.blob, out, a.zeroBitmap, F, [
        { frame: 0, srcOffset: f.blob.length - f.frameBytes[0]!, srcLength: f.frameBytes[0]!, sha256: f.frameSha256[0]! },
      ]);
      decodeUs.push((performance.now() - t1) * 1000);
      frameLens.push(blob.length);
      if ([...touched].some((p) => p >= c * 1024 && p < (c + 1) * 1024 && !isZeroPage(a.zeroBitmap, p - c * 1024))) {
        restoreFrames++;
        restoreBytes += blob.length;
      }
      continue;
    }
    const f = encodeChunkBlobFramed(chunk, a, F);
    stored += f.blob.length;
    entries.push({
      digest: 'f'.repeat(64),
      storedBytes: f.blob.length,
      ...zeroPages,
      frameBytes: f.frameBytes,
      frameSha256: f.frameSha256,
    });
    const out = new Uint8Array(CHUNK);
    let off = f.blob.length - f.frameBytes.reduce((x, y) => x + y, 0);
    const framePages = F / 4096;
    for (let k = 0; k < f.frameBytes.length; k++) {
      const len = f.frameBytes[k]!;
      if (len > 0) {
        const t1 = performance.now();
        decodeFrames(f.blob, out, a.zeroBitmap, F, [{ frame: k, srcOffset: off, srcLength: len, sha256: f.frameSha256[k]! }]);
        decodeUs.push((performance.now() - t1) * 1000);
        frameLens.push(len);
        let need = false;
        for (let p = k * framePages; p < (k + 1) * framePages && p < pageCount(chunk.length) && !need; p++)
          need = touched.has(c * 1024 + p) && !isZeroPage(a.zeroBitmap, p);
        if (need) {
          restoreFrames++;
          restoreBytes += len;
        }
      }
      off += len;
    }
  }
  const meanFrame = frameLens.reduce((x, y) => x + y, 0) / frameLens.length;
  decodeUs.sort((x, y) => x - y);
  const decodeMs = quantile(decodeUs, 0.5) / 1000;
  const manifestKiB = (copies: number): number => {
    const chunks: ChunkEntry[] = [];
    for (let i = 0; i < copies; i++)
      for (const e of entries) chunks.push(e ? { ...e, digest: (i.toString(16) + e.digest).slice(0, 64) } : null);
    const m: Manifest = {
      format: 'fc-uffd-chunked-snapshot',
      version: F === CHUNK ? 1 : 2,
      memorySizeBytes: mem.length * copies,
      chunkSizeBytes: CHUNK,
      pageSizeBytes: 4096,
      ...(F === CHUNK ? {} : { frameSizeBytes: F }),
      digestAlgorithm: 'sha256',
      compression: { algorithm: 'zstd', level: 3 },
      base: null,
      chunks,
    };
    return encodeManifest(m).length / KiB;
  };
  rows.push({
    frameKiB: F / KiB,
    storedMiB: stored / MiB,
    ratio: dataBytes / stored,
    decodeUsP50: quantile(decodeUs, 0.5),
    decodeUsP99: quantile(decodeUs, 0.99),
    meanFrameKiB: meanFrame / KiB,
    restoreFrames,
    restoreMiB: restoreBytes / MiB,
    firstFaultMs: Object.fromEntries(LINKS.map((l) => [l.name, l.rttMs + meanFrame / l.bytesPerMs + decodeMs])),
    manifestKiB: { '128MiB': manifestKiB(1), '1GiB': manifestKiB(8), '8GiB': manifestKiB(64) },
  });
  process.stdout.write(`frame ${F / KiB} KiB done\n`);
}

const result = {
  suite: 'frame-size',
  date: new Date().toISOString(),
  command: 'node dist/bench/frame-size.js',
  host: `${os.cpus().length} CPUs, load average ${os.loadavg()[0]!.toFixed(2)} at the start`,
  image: real.image.origin,
  chunkBytes: CHUNK,
  dataMiB: dataBytes / MiB,
  traceDataPages: touched.size,
  rows,
};

function fragment(r: typeof result): string {
  const lines = [
    `Frame size on the real guest (${r.dataMiB.toFixed(1)} MiB of non-zero pages, 4 MiB chunks; ${r.host}; ${r.date.slice(0, 10)}; \`${r.command}\`).`,
    'First fault on an uncached frame = 1 RTT + mean stored frame / bandwidth + decode p50 (model from the measured sizes and decode times).',
    '',
    `| frame | stored MiB | ratio | decode+verify p50 / p99 | mean frame | ranged reads a restore needs | MiB they carry | first fault @ ${LINKS.map((l) => l.name).join(' / @ ')} | manifest 128 MiB / 1 GiB / 8 GiB |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.rows.map(
      (x) =>
        `| ${x.frameKiB === 4096 ? '4 MiB (v1, one frame)' : `${x.frameKiB} KiB`} | ${x.storedMiB.toFixed(2)} | ${x.ratio.toFixed(3)} | ${x.decodeUsP50.toFixed(0)} / ${x.decodeUsP99.toFixed(0)} µs | ${x.meanFrameKiB.toFixed(0)} KiB | ${x.restoreFrames} | ${x.restoreMiB.toFixed(1)} | ${Object.values(
          x.firstFaultMs,
        )
          .map((v) => `${v.toFixed(2)} ms`)
          .join(
            ' / ',
          )} | ${x.manifestKiB['128MiB'].toFixed(0)} / ${x.manifestKiB['1GiB'].toFixed(0)} / ${x.manifestKiB['8GiB'].toFixed(0)} KiB |`,
    ),
    '',
  ];
  return lines.join('\n');
}
writeResults('frame-size', result, fragment(result));
