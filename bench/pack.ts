// Chunked snapshots on a realistic memory image: pack throughput next to `zstd -T2` on the same
// file, unpack and decompress+verify throughput, compression ratio, zero-page fraction, the cost
// of a first fault on a chunk (fetch + verify + decompress), and the chunk-size trade-off measured
// against a real restore's fault trace.
//
//   node dist/bench/pack.js [MEMFILE] [--trace FILE.txt[.gz]] [--json]
//
// Without MEMFILE it uses the real-guest fixture (../shared/fixtures/real-guest-128m, decompressed
// with `zstd -d` into a temporary directory) when present, else a generated 128 MiB demo image.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { DirStore } from '../src/store/dir.js';
import { loadManifest, pack, unpack } from '../src/snapshot/pack.js';
import { ChunkCodecPool } from '../src/snapshot/chunk-pool.js';
import { decodeChunkBlob } from '../src/snapshot/chunk-format.js';
import { chunkLength } from '../src/snapshot/manifest.js';
import { ChunkCache } from '../src/snapshot/chunk-cache.js';
import { ServedChunkedSnapshot } from '../src/snapshot/chunked-source.js';
import { writeDemoImage } from '../tools/demo-image.js';
import { mdTable, writeResults } from './lib/results.js';

const MiB = 1024 * 1024;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE_DIR = path.resolve(repoRoot, '../shared/fixtures/real-guest-128m');

function mbps(bytes: number, ms: number): number {
  return Math.round(bytes / 1e6 / (ms / 1000));
}

