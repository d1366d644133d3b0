// DiskCacheStore and InflightStore over a local DirStore (no server needed).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DirStore } from '../../src/store/dir.js';
import { DiskCacheStore } from '../../src/store/disk-cache.js';
import { InflightStore } from '../../src/store/inflight.js';
import { manifestKey } from '../../src/store/layout.js';
import { ResilientStore } from '../../src/store/resilient.js';
import { StoreError, type ChunkStore, type GetOptions } from '../../src/store/types.js';
import { tempDir } from '../helpers/files.js';
import { WrappedStore } from '../helpers/wrapped-store.js';

const root = tempDir('fc-uffd-diskcache-');
after(() => fs.rmSync(root, { recursive: true, force: true }));

function sha(b: Uint8Array): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/** A DirStore that counts reads (and aborted reads) and can hold them until released. */
function counting(inner: DirStore): ChunkStore & { gets: number; aborted: number; hold(): () => void } {
  const c: { gets: number; aborted: number; gate: Promise<void> | undefined } = { gets: 0, aborted: 0, gate: undefined };
  const read = async (fn: () => Promise<Uint8Array>, o?: GetOptions): Promise<Uint8Array> => {
    c.gets++;
    if (c.gate) {
      await new Promise<void>((resolve, reject) => {
        c.gate!.then(resolve);
        o?.signal?.addEventListener('abort', () => {
          c.aborted++;
          reject(new StoreError('aborted', 'aborted', false));
        });
      });
    }
    return fn();
  };
  return {
    get gets() {
      return c.gets;
    },
    get aborted() {
      return c.aborted;
    },
    hold() {
      let release!: () => void;
      c.gate = new Promise((r) => (release = r));
      return () => {
        c.gate = undefined;
        release();
      };
    },
    description: inner.description,
    hasChunk: (d) => inner.hasChunk(d),
    getChunk: (d, o) => read(() => inner.getChunk(d, o?.range ? { range: o.range } : {}), o),
    putChunk: (d, b) => inner.putChunk(d, b),
    hasManifest: (d) => inner.hasManifest(d),
    getManifest: (d, o) => read(() => inner.getManifest(d, o?.range ? { range: o.range } : {}), o),
    putManifest: (d, b) => inner.putManifest(d, b),
    close: () => inner.close(),
  };
}

async function origin(name: string, count: number, sizeBytes: number): Promise<{ store: DirStore; objects: Map<string, Buffer> }> {
  const store = DirStore.open(path.join(root, name), { fsync: false });
  const objects = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const b = crypto.randomBytes(sizeBytes);
    objects.set(sha(b), b);
    await store.putChunk(sha(b), b);
    await store.putManifest(sha(b), b);
  }
  return { store, objects };
}

test('disk cache: a miss fetches and caches, a hit does not fetch, ranged hits are cut from the entry, kept across reopen', async () => {
  const { store, objects } = await origin('o1', 3, 10_000);
  const inner = counting(store);
  const dir = path.join(root, 'c1');
  const cache = await DiskCacheStore.open(inner, { dir, maxBytes: 1e6 });
  const [d, b] = [...objects][0]!;
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.ok(Buffer.from(await cache.getChunk(d, { range: { offset: 9000, length: 5000 } })).equals(b.subarray(9000)));
  assert.equal(inner.gets, 1);
  assert.deepEqual([cache.hits, cache.misses], [2, 1]);
  const [d2, b2] = [...objects][1]!;
  assert.ok(Buffer.from(await cache.getChunk(d2, { range: { offset: 5, length: 10 } })).equals(b2.subarray(5, 15)));
  assert.equal(fs.existsSync(path.join(dir, 'chunks', d2.slice(0, 2), d2)), false, 'a ranged miss is not cached');
  const reopened = await DiskCacheStore.open(inner, { dir, maxBytes: 1e6 });
  assert.ok(Buffer.from(await reopened.getChunk(d)).equals(b));
  assert.equal(inner.gets, 2, 'only the ranged miss went to the origin');
  assert.equal(reopened.sizeBytes, 10_000 + 40);
});

