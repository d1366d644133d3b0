// Tier 1: the directory store, the retry/concurrency wrapper and the shared chunk cache.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { DirStore } from '../../src/store/dir.js';
import { Limiter, ResilientStore } from '../../src/store/resilient.js';
import { StoreError, type ChunkStore } from '../../src/store/types.js';
import { ChunkCache } from '../../src/snapshot/chunk-cache.js';
import { tempDir } from '../helpers/files.js';

const dir = tempDir('fc-uffd-store-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function digestOf(b: Uint8Array): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

describe('DirStore', () => {
  test('put/get/has of chunks and manifests, ranged reads, not-found and bad names', async () => {
    const store = DirStore.open(path.join(dir, 's1'));
    const data = crypto.randomBytes(100_000);
    const d = digestOf(data);
    assert.equal(await store.hasChunk(d), false);
    await store.putChunk(d, data);
    await store.putChunk(d, data); // idempotent
    assert.equal(await store.hasChunk(d), true);
    assert.ok(Buffer.from(await store.getChunk(d)).equals(data));
    assert.ok(Buffer.from(await store.getChunk(d, { range: { offset: 500, length: 1000 } })).equals(data.subarray(500, 1500)));
    await store.putManifest(d, data);
    assert.equal(await store.hasManifest(d), true);
    await assert.rejects(store.getChunk('0'.repeat(64)), (e: unknown) => e instanceof StoreError && e.kind === 'not-found' && !e.retryable);
    await assert.rejects(
      async () => store.getChunk('../../etc/passwd'),
      (e: unknown) => e instanceof StoreError && e.kind === 'invalid-name',
    );
    assert.deepEqual(fs.readdirSync(path.join(dir, 's1', 'tmp')), [], 'no temporary files left');
  });

  test('concurrent writers (this process and another) of the same objects, overlapping in time: whole objects, no leftovers', async () => {
    const root = path.join(dir, 's2');
    const store = DirStore.open(root);
    const rounds = 8;
    const blobsOf = (round: number): Buffer[] => Array.from({ length: 20 }, (_, i) => Buffer.alloc(256 * 1024, round * 20 + i + 1));
    // Both writers start each round together (a file barrier), on objects neither has written yet,
    // so both pass the exists() check and race to rename the same names.
    const barrier = (round: number, who: string): string => path.join(dir, `s2-barrier-${round}-${who}`);
    const script = `
      import { DirStore } from ${JSON.stringify(new URL('../../src/store/dir.js', import.meta.url).href)};
      import crypto from 'node:crypto';
      import fs from 'node:fs';
      const s = DirStore.open(${JSON.stringify(root)});
      for (let round = 0; round < ${rounds}; round++) {
        fs.writeFileSync(${JSON.stringify(dir)} + '/s2-barrier-' + round + '-child', '');
        while (!fs.existsSync(${JSON.stringify(dir)} + '/s2-barrier-' + round + '-parent')) await new Promise((r) => setTimeout(r, 1));
        const blobs = Array.from({ length: 20 }, (_, i) => Buffer.alloc(256 * 1024, round * 20 + i + 1));
        await Promise.all(blobs.map((b) => s.putChunk(crypto.createHash('sha256').update(b).digest('hex'), b)));
      }
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' });
    const childDone = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const childTmp = `.${child.pid}.`;
    const ownTmp = `.${process.pid}.`;
    let overlaps = 0;
    for (let round = 0; round < rounds; round++) {
      fs.writeFileSync(barrier(round, 'parent'), '');
      while (!fs.existsSync(barrier(round, 'child'))) await new Promise((r) => setTimeout(r, 1));
      let writing = true as boolean; // cleared by the puts' finally, which TS's narrowing does not see
      const puts = Promise.all(blobsOf(round).map((b) => store.putChunk(digestOf(b), b))).finally(() => (writing = false));
      // Evidence of overlap: one listing of tmp/ holding objects being written by both processes.
      while (writing) {
        const names = fs.readdirSync(path.join(root, 'tmp'));
        if (names.some((n) => n.includes(childTmp)) && names.some((n) => n.includes(ownTmp))) overlaps++;
        await new Promise((r) => setImmediate(r));
      }
      await puts;
    }
    assert.equal(await childDone, 0);
    assert.ok(overlaps > 0, 'the two writers were never seen writing at the same time');
    for (let round = 0; round < rounds; round++)
      for (const b of blobsOf(round)) assert.ok(Buffer.from(await store.getChunk(digestOf(b))).equals(b));
    assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), []);
  });
});

/** A store whose gets fail `failures` times with the given error, counting concurrency. */
class FlakyStore implements ChunkStore {
  readonly description = 'flaky';
  calls = 0;
  active = 0;
  maxActive = 0;
  constructor(
    private failures: number,
    private readonly error: StoreError,
  ) {}
  async getChunk(): Promise<Uint8Array> {
    this.calls++;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    await new Promise((r) => setTimeout(r, 5));
    this.active--;
    if (this.failures-- > 0) throw this.error;
    return new Uint8Array([1, 2, 3]);
  }
  hasChunk = (): Promise<boolean> => Promise.resolve(true);
  putChunk = async (): Promise<void> => {};
  hasManifest = (): Promise<boolean> => Promise.resolve(true);
  getManifest = (): Promise<Uint8Array> => Promise.resolve(new Uint8Array());
  putManifest = async (): Promise<void> => {};
  close = async (): Promise<void> => {};
}

describe('ResilientStore', () => {
  test('retries retryable failures, not others; limits concurrency', async () => {
    const flaky = new FlakyStore(2, new StoreError('io', 'EIO', true));
    const s = new ResilientStore(flaky, { maxAttempts: 3, backoffMs: 1 });
    assert.deepEqual([...(await s.getChunk('x'))], [1, 2, 3]);
    assert.equal(flaky.calls, 3);

    const gone = new FlakyStore(5, new StoreError('not-found', 'missing', false));
    await assert.rejects(new ResilientStore(gone, { backoffMs: 1 }).getChunk('x'), /missing/);
    assert.equal(gone.calls, 1);

    const tooFlaky = new FlakyStore(5, new StoreError('io', 'EIO', true));
    await assert.rejects(new ResilientStore(tooFlaky, { maxAttempts: 3, backoffMs: 1 }).getChunk('x'), /EIO/);
    assert.equal(tooFlaky.calls, 3);

    const busy = new FlakyStore(0, new StoreError('io', 'x', true));
    const limited = new ResilientStore(busy, { maxConcurrency: 3 });
    await Promise.all(Array.from({ length: 20 }, () => limited.getChunk('x')));
    assert.equal(busy.maxActive, 3);
  });

  test('counts what it asked of its store: tries by operation, retries, failures by kind, bytes received', async () => {
    const s = new ResilientStore(new FlakyStore(2, new StoreError('io', 'EIO', true)), { maxAttempts: 3, backoffMs: 1 });
    await s.getChunk('x'); // 2 failed tries, then 3 bytes
    await s.hasChunk('x');
    await s.putManifest('m', new Uint8Array(1));
    assert.deepEqual(s.counts, { tries: { get: 3, head: 1, put: 1, list: 0 }, retries: 2, failures: {}, receivedBytes: 3 });

    const spent = new ResilientStore(new FlakyStore(9, new StoreError('timeout', 'slow', true)), { maxAttempts: 2, backoffMs: 1 });
    await assert.rejects(spent.getChunk('x'), /slow/);
    const missing = new ResilientStore(new FlakyStore(9, new StoreError('not-found', 'missing', false)));
    await assert.rejects(missing.getChunk('x'), /missing/);
    await assert.rejects(missing.manifestIdsWithPrefix('ab'), (e: unknown) => e instanceof StoreError && e.kind === 'config');
    assert.deepEqual(spent.counts, { tries: { get: 2, head: 0, put: 0, list: 0 }, retries: 1, failures: { timeout: 1 }, receivedBytes: 0 });
    assert.deepEqual(missing.counts, {
      tries: { get: 1, head: 0, put: 0, list: 1 },
      retries: 0,
      failures: { 'not-found': 1, config: 1 },
      receivedBytes: 0,
    });

    // A read given up while it waits to retry (its VM ended) is an aborted failure, not a timeout.
    const abort = new AbortController();
    const waiting = new ResilientStore(new FlakyStore(9, new StoreError('io', 'EIO', true)), { maxAttempts: 5, backoffMs: 10_000 });
    const read = waiting.getChunk('x', { signal: abort.signal });
    await new Promise((r) => setTimeout(r, 20));
    abort.abort();
    await assert.rejects(read);
    assert.deepEqual(waiting.counts.failures, { aborted: 1 });
    assert.equal(waiting.counts.retries, 1);
  });
});

describe('ChunkCache', () => {
  test('LRU bounded in bytes; one load per digest at a time; failures not cached', async () => {
    const cache = new ChunkCache(3 * 1024);
    const buf = () => new SharedArrayBuffer(1024);
    let loads = 0;
    const loader = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 5));
      return buf();
    };
    const [x, y] = await Promise.all([cache.load('a', loader), cache.load('a', loader)]);
    assert.equal(x, y);
    assert.equal(loads, 1);
    await cache.load('b', loader);
    await cache.load('c', loader);
    assert.ok(cache.get('a')); // a is now most recently used
    await cache.load('d', loader); // evicts b
    assert.equal(cache.has('b'), false);
    assert.equal(cache.has('a'), true);
    assert.equal(cache.sizeBytes, 3 * 1024);
    await assert.rejects(
      cache.load('e', async () => Promise.reject(new Error('boom'))),
      /boom/,
    );
    assert.equal(cache.has('e'), false);
    assert.equal(cache.isLoading('e'), false);
    assert.equal((await cache.load('e', loader)).byteLength, 1024);
  });
});

test('the limiter never lets more than its limit run while callers keep arriving', async () => {
  const limiter = new Limiter(2);
  let active = 0;
  let peak = 0;
  const job = async (): Promise<void> => {
    active++;
    peak = Math.max(peak, active);
    await new Promise((r) => setImmediate(r));
    active--;
  };
  // Waves of callers arriving while earlier ones finish and hand their slots on.
  const all: Array<Promise<void>> = [];
  for (let wave = 0; wave < 20; wave++) {
    for (let i = 0; i < 3; i++) all.push(limiter.run(job));
    await Promise.resolve();
  }
  await Promise.all(all);
  assert.equal(peak, 2);
});