function best<T extends { ms: number }>(runs: T[]): T {
  return runs.reduce((a, b) => (b.ms < a.ms ? b : a));
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** The committed fragment (bench/results/pack.md), generated from the JSON the run wrote. */
function packMarkdown(out: Record<string, unknown>): string {
  const pk = out.pack as Record<string, number>;
  const z = out.zstdT2 as Record<string, number> | string;
  const dv = out.decompressVerify as Record<string, number>;
  const cm = out.chunkMissMs as Record<string, number>;
  const sizes = out.chunkSizes as Array<Record<string, number>>;
  const traced = sizes.some((r) => r.restoreChunksFetched !== undefined);
  const figures = mdTable(
    ['figure', 'value'],
    [
      ['zero pages', `${(pk.zeroPageFraction! * 100).toFixed(1)} % (${pk.zeroChunks} of ${pk.chunks} chunks all zero)`],
      [
        'stored',
        `${(pk.storedBytes! / MiB).toFixed(1)} MiB in ${pk.storedChunks} chunks: ratio ${pk.ratioWholeFile} on the file, ${pk.ratioDataPages} on non-zero pages`,
      ],
      ['pack', `${pk.mbPerS} MB/s (re-pack into the same store: ${(out.repackSameStore as Record<string, number>).mbPerS} MB/s)`],
      ['zstd -T2 -3, same file', typeof z === 'string' ? z : `${z.mbPerS} MB/s, ratio ${z.ratio}; zstd -d ${z.decompressMbPerS} MB/s`],
      ['unpack (verify + write data pages)', `${(out.unpack as Record<string, number>).mbPerS} MB/s`],
      [
        'decompress + verify',
        `${dv.chunkMbPerS1Thread} MB/s on one thread (${dv.perChunkMs1Thread} ms per chunk), ${dv.chunkMbPerSPool} MB/s on the codec pool`,
      ],
      ['first fault on a chunk (get + verify + decompress)', `p50 ${cm.p50} ms, max ${cm.max} ms; cached: ${cm.cachedHitUs} µs`],
    ],
  );
  const bySize = mdTable(
    ['chunk size', 'pack MB/s', 'stored chunks', 'stored MiB', ...(traced ? ['restore: chunks fetched', 'restore: MiB fetched'] : [])],
    sizes.map((r) => [
      `${r.chunkMiB} MiB`,
      String(r.packMbPerS),
      String(r.storedChunks),
      String(r.storedMiB),
      ...(traced ? [String(r.restoreChunksFetched), String(r.restoreFetchedMiB)] : []),
    ]),
  );
  const head = `Chunked snapshots: ${out.source as string}, ${((out.sizeBytes as number) / MiB).toFixed(0)} MiB, ${out.cpus as number} CPUs, ${out.threads as number} codec threads; 4 MiB chunks, zstd level 3, sha256; best of 3 runs.`;
  return [head, figures, `Chunk size against ${traced ? "a real restore's fault trace" : 'stored size (no trace)'}:`, bySize].join('\n\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const traceIdx = args.indexOf('--trace');
  let tracePath = traceIdx >= 0 ? args[traceIdx + 1] : undefined;
  const positional = args.filter((a, i) => !a.startsWith('--') && (traceIdx < 0 || i !== traceIdx + 1));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-bench-pack-'));
  try {
    let mem = positional[0];
    let source: string;
    if (mem) source = mem;
    else if (fs.existsSync(path.join(FIXTURE_DIR, 'memory.zst')) && spawnSync('zstd', ['--version']).status === 0) {
      mem = path.join(work, 'memory.bin');
      execFileSync('zstd', ['-q', '-d', path.join(FIXTURE_DIR, 'memory.zst'), '-o', mem]);
      source = 'real guest fixture (real-guest-128m, Firecracker v1.14.2, 128 MiB)';
      tracePath ??= path.join(FIXTURE_DIR, 'restore-trace.txt.gz');
    } else {
      mem = path.join(work, 'memory.bin');
      writeDemoImage(mem, 128 * MiB, 42);
      source = `generated demo image (the real-guest fixture or zstd is absent: ${FIXTURE_DIR})`;
    }
    const size = fs.statSync(mem).size;
    const pool = new ChunkCodecPool();
    const out: Record<string, unknown> = { source, sizeBytes: size, threads: pool.threads, cpus: os.availableParallelism() };

    // Warm the page cache so both packers read from memory.
    fs.readFileSync(mem);

    // pack, fresh store each run (fsync on, as the CLI does), best of 3.
    const packs = [];
    for (let i = 0; i < 3; i++) {
      const storeDir = path.join(work, `store-${i}`);
      const store = DirStore.open(storeDir);
      const r = await pack({ memPath: mem, store, pool });
      packs.push({ ms: r.durationMs, r, storeDir });
    }
    const p = best(packs);
    const pr = p.r;
    out.pack = {
      mbPerS: mbps(size, p.ms),
      ms: Math.round(p.ms),
      chunks: pr.chunks,
      storedChunks: pr.newChunks,
      zeroChunks: pr.zeroChunks,
      zeroPageFraction: +(pr.zeroPages / pr.pages).toFixed(3),
      storedBytes: pr.totalStoredBytes,
      ratioWholeFile: +(size / pr.totalStoredBytes).toFixed(2),
      ratioDataPages: +((size - pr.zeroPages * 4096) / pr.totalStoredBytes).toFixed(2),
    };
    // Re-pack into the same store: every chunk is found (hash only, nothing written).
    const again = await pack({ memPath: mem, store: DirStore.open(p.storeDir), pool });
    out.repackSameStore = { mbPerS: mbps(size, again.durationMs), newChunks: again.newChunks };

    // zstd -T2 on the same file, best of 3.
    if (spawnSync('zstd', ['--version']).status === 0) {
      const zruns = [];
      for (let i = 0; i < 3; i++) {
        const t = performance.now();
        execFileSync('zstd', ['-T2', '-3', '-q', '-f', mem, '-o', path.join(work, 'z.zst')]);
        zruns.push({ ms: performance.now() - t });
      }
      const z = best(zruns);
      const zsize = fs.statSync(path.join(work, 'z.zst')).size;
      const druns = [];
      for (let i = 0; i < 3; i++) {
        const t = performance.now();
        execFileSync('zstd', ['-T2', '-d', '-q', '-f', path.join(work, 'z.zst'), '-o', path.join(work, 'z.out')]);
        druns.push({ ms: performance.now() - t });
      }
      out.zstdT2 = {
        mbPerS: mbps(size, z.ms),
        ms: Math.round(z.ms),
        ratio: +(size / zsize).toFixed(2),
        decompressMbPerS: mbps(size, best(druns).ms),
      };
    } else out.zstdT2 = 'zstd not installed (apt-get install -y zstd)';

    // unpack (verify every chunk, write data pages), best of 3.
    const store = DirStore.open(p.storeDir);
    const loaded = await loadManifest(pr.id, store);
    const unpacks = [];
    for (let i = 0; i < 3; i++)
      unpacks.push({ ms: (await unpack({ loaded, store, outPath: path.join(work, 'unpacked.bin'), pool })).durationMs });
    out.unpack = { mbPerS: mbps(size, best(unpacks).ms) };

    // Decompress + verify, in memory: one thread, and the pool (what serving uses).
    const blobs = loaded.manifest.chunks
      .map((c, i) =>
        c ? { blob: fs.readFileSync(store.chunkPath(c.digest)), digest: c.digest, len: chunkLength(loaded.manifest, i) } : undefined,
      )
      .filter((b) => b !== undefined);
    const logical = blobs.reduce((a, b) => a + b.len, 0);
    const buf = new Uint8Array(loaded.manifest.chunkSizeBytes);
    let t = performance.now();
    for (let r = 0; r < 3; r++) for (const b of blobs) decodeChunkBlob(b.blob, buf.subarray(0, b.len), b.digest);
    const oneThreadMs = (performance.now() - t) / 3;
    t = performance.now();
    await Promise.all(blobs.map((b) => pool.decode(Uint8Array.from(b.blob), b.digest, new SharedArrayBuffer(b.len), b.len)));
    const poolMs = performance.now() - t;
    out.decompressVerify = {
      chunkMbPerS1Thread: mbps(logical, oneThreadMs),
      chunkMbPerSPool: mbps(logical, poolMs),
      perChunkMs1Thread: +(oneThreadMs / blobs.length).toFixed(2),
    };

    // First fault on a chunk as serving sees it: store get + verify + decompress, cold cache.
    const served = await ServedChunkedSnapshot.open({
      manifest: loaded,
      store,
      cache: new ChunkCache(1024 * MiB),
      pool,
      prefetchChunks: 0,
    });
    const lat: number[] = [];
    for (let i = 0; i < loaded.manifest.chunks.length; i++) {
      if (!loaded.manifest.chunks[i]) continue;
      const t0 = performance.now();
      await served.loadChunk(i);
      lat.push(performance.now() - t0);
    }
    const t1 = performance.now();
    for (let i = 0; i < loaded.manifest.chunks.length; i++) if (loaded.manifest.chunks[i]) await served.loadChunk(i);
    out.chunkMissMs = {
      p50: +percentile(lat, 50).toFixed(2),
      max: +Math.max(...lat).toFixed(2),
      cachedHitUs: +(((performance.now() - t1) * 1000) / lat.length).toFixed(1),
    };
    served.close();

    // Chunk size trade-off: stored bytes, objects, and what a real restore would fetch.
    let trace: number[] | undefined;
    if (tracePath && fs.existsSync(tracePath)) {
      const raw = fs.readFileSync(tracePath);
      const text = (tracePath.endsWith('.gz') ? zlib.gunzipSync(raw) : raw).toString('utf8');
      trace = text
        .split('\n')
        .filter(Boolean)
        .map((l) => Number(l.split(' ')[1]));
    }
    const sizes = [];
    for (const cs of [2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB]) {
      const sdir = path.join(work, `cs-${cs}`);
      const r = await pack({ memPath: mem, store: DirStore.open(sdir, { fsync: false }), pool, chunkSizeBytes: cs });
      const row: Record<string, unknown> = {
        chunkMiB: cs / MiB,
        packMbPerS: mbps(size, r.durationMs),
        storedChunks: r.newChunks,
        storedMiB: +(r.totalStoredBytes / MiB).toFixed(1),
      };
      if (trace) {
        const touched = new Set<number>();
        for (const off of trace) {
          const c = r.manifest.chunks[Math.floor(off / cs)];
          if (c) touched.add(Math.floor(off / cs));
        }
        let fetched = 0;
        for (const i of touched) fetched += r.manifest.chunks[i]!.storedBytes;
        row.restoreChunksFetched = touched.size;
        row.restoreFetchedMiB = +(fetched / MiB).toFixed(1);
      }
      sizes.push(row);
      fs.rmSync(sdir, { recursive: true, force: true });
    }
    out.chunkSizes = sizes;
    await pool.close();
    writeResults('pack', out, packMarkdown(out));

    if (json) {
      process.stdout.write(`${JSON.stringify(out)}\n`);
      return;
    }
    const pk = out.pack as Record<string, number>;
    const z = out.zstdT2 as Record<string, number> | string;
    const dv = out.decompressVerify as Record<string, number>;
    const cm = out.chunkMissMs as Record<string, number>;
    const lines = [
      `chunked snapshot bench — ${source}`,
      `  ${(size / MiB).toFixed(0)} MiB, ${os.availableParallelism()} CPUs, codec threads ${pool.threads}, default 4 MiB chunks, zstd level 3, sha256`,
      `  zero pages          ${(pk.zeroPageFraction! * 100).toFixed(1)}% (${pk.zeroChunks} of ${pk.chunks} chunks all zero)`,
      `  stored              ${(pk.storedBytes! / MiB).toFixed(1)} MiB in ${pk.storedChunks} chunks: ratio ${pk.ratioWholeFile} on the file, ${pk.ratioDataPages} on non-zero pages`,
      `  pack                ${pk.mbPerS} MB/s  (re-pack into the same store: ${(out.repackSameStore as Record<string, number>).mbPerS} MB/s)`,
      typeof z === 'string'
        ? `  zstd -T2 -3         ${z}`
        : `  zstd -T2 -3         ${z.mbPerS} MB/s, ratio ${z.ratio}; zstd -d ${z.decompressMbPerS} MB/s`,
      `  unpack              ${(out.unpack as Record<string, number>).mbPerS} MB/s (verify + write data pages)`,
      `  decompress+verify   ${dv.chunkMbPerS1Thread} MB/s one thread (${dv.perChunkMs1Thread} ms per chunk), ${dv.chunkMbPerSPool} MB/s on the pool`,
      `  first fault on a chunk: get+verify+decompress p50 ${cm.p50} ms, max ${cm.max} ms; cached ${cm.cachedHitUs} µs`,
      `  chunk size   pack MB/s   stored chunks   stored MiB${trace ? '   restore: chunks fetched   MiB fetched' : ''}`,
      ...sizes.map(
        (r) =>
          `  ${String(r.chunkMiB).padStart(6)} MiB  ${String(r.packMbPerS).padStart(9)}   ${String(r.storedChunks).padStart(13)}   ${String(r.storedMiB).padStart(10)}${trace ? `   ${String(r.restoreChunksFetched).padStart(22)}   ${String(r.restoreFetchedMiB).padStart(11)}` : ''}`,
      ),
    ];
    process.stdout.write(`${lines.join('\n')}\n${JSON.stringify(out)}\n`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