test('disk cache: a damaged entry is deleted and fetched again, never served', async () => {
  const { store, objects } = await origin('o2', 1, 20_000);
  const inner = counting(store);
  const dir = path.join(root, 'c2');
  const cache = await DiskCacheStore.open(inner, { dir, maxBytes: 1e6 });
  const [d, b] = [...objects][0]!;
  await cache.getChunk(d);
  const file = path.join(dir, 'chunks', d.slice(0, 2), d);
  const raw = fs.readFileSync(file);
  raw[raw.length - 7]! ^= 1;
  fs.writeFileSync(file, raw);
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.equal(cache.corruptEntries, 1);
  assert.equal(inner.gets, 2);
  fs.writeFileSync(file, Buffer.alloc(10)); // torn / foreign file
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.equal(cache.corruptEntries, 2);
});

test('disk cache: a whole chunk hit is served unchecked, in shared memory; its repeat is checked, a damaged entry dropped and fetched', async () => {
  const { store, objects } = await origin('o2b', 1, 30_000);
  const inner = counting(store);
  const dir = path.join(root, 'c2b');
  const [d, b] = [...objects][0]!;
  await (await DiskCacheStore.open(inner, { dir, maxBytes: 1e6 })).getChunk(d);
  const file = path.join(dir, 'chunks', d.slice(0, 2), d);
  const raw = fs.readFileSync(file);
  raw[raw.length - 7]! ^= 1; // bit rot after the entry was written: its header hash no longer matches
  fs.writeFileSync(file, raw);
  // A new process: nothing handed out yet, so the first whole read is not a repeat.
  const cache = await DiskCacheStore.open(inner, { dir, maxBytes: 1e6 });
  const first = await cache.getChunk(d);
  assert.ok(first.buffer instanceof SharedArrayBuffer, 'a codec thread reads it without a copy');
  assert.ok(Buffer.from(first).equals(raw.subarray(40)), 'served as stored: the consumer checks it, not the cache');
  assert.deepEqual([cache.hits, cache.corruptEntries, inner.gets], [1, 0, 1]);
  // The consumer's check failed and it reads again: now the entry is checked, dropped and fetched.
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.deepEqual([cache.repeatChecks, cache.corruptEntries, inner.gets], [1, 1, 2]);
  // An entry that is not a cache entry at all (no magic) is never served, repeat or not.
  fs.writeFileSync(file, Buffer.alloc(100));
  const fresh = await DiskCacheStore.open(inner, { dir, maxBytes: 1e6 });
  assert.ok(Buffer.from(await fresh.getChunk(d)).equals(b));
  assert.deepEqual([fresh.corruptEntries, inner.gets], [1, 3]);
});

test('disk cache: a miss read into shared memory (as remote bodies are) is served and cached; close waits for the entry', async () => {
  const { store, objects } = await origin('o2c', 3, 200_000);
  // What the HTTP and S3 stores return: bodies in shared memory.
  class Shared extends WrappedStore {
    override async getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
      const b = await this.inner.getChunk(digest, options);
      const out = Buffer.from(new SharedArrayBuffer(b.length));
      out.set(b);
      return out;
    }
  }
  const inner = counting(store);
  const dir = path.join(root, 'c2c');
  const cache = await DiskCacheStore.open(new Shared(inner), { dir, maxBytes: 1e7 });
  for (const [d, b] of objects) assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  await cache.close();
  for (const [d, b] of objects) {
    const entry = fs.readFileSync(path.join(dir, 'chunks', d.slice(0, 2), d));
    assert.ok(entry.subarray(40).equals(b), 'the entry holds the bytes');
    assert.ok(entry.subarray(8, 40).equals(crypto.createHash('sha256').update(b).digest()), 'and their hash');
  }
  assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), [], 'no temporary file left');
  const again = await DiskCacheStore.open(inner, { dir, maxBytes: 1e7 });
  for (const [d, b] of objects) assert.ok(Buffer.from(await again.getChunk(d)).equals(b));
  assert.equal(inner.gets, 3, 'the second cache read every chunk from disk');
});

