// Tier 1: pack → store → unpack on files the test makes, with the local directory store.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DirStore } from '../../src/store/dir.js';
import { StoreError, type ChunkStore, type GetOptions } from '../../src/store/types.js';
import { analyzeChunk, encodeChunkBlob, sha256Hex } from '../../src/snapshot/chunk-format.js';
import { loadManifest, pack, unpack, parseRanges, type PackResult } from '../../src/snapshot/pack.js';
import { ChunkCodecPool } from '../../src/snapshot/chunk-pool.js';
import { FcUffdError } from '../../src/errors.js';
import { tempDir } from '../helpers/files.js';
import { WrappedStore } from '../helpers/wrapped-store.js';

const MiB = 1024 * 1024;
const P = 4096;
const dir = tempDir('fc-uffd-chunk-');
const pool = new ChunkCodecPool(2);
after(async () => {
  await pool.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
function file(name: string): string {
  return path.join(dir, `${seq++}-${name}`);
}

/** A memory image: holes, written zero pages, random pages and compressible pages, `size` bytes. */
function makeImage(p: string, size: number, seed: number): Buffer {
  const data = Buffer.alloc(size);
  const rnd = crypto.createHash('sha256').update(`seed${seed}`).digest();
  const fd = fs.openSync(p, 'w');
  fs.ftruncateSync(fd, size);
  for (let page = 0; page * P < size; page++) {
    const kind = (rnd[page % 32]! + page * 7) % 5;
    const start = page * P;
    const end = Math.min(size, start + P);
    if (kind === 0) continue; // hole
    if (kind === 1)
      data.fill(0, start, end); // zero page written as data
    else if (kind === 2) crypto.randomFillSync(data, start, end - start);
    else data.fill(`page ${page} of seed ${seed}, compressible text; `, start, end);
    fs.writeSync(fd, data, start, end - start, start);
  }
  // A run of hole pages long enough to make whole zero chunks.
  fs.closeSync(fd);
  return data;
}

async function roundTrip(
  mem: string,
  store: DirStore,
  opts: Partial<Parameters<typeof pack>[0]> = {},
): Promise<{ r: PackResult; out: Buffer }> {
  const r = await pack({ memPath: mem, store, pool, ...opts });
  const outPath = file('unpacked');
  await unpack({ loaded: await loadManifest(r.id, store), store, outPath, pool });
  return { r, out: fs.readFileSync(outPath) };
}

describe('pack → unpack round trip is byte-identical', () => {
  const cases: Array<[string, number, number | undefined]> = [
    ['4 MiB chunks, size a multiple of the chunk size', 16 * MiB, undefined],
    ['2 MiB chunks, size not a multiple of the chunk size', 7 * MiB + 3 * P, 2 * MiB],
    ['4 MiB chunks, size not a multiple of 4 KiB', 5 * MiB + 1234, undefined],
    ['a file smaller than one chunk', 300 * 1024, undefined],
    ['8 MiB chunks (2 MiB-page guest layout)', 20 * MiB, 8 * MiB],
  ];
  for (const [name, size, chunkSizeBytes] of cases) {
    test(name, async () => {
      const mem = file('mem');
      const data = makeImage(mem, size, size);
      const store = DirStore.open(file('store'), { fsync: false });
      const { r, out } = await roundTrip(mem, store, chunkSizeBytes ? { chunkSizeBytes } : {});
      assert.equal(out.length, size);
      assert.ok(out.equals(data), 'unpacked bytes differ');
      assert.equal(r.manifest.memorySizeBytes, size);
      let zero = 0;
      for (let p = 0; p * P < size; p++) if (data.subarray(p * P, Math.min(size, (p + 1) * P)).every((b) => b === 0)) zero++;
      assert.equal(r.zeroPages, zero, 'zero pages counted from the content, holes and written zeros alike');
    });
  }

  test('all-zero chunks store nothing; an all-zero file stores no chunk at all', async () => {
    const mem = file('zero');
    fs.writeFileSync(mem, Buffer.alloc(0));
    fs.truncateSync(mem, 12 * MiB);
    const storeDir = file('store');
    const store = DirStore.open(storeDir, { fsync: false });
    const { r, out } = await roundTrip(mem, store);
    assert.equal(r.zeroChunks, 3);
    assert.deepEqual(r.manifest.chunks, [null, null, null]);
    assert.equal(out.length, 12 * MiB);
    assert.ok(out.every((b) => b === 0));
    assert.deepEqual(fs.readdirSync(path.join(storeDir, 'chunks')), []);
  });
});

describe('de-duplication and layering', () => {
  test('a second snapshot differing in a few pages stores only the chunks that differ', async () => {
    const storeDir = file('store');
    const store = DirStore.open(storeDir, { fsync: false });
    const a = file('a');
    const data = makeImage(a, 32 * MiB, 1);
    const ra = await pack({ memPath: a, store, pool });
    const b = file('b');
    const changed = [3, 5000, 5001]; // pages in chunks 0 and 4
    for (const p of changed) data.fill(0x42 + p, p * P, (p + 1) * P);
    fs.writeFileSync(b, data);
    const rb = await pack({ memPath: b, store, pool });
    assert.equal(rb.newChunks, 2);
    assert.equal(rb.newChunks + rb.reusedChunks + rb.zeroChunks, rb.chunks);
    const differing = ra.manifest.chunks.filter((c, i) => c?.digest !== rb.manifest.chunks[i]?.digest).length;
    assert.equal(differing, 2);
    const stored = fs.readdirSync(path.join(storeDir, 'chunks')).flatMap((d) => fs.readdirSync(path.join(storeDir, 'chunks', d)));
    assert.equal(stored.length, new Set([...ra.manifest.chunks, ...rb.manifest.chunks].filter((c) => c).map((c) => c!.digest)).size);
    // The same file again: nothing new, same manifest id (deterministic).
    const again = await pack({ memPath: b, store, pool });
    assert.equal(again.id, rb.id);
    assert.equal(again.newChunks, 0);
    // With --base (full file): the base's chunks are not even recompressed, the result is the same.
    const withBase = await pack({ memPath: b, store, pool, base: await loadManifest(ra.id, store) });
    assert.equal(withBase.newChunks, 0);
    assert.deepEqual(withBase.manifest.chunks, rb.manifest.chunks);
    assert.equal(withBase.manifest.base, ra.id);
  });

  test('a diff snapshot packed on its base reproduces the merged memory exactly, reading only dirty chunks', async () => {
    const store = DirStore.open(file('store'), { fsync: false });
    const basePath = file('base');
    const base = makeImage(basePath, 24 * MiB, 2);
    const rBase = await pack({ memPath: basePath, store, pool });
    // A Firecracker diff: a sparse file of the same size holding only the dirty pages.
    const diffPath = file('diff');
    const fd = fs.openSync(diffPath, 'w');
    fs.ftruncateSync(fd, 24 * MiB);
    const merged = Buffer.from(base);
    const dirty: Array<[number, Buffer]> = [
      [10, Buffer.alloc(P, 0x11)],
      [11, crypto.randomBytes(P)],
      [2048, Buffer.alloc(P)], // dirtied to all zeros: must come out zero, not the base's bytes
      [6143, crypto.randomBytes(P)], // last page
    ];
    for (const [p, bytes] of dirty) {
      fs.writeSync(fd, bytes, 0, P, p * P);
      bytes.copy(merged, p * P);
    }
    fs.closeSync(fd);
    // Every chunk the pack reads from the store is recorded: only the dirty chunks' base entries may be.
    const fetched: string[] = [];
    const counting = new Proxy(store, {
      get: (target, key, receiver) =>
        key === 'getChunk'
          ? (digest: string, options?: GetOptions): Promise<Uint8Array> => {
              fetched.push(digest);
              return target.getChunk(digest, options);
            }
          : (Reflect.get(target, key, receiver) as unknown),
    });
    const r = await pack({ memPath: diffPath, store: counting, pool, base: await loadManifest(rBase.id, store), diff: true });
    const outPath = file('unpacked');
    await unpack({ loaded: await loadManifest(r.id, store), store, outPath, pool });
    const out = fs.readFileSync(outPath);
    assert.ok(out.equals(merged), 'merged memory differs');
    assert.deepEqual(
      fetched.sort(),
      [0, 2, 5].map((i) => rBase.manifest.chunks[i]!.digest).sort(),
      'the base chunks read are exactly those of the dirty chunks',
    );
    // Chunks 0, 2 and 5 are dirty; the other three are the base's entries unchanged.
    for (const i of [1, 3, 4]) assert.deepEqual(r.manifest.chunks[i], rBase.manifest.chunks[i]);
    assert.equal(r.manifest.base, rBase.id);
    assert.ok(r.newChunks <= 3);
  });

  test('a diff needs a base of the same size', async () => {
    const store = DirStore.open(file('store'), { fsync: false });
    const a = file('a');
    makeImage(a, 4 * MiB, 3);
    const ra = await pack({ memPath: a, store, pool });
    const d = file('d');
    fs.writeFileSync(d, Buffer.alloc(0));
    fs.truncateSync(d, 8 * MiB);
    await assert.rejects(pack({ memPath: d, store, pool, base: await loadManifest(ra.id, store), diff: true }), /not a diff of that base/);
    await assert.rejects(pack({ memPath: d, store, pool, diff: true }), /--base/);
  });

  test('balloon-removed ranges are not stored and come back as zeros', async () => {
    const store = DirStore.open(file('store'), { fsync: false });
    const mem = file('mem');
    const data = makeImage(mem, 8 * MiB, 4);
    const rangesFile = file('removed');
    fs.writeFileSync(rangesFile, `# start end\n${10 * P} ${20 * P}\n${600 * P} ${1536 * P}\n`);
    const removed = parseRanges(fs.readFileSync(rangesFile, 'utf8'));
    assert.deepEqual(removed, [
      [10 * P, 20 * P],
      [600 * P, 1536 * P],
    ]);
    const plain = await pack({ memPath: mem, store, pool });
    const { r, out } = await roundTrip(mem, store, { removed });
    const expected = Buffer.from(data);
    for (const [s, e] of removed) expected.fill(0, s, e);
    assert.ok(out.equals(expected));
    assert.ok(r.zeroPages > plain.zeroPages);
    assert.ok(r.totalStoredBytes < plain.totalStoredBytes);
    assert.deepEqual(parseRanges('[[0,4096],[8192,12288]]'), [
      [0, 4096],
      [8192, 12288],
    ]);
    assert.throws(() => parseRanges('5 3\n'), /line 1/);
    assert.throws(() => parseRanges('abc'), /line 1/);
  });
});

describe('damaged stores are clear errors, and nothing wrong is written', () => {
  const code = (c: string) => (e: unknown) => e instanceof FcUffdError && e.code === c;

  test('corrupted chunk, missing chunk, truncated or unknown-version manifest', async () => {
    const storeDir = file('store');
    const store = DirStore.open(storeDir, { fsync: false });
    const mem = file('mem');
    makeImage(mem, 8 * MiB, 5);
    const r = await pack({ memPath: mem, store, pool });
    const loaded = await loadManifest(r.id, store);
    const victim = r.manifest.chunks.find((c) => c)!;
    const chunkFile = store.chunkPath(victim.digest);
    const good = fs.readFileSync(chunkFile);
    fs.chmodSync(chunkFile, 0o644);

    const out = file('out');
    const bad = Buffer.from(good);
    bad[bad.length - 10]! ^= 0xff;
    fs.writeFileSync(chunkFile, bad);
    await assert.rejects(unpack({ loaded, store, outPath: out, pool }), code('SNAPSHOT_CORRUPT_CHUNK'));
    assert.equal(fs.existsSync(out), false, 'no output file after a failed unpack');

    fs.rmSync(chunkFile);
    await assert.rejects(unpack({ loaded, store, outPath: out, pool }), code('SNAPSHOT_MISSING_CHUNK'));
    fs.writeFileSync(chunkFile, good);

    const manifestFile = store.manifestPath(r.id);
    const bytes = fs.readFileSync(manifestFile);
    fs.chmodSync(manifestFile, 0o644);
    fs.writeFileSync(manifestFile, bytes.subarray(0, bytes.length / 2));
    await assert.rejects(loadManifest(r.id, store), code('SNAPSHOT_MANIFEST_CORRUPT'));
    const truncated = file('truncated.json');
    fs.writeFileSync(truncated, bytes.subarray(0, bytes.length / 2));
    await assert.rejects(loadManifest(truncated, store), code('SNAPSHOT_MANIFEST_INVALID'));
    const future = file('future.json');
    fs.writeFileSync(future, bytes.toString().replace('"version":2', '"version":7'));
    await assert.rejects(loadManifest(future, store), code('SNAPSHOT_MANIFEST_VERSION'));
    await assert.rejects(loadManifest('f'.repeat(64), store), code('SNAPSHOT_MANIFEST_MISSING'));
    // A manifest file (not an id) loads without the store's copy.
    const copy = file('copy.json');
    fs.writeFileSync(copy, bytes);
    assert.equal((await loadManifest(copy)).id, r.id);
  });
});

/** A store wrapper: puts slowed down and counted (peak concurrency), failing after `failAfter` puts. */
class FlakyStore extends WrappedStore {
  constructor(root: string) {
    super(DirStore.open(root, { fsync: false }));
  }
  override get description(): string {
    return 'flaky';
  }
  puts = 0;
  active = 0;
  peak = 0;
  manifestPuts = 0;
  failAfter = Infinity;
  override async putChunk(digest: string, data: Uint8Array): Promise<void> {
    if (this.puts >= this.failAfter) throw new StoreError('io', 'injected: the network went away', false);
    this.puts++;
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    try {
      await new Promise((r) => setTimeout(r, 15));
      await this.inner.putChunk(digest, data);
    } finally {
      this.active--;
    }
  }
  override async putManifest(id: string, data: Uint8Array): Promise<void> {
    // A reader must never see a manifest whose chunks are missing: every put is done by now.
    assert.equal(this.active, 0, 'no chunk upload in flight when the manifest is written');
    this.manifestPuts++;
    await this.inner.putManifest(id, data);
  }
}

describe('packing to a (remote) store', () => {
  test('uploads overlap up to maxUploads; the manifest is written last', async () => {
    const storeDir = file('store');
    const store = new FlakyStore(storeDir);
    const mem = file('mem');
    makeImage(mem, 64 * MiB, 11);
    const r = await pack({ memPath: mem, store, pool, maxUploads: 6 });
    assert.ok(store.peak > 1 && store.peak <= 6, `peak uploads in flight ${store.peak}`);
    assert.equal(store.manifestPuts, 1);
    assert.equal(store.puts, r.newChunks);
  });

  test('an interrupted pack leaves whole chunks and no manifest; a rerun uploads only the rest and matches an uninterrupted pack', async () => {
    const storeDir = file('store');
    const store = new FlakyStore(storeDir);
    const mem = file('mem');
    const data = makeImage(mem, 64 * MiB, 12);
    store.failAfter = 5;
    await assert.rejects(pack({ memPath: mem, store, pool, maxUploads: 4 }), /went away/);
    assert.equal(store.manifestPuts, 0);
    assert.deepEqual(fs.readdirSync(path.join(storeDir, 'manifests')), []);
    const stored = fs.readdirSync(path.join(storeDir, 'chunks')).flatMap((d) => fs.readdirSync(path.join(storeDir, 'chunks', d)));
    assert.equal(stored.length, 5, 'exactly the puts that succeeded');
    store.failAfter = Infinity;
    const r = await pack({ memPath: mem, store, pool });
    assert.equal(r.reusedChunks, 5);
    assert.equal(r.newChunks + r.reusedChunks + r.zeroChunks, r.chunks);
    const clean = await pack({ memPath: mem, store: DirStore.open(file('clean'), { fsync: false }), pool });
    assert.equal(r.id, clean.id, 'the finished pack is the same snapshot as an uninterrupted one');
    const out = file('out');
    await unpack({ loaded: await loadManifest(r.id, store), store, outPath: out, pool });
    assert.ok(fs.readFileSync(out).equals(data));
  });

  test('chunks a store holds as version 1 blobs are listed as they are stored (no frames) and still unpack', async () => {
    const mem = file('mem');
    const data = makeImage(mem, 16 * MiB, 13);
    const store = DirStore.open(file('store'), { fsync: false });
    // Put version 1 blobs of two chunks first, as an older fc-uffd would have.
    for (const i of [0, 2]) {
      const c = data.subarray(i * 4 * MiB, (i + 1) * 4 * MiB);
      await store.putChunk(sha256Hex(c), encodeChunkBlob(c, analyzeChunk(c)));
    }
    const r = await pack({ memPath: mem, store, pool });
    assert.equal(r.manifest.chunks[0]!.frameBytes, undefined);
    assert.equal(r.manifest.chunks[2]!.frameBytes, undefined);
    assert.ok(r.manifest.chunks[1]!.frameBytes, 'new chunks are framed');
    const out = file('out');
    await unpack({ loaded: await loadManifest(r.id, store), store, outPath: out, pool });
    assert.ok(fs.readFileSync(out).equals(data));
  });

  test('a pack whose signal fires stops reading chunks, writes no manifest (ABORTED); a rerun finishes it', async () => {
    const storeDir = file('store');
    const store = new FlakyStore(storeDir);
    const mem = file('mem');
    const data = makeImage(mem, 64 * MiB, 13);
    const ac = new AbortController();
    await assert.rejects(
      pack({
        memPath: mem,
        store,
        pool,
        signal: ac.signal,
        onProgress: (done) => {
          if (done >= 8 * MiB) ac.abort(new Error('Ctrl-C'));
        },
      }),
      (err: unknown) => err instanceof FcUffdError && err.code === 'ABORTED' && /Ctrl-C/.test(err.message),
    );
    assert.equal(store.manifestPuts, 0);
    assert.ok(store.puts < 16, `stopped early: ${store.puts} of 16 chunks uploaded`);
    await assert.rejects(
      pack({ memPath: mem, store, pool, signal: AbortSignal.abort() }),
      (err: unknown) => err instanceof FcUffdError && err.code === 'ABORTED',
    );
    const r = await pack({ memPath: mem, store, pool });
    const out = file('out');
    await unpack({ loaded: await loadManifest(r.id, store), store, outPath: out, pool });
    assert.ok(fs.readFileSync(out).equals(data));
  });

  test('an unpack whose signal fires aborts its store reads and leaves no output file (ABORTED)', async () => {
    const storeDir = file('store');
    const store = DirStore.open(storeDir, { fsync: false });
    const mem = file('mem');
    makeImage(mem, 64 * MiB, 14);
    const r = await pack({ memPath: mem, store, pool });
    const ac = new AbortController();
    const signals: Array<AbortSignal | undefined> = [];
    const watched: ChunkStore = Object.assign(Object.create(store) as DirStore, {
      getChunk: (d: string, o?: GetOptions) => {
        signals.push(o?.signal);
        return store.getChunk(d, o);
      },
    });
    const out = file('out');
    await assert.rejects(
      unpack({
        loaded: await loadManifest(r.id, store),
        store: watched,
        outPath: out,
        pool,
        signal: ac.signal,
        onProgress: () => ac.abort(new Error('Ctrl-C')),
      }),
      (err: unknown) => err instanceof FcUffdError && err.code === 'ABORTED',
    );
    assert.equal(fs.existsSync(out), false, 'no output file');
    assert.ok(signals.length > 0 && signals.every((s) => s !== undefined), 'every store read carried the signal');
    assert.ok(signals.length < r.chunks, `stopped early: ${signals.length} reads`);
  });
});