test('disk cache: fetched bytes that fail verification are refused (integrity, retryable) and not cached', async () => {
  const { store, objects } = await origin('o3', 1, 1000);
  const dir = path.join(root, 'c3');
  const [d] = [...objects][0]!;
  const cache = await DiskCacheStore.open(store, {
    dir,
    maxBytes: 1e6,
    verifyChunk: () => {
      throw new Error('decoded content differs');
    },
  });
  await assert.rejects(cache.getChunk(d), (e: unknown) => e instanceof StoreError && e.kind === 'integrity' && e.retryable);
  assert.equal(fs.existsSync(path.join(dir, 'chunks', d.slice(0, 2), d)), false);
  // A manifest's id is the sha256 of its bytes: one stored under another id is refused.
  const other = crypto.randomBytes(64);
  const wrongId = sha(crypto.randomBytes(8));
  await store.putManifest(wrongId, other);
  await assert.rejects(cache.getManifest(wrongId), (e: unknown) => e instanceof StoreError && e.kind === 'integrity');
});

test('disk cache: beyond its size the least recently used entries are evicted', async () => {
  const { store, objects } = await origin('o4', 6, 10_000);
  const dir = path.join(root, 'c4');
  const cache = await DiskCacheStore.open(store, { dir, maxBytes: 45_000 });
  const names = [...objects.keys()];
  for (const [i, d] of names.slice(0, 4).entries()) {
    await cache.getChunk(d);
    const t = new Date(Date.now() - (10 - i) * 1000);
    fs.utimesSync(path.join(dir, 'chunks', d.slice(0, 2), d), t, t);
  }
  await cache.getChunk(names[0]!); // now the most recent
  await cache.getChunk(names[4]!); // 5 entries of 10,040 bytes > 45 kB: evict to 40.5 kB, the oldest touched first
  await cache.close();
  const present = names.map((d) => fs.existsSync(path.join(dir, 'chunks', d.slice(0, 2), d)));
  assert.deepEqual(present, [true, false, true, true, true, false], 'the least recently used (not the first cached) went');
  assert.equal(cache.evictedEntries, 1);
});

test('disk cache: two processes filling the same entries at once both succeed; entries whole, no temporary files', async () => {
  const { store, objects } = await origin('o5', 20, 50_000);
  const dir = path.join(root, 'c5');
  const mod = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/store');
  const script = `
    import { DirStore } from ${JSON.stringify(path.join(mod, 'dir.js'))};
    import { DiskCacheStore } from ${JSON.stringify(path.join(mod, 'disk-cache.js'))};
    const c = await DiskCacheStore.open(DirStore.open(${JSON.stringify(store.root)}), { dir: ${JSON.stringify(dir)}, maxBytes: 1e8 });
    const names = ${JSON.stringify([...objects.keys()])};
    await Promise.all(names.map((d) => c.getChunk(d)));
    process.stdout.write(String(c.misses));`;
  const run = () =>
    new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (b: Buffer) => (out += b.toString()));
      p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited ${code}`))));
    });
  const [a, b] = await Promise.all([run(), run()]);
  assert.ok(Number(a) + Number(b) >= 20);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
  const cache = await DiskCacheStore.open(store, { dir, maxBytes: 1e8 });
  for (const [d, bytes] of objects) assert.ok(Buffer.from(await cache.getChunk(d)).equals(bytes));
  assert.deepEqual([cache.hits, cache.corruptEntries], [20, 0]);
});

test('in-flight sharing: concurrent reads of one object make one inner read; different ranges do not share', async () => {
  const { store, objects } = await origin('o6', 1, 10_000);
  const inner = counting(store);
  const s = new InflightStore(inner);
  const [d, b] = [...objects][0]!;
  const release = inner.hold();
  const reads = Array.from({ length: 8 }, () => s.getChunk(d));
  const ranged = [
    s.getChunk(d, { range: { offset: 0, length: 10 } }),
    s.getChunk(d, { range: { offset: 0, length: 10 } }),
    s.getChunk(d, { range: { offset: 10, length: 10 } }),
  ];
  release();
  for (const r of await Promise.all(reads)) assert.ok(Buffer.from(r).equals(b));
  assert.ok(Buffer.from((await Promise.all(ranged))[2]!).equals(b.subarray(10, 20)));
  assert.equal(inner.gets, 3);
  assert.equal(s.inflightCount, 0);
});

test('in-flight sharing: one waiter aborting leaves the read to the others; all aborting aborts it', async () => {
  const { store, objects } = await origin('o7', 1, 10_000);
  const inner = counting(store);
  const s = new InflightStore(inner);
  const [d, b] = [...objects][0]!;
  let release = inner.hold();
  const a = new AbortController();
  const pa = s.getChunk(d, { signal: a.signal });
  const pb = s.getChunk(d);
  a.abort();
  await assert.rejects(pa, (e: unknown) => e instanceof StoreError && e.kind === 'aborted');
  assert.equal(inner.aborted, 0);
  release();
  assert.ok(Buffer.from(await pb).equals(b));
  release = inner.hold();
  const c1 = new AbortController();
  const c2 = new AbortController();
  const p1 = s.getChunk(d, { signal: c1.signal });
  const p2 = s.getChunk(d, { signal: c2.signal });
  c1.abort();
  assert.equal(inner.aborted, 0);
  c2.abort();
  await Promise.allSettled([p1, p2]);
  assert.equal(inner.aborted, 1, 'the shared read was aborted once all waiters left');
  assert.equal(s.inflightCount, 0);
  release();
  assert.ok(Buffer.from(await s.getChunk(d)).equals(b));
  assert.equal(inner.gets, 3);
});

test('disk cache: a ranged hit reads only its range; bytes outside it may be damaged and are not read', async () => {
  const { store, objects } = await origin('o8', 1, 100_000);
  const dir = path.join(root, 'c8');
  const cache = await DiskCacheStore.open(store, { dir, maxBytes: 1e6 });
  const [d, b] = [...objects][0]!;
  await cache.getChunk(d);
  const file = path.join(dir, 'chunks', d.slice(0, 2), d);
  const raw = fs.readFileSync(file);
  raw.fill(0xee, 40 + 50_000); // damage everything after the range (the entry's hash no longer matches)
  fs.writeFileSync(file, raw);
  const got = await cache.getChunk(d, { range: { offset: 1000, length: 4096 } });
  assert.ok(Buffer.from(got).equals(b.subarray(1000, 5096)), 'the range, served without reading the rest');
  assert.deepEqual([cache.hits, cache.corruptEntries], [1, 0]);
  assert.equal(fs.existsSync(file), true);
});

test('disk cache: a range read again after an unchecked hand-out is checked first; a damaged entry is dropped and re-fetched', async () => {
  const { store, objects } = await origin('o9', 1, 100_000);
  const inner = counting(store);
  const dir = path.join(root, 'c9');
  const contentChecks: string[] = [];
  const cache = await DiskCacheStore.open(inner, {
    dir,
    maxBytes: 1e6,
    verifyChunkContent: (digest, blob) => {
      contentChecks.push(digest);
      return sha(blob) === digest ? Promise.resolve() : Promise.reject(new Error('content differs'));
    },
  });
  const [d, b] = [...objects][0]!;
  await cache.getChunk(d);
  assert.equal(inner.gets, 1);
  // Damage inside the range, and write the entry's hash to match (a blob damaged before it was cached).
  const file = path.join(dir, 'chunks', d.slice(0, 2), d);
  const payload = Buffer.from(b);
  payload[2000]! ^= 0xff;
  fs.writeFileSync(file, Buffer.concat([Buffer.from('FCUCACH1'), crypto.createHash('sha256').update(payload).digest(), payload]));
  const range = { offset: 1000, length: 4096 };
  const first = await cache.getChunk(d, { range });
  assert.equal(first[1000], b[2000]! ^ 0xff, 'the first read hands out the range unchecked (the consumer checks it)');
  // The consumer's check failed; it reads the same range again: the cache checks, drops, re-fetches.
  const second = await cache.getChunk(d, { range });
  assert.ok(Buffer.from(second).equals(b.subarray(1000, 5096)), 'the retry gets the right bytes');
  assert.deepEqual(contentChecks, [d]);
  assert.equal(cache.corruptEntries, 1);
  assert.equal(inner.gets, 2, 'the retry went to the inner store');
  // The whole entry is cached again from the inner store, and whole: a whole read serves it.
  await cache.getChunk(d);
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.equal(inner.gets, 3);
  // Both whole reads followed an unchecked whole hand-out (the first miss, then the re-fetch): checked.
  assert.equal(cache.repeatChecks, 3);
});

test('disk cache: a whole chunk read again after an unchecked hand-out is content-checked (a blob damaged before caching)', async () => {
  const { store, objects } = await origin('o10', 1, 100_000);
  const inner = counting(store);
  const dir = path.join(root, 'c10');
  const cache = await DiskCacheStore.open(inner, {
    dir,
    maxBytes: 1e6,
    verifyChunkContent: (digest, blob) => (sha(blob) === digest ? Promise.resolve() : Promise.reject(new Error('content differs'))),
  });
  const [d, b] = [...objects][0]!;
  const damaged = Buffer.from(b);
  damaged[10]! ^= 1;
  const file = path.join(dir, 'chunks', d.slice(0, 2), d);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.concat([Buffer.from('FCUCACH1'), crypto.createHash('sha256').update(damaged).digest(), damaged]));
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(damaged), 'its own hash matches: served once, unchecked');
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b), 'the repeat is checked, dropped, fetched');
  assert.deepEqual([cache.corruptEntries, inner.gets], [1, 1]);
});

test('disk cache: a hit does not wait for a stalled remote read of another object (the cache is above the limiter)', async () => {
  const { store, objects } = await origin('o11', 2, 10_000);
  const [d1, d2] = [...objects.keys()] as [string, string];
  const b1 = objects.get(d1)!;
  const dir = path.join(root, 'c11');
  // A remote whose reads of d2 never answer; one slot in the limiter (all of it taken by d2).
  class Stalled extends WrappedStore {
    override getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
      return digest === d2 ? new Promise<Uint8Array>(() => undefined) : super.getChunk(digest, options);
    }
  }
  const warm = await DiskCacheStore.open(store, { dir, maxBytes: 1e6 });
  await warm.getChunk(d1);
  const cache = await DiskCacheStore.open(new ResilientStore(new Stalled(store), { maxConcurrency: 1 }), { dir, maxBytes: 1e6 });
  const s = new InflightStore(cache);
  const stalled = s.getChunk(d2);
  stalled.catch(() => undefined);
  const hit = await Promise.race([s.getChunk(d1), new Promise<'stalled'>((resolve) => setTimeout(() => resolve('stalled'), 5000).unref())]);
  assert.notEqual(hit, 'stalled');
  assert.ok(Buffer.from(hit as Uint8Array).equals(b1));
  assert.equal(cache.hits, 1);
});

test('disk cache: a fetched blob that fails the miss check is fetched again and the good one cached', async () => {
  const { store, objects } = await origin('o12', 1, 10_000);
  const [d, b] = [...objects][0]!;
  let reads = 0;
  class Flaky extends WrappedStore {
    override async getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
      const bytes = Buffer.from(await super.getChunk(digest, options));
      if (++reads === 1) bytes[0]! ^= 1; // damaged on the way, once
      return bytes;
    }
  }
  const dir = path.join(root, 'c12');
  const cache = await DiskCacheStore.open(new Flaky(store), {
    dir,
    maxBytes: 1e6,
    verifyChunk: (digest, blob) => {
      if (sha(blob) !== digest) throw new Error('damaged');
    },
  });
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.equal(reads, 2);
  const raw = fs.readFileSync(path.join(dir, 'chunks', d.slice(0, 2), d));
  assert.ok(raw.subarray(40).equals(b), 'the good copy was cached');
});

type EntryMagic = 'FCUCACH1' | 'FCUCACH2';

/** A cache entry file as the cache writes it: FCUCACH1 with the payload's sha256, FCUCACH2 with 32 zero bytes. */
function entry(magic: EntryMagic, payload: Uint8Array): Buffer {
  const hash = magic === 'FCUCACH1' ? crypto.createHash('sha256').update(payload).digest() : Buffer.alloc(32);
  return Buffer.concat([Buffer.from(magic), hash, payload]);
}

function chunkFile(dir: string, digest: string): string {
  return path.join(dir, 'chunks', digest.slice(0, 2), digest);
}

/** A verifyChunkContent for the test's blobs (their name is their sha256) that records what it checked. */
function contentChecker(): { checked: string[]; verifyChunkContent: (digest: string, blob: Uint8Array) => Promise<void> } {
  const checked: string[] = [];
  return {
    checked,
    verifyChunkContent: (digest, blob) => {
      checked.push(digest);
      return sha(blob) === digest ? Promise.resolve() : Promise.reject(new Error('content differs'));
    },
  };
}

/**
 * One chunk in a counting origin, with a cache entry of it already on disk in `magic`'s format
 * (`damage` alters the entry's bytes first).
 */
async function plantedEntry(
  name: string,
  magic: EntryMagic,
  damage: (raw: Buffer) => void = () => undefined,
): Promise<{ inner: ReturnType<typeof counting>; dir: string; d: string; b: Buffer }> {
  const { store, objects } = await origin(`o-${name}`, 1, 100_000);
  const dir = path.join(root, `c-${name}`);
  const [d, b] = [...objects][0]!;
  const raw = entry(magic, b);
  damage(raw);
  fs.mkdirSync(path.dirname(chunkFile(dir, d)), { recursive: true });
  fs.writeFileSync(chunkFile(dir, d), raw);
  return { inner: counting(store), dir, d, b };
}

for (const magic of ['FCUCACH1', 'FCUCACH2'] as const) {
  test(`disk cache: a whole chunk hit from a ${magic} entry is handed out unchecked in shared memory; the repeat finds it damaged, drops it and fetches`, async () => {
    // A good entry, then bit rot in its payload (its hash, if it has one, no longer matches).
    const { inner, dir, d, b } = await plantedEntry(`rot-${magic}`, magic, (raw) => (raw[40 + 5000]! ^= 0xff));
    const content = contentChecker();
    const cache = await DiskCacheStore.open(inner, { dir, maxBytes: 1e6, verifyChunkContent: content.verifyChunkContent });
    const first = await cache.getChunk(d);
    assert.equal(first[5000], b[5000]! ^ 0xff, 'the first read is served as it is on disk: no hash, no content check');
    assert.ok(first.buffer instanceof SharedArrayBuffer, 'a whole chunk is read into shared memory');
    assert.deepEqual([cache.hits, cache.corruptEntries, inner.gets, content.checked.length], [1, 0, 0, 0]);
    // The consumer's check failed; it reads the chunk again: checked, dropped, fetched.
    assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
    assert.deepEqual([cache.repeatChecks, cache.corruptEntries, inner.gets], [1, 1, 1]);
    // FCUCACH1: its hash fails first, so the content check is not reached; FCUCACH2: the content check is all it has.
    assert.deepEqual(content.checked, magic === 'FCUCACH1' ? [] : [d]);
  });
}

test('disk cache: a miss with verifyChunkContent caches a FCUCACH2 entry (reserved bytes zero); without it a FCUCACH1 entry with the payload sha256; manifests always FCUCACH1', async () => {
  const { store, objects } = await origin('o14', 2, 100_000);
  const [[d1, b1], [d2, b2]] = [...objects] as [[string, Buffer], [string, Buffer]];
  const withContent = path.join(root, 'c14a');
  const a = await DiskCacheStore.open(store, { dir: withContent, maxBytes: 1e6, verifyChunkContent: contentChecker().verifyChunkContent });
  assert.ok(Buffer.from(await a.getChunk(d1)).equals(b1));
  assert.ok(Buffer.from(await a.getManifest(d2)).equals(b2));
  assert.ok(fs.readFileSync(chunkFile(withContent, d1)).equals(entry('FCUCACH2', b1)));
  assert.ok(fs.readFileSync(path.join(withContent, manifestKey(d2))).equals(entry('FCUCACH1', b2)));
  const without = path.join(root, 'c14b');
  const b = await DiskCacheStore.open(store, { dir: without, maxBytes: 1e6 });
  assert.ok(Buffer.from(await b.getChunk(d1)).equals(b1));
  assert.ok(Buffer.from(await b.getManifest(d2)).equals(b2));
  assert.ok(fs.readFileSync(chunkFile(without, d1)).equals(entry('FCUCACH1', b1)));
  assert.ok(fs.readFileSync(path.join(without, manifestKey(d2))).equals(entry('FCUCACH1', b2)));
});

test('disk cache: a FCUCACH1 chunk entry (as earlier versions wrote) is served, and its repeat checks hash and content and keeps it', async () => {
  const { inner, dir, d, b } = await plantedEntry('v1', 'FCUCACH1');
  const content = contentChecker();
  const cache = await DiskCacheStore.open(inner, { dir, maxBytes: 1e6, verifyChunkContent: content.verifyChunkContent });
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.ok(Buffer.from(await cache.getChunk(d, { range: { offset: 100, length: 50 } })).equals(b.subarray(100, 150)));
  assert.deepEqual([cache.hits, cache.repeatChecks, cache.corruptEntries, inner.gets], [3, 1, 0, 0]);
  assert.deepEqual(content.checked, [d]);
  assert.ok(fs.readFileSync(chunkFile(dir, d)).equals(entry('FCUCACH1', b)), 'kept as it was');
});

test('disk cache: without verifyChunkContent a repeated read of a FCUCACH2 entry (nothing to check it with) drops it and fetches', async () => {
  const { inner, dir, d, b } = await plantedEntry('v2-unchecked', 'FCUCACH2');
  const cache = await DiskCacheStore.open(inner, { dir, maxBytes: 1e6 });
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b), 'a first read serves it unchecked');
  assert.equal(inner.gets, 0);
  assert.ok(Buffer.from(await cache.getChunk(d)).equals(b));
  assert.deepEqual([cache.repeatChecks, cache.corruptEntries, inner.gets], [1, 1, 1]);
  assert.ok(fs.readFileSync(chunkFile(dir, d)).equals(entry('FCUCACH1', b)), 'cached again with its hash');
});

test('disk cache: every whole manifest read is checked: a damaged entry is never served, not even by a fresh process; a FCUCACH2 manifest entry counts as damaged', async () => {
  const { store, objects } = await origin('o17', 1, 100_000);
  const inner = counting(store);
  const dir = path.join(root, 'c17');
  const [id, b] = [...objects][0]!;
  const file = path.join(dir, manifestKey(id));
  const options = { dir, maxBytes: 1e6, verifyChunkContent: contentChecker().verifyChunkContent };
  await (await DiskCacheStore.open(inner, options)).getManifest(id);
  const raw = fs.readFileSync(file);
  raw[40 + 7]! ^= 1;
  fs.writeFileSync(file, raw);
  const fresh = await DiskCacheStore.open(inner, options);
  assert.ok(Buffer.from(await fresh.getManifest(id)).equals(b));
  assert.deepEqual([fresh.repeatChecks, fresh.corruptEntries, inner.gets], [0, 1, 2]);
  assert.ok(Buffer.from(await fresh.getManifest(id)).equals(b), 'the re-cached entry is good');
  assert.deepEqual([fresh.hits, fresh.corruptEntries, inner.gets], [1, 1, 2]);
  fs.writeFileSync(file, entry('FCUCACH2', b));
  const other = await DiskCacheStore.open(inner, options);
  assert.ok(Buffer.from(await other.getManifest(id)).equals(b));
  assert.deepEqual([other.corruptEntries, inner.gets], [1, 3]);
  assert.ok(fs.readFileSync(file).equals(entry('FCUCACH1', b)));
});
