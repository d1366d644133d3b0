// HttpStore against a real nginx (WebDAV), faults injected by tools/fault-proxy.ts.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import util from 'node:util';
import { HttpStore } from '../../src/store/http.js';
import { InflightStore } from '../../src/store/inflight.js';
import { ResilientStore } from '../../src/store/resilient.js';
import { DiskCacheStore } from '../../src/store/disk-cache.js';
import { StoreError } from '../../src/store/types.js';
import { storeBodyThreadLoaded } from '../../src/store/undici-request.js';
import { FaultProxy } from '../../tools/fault-proxy.js';
import { httpServer, type RunningServer } from '../helpers/servers.js';
import { tempDir } from '../helpers/files.js';
import { assertRangedReads, assertSharedBodies } from '../helpers/ranged-reads.js';

const server = await httpServer();
const skip = typeof server === 'string' ? server : false;
if (skip) console.log(`# skipping HttpStore tests: ${skip}`);

function sha(b: Uint8Array): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}
function isStoreError(kind: StoreError['kind'], retryable?: boolean) {
  return (e: unknown): boolean => e instanceof StoreError && e.kind === kind && (retryable === undefined || e.retryable === retryable);
}

describe('HttpStore against nginx', { skip }, () => {
  const srv = server as RunningServer;
  const base = () => `${srv.url}/t-${crypto.randomBytes(4).toString('hex')}`;
  let proxy: FaultProxy;
  const data = crypto.randomBytes(300_000);
  const digest = sha(data);
  let prefix: string;
  before(async () => {
    const u = new URL(srv.url);
    proxy = await FaultProxy.start({ host: u.hostname, port: Number(u.port) });
    prefix = base();
    const s = new HttpStore(prefix);
    await s.putChunk(digest, data);
    await s.putManifest(digest, data);
    await s.close();
  });
  after(async () => {
    await proxy.close();
    srv.stop();
  });
  const viaProxy = (o: ConstructorParameters<typeof HttpStore>[1] = {}) => new HttpStore(`${proxy.url}${new URL(prefix).pathname}`, o);

  test('put, get, has of chunks and manifests; a second put of the same object succeeds', async () => {
    const s = new HttpStore(base());
    const d = crypto.randomBytes(1000);
    const id = sha(d);
    assert.equal(await s.hasChunk(id), false);
    await s.putChunk(id, d);
    await s.putChunk(id, d);
    assert.equal(await s.hasChunk(id), true);
    assert.ok(Buffer.from(await s.getChunk(id)).equals(d));
    assert.equal(await s.hasManifest(id), false);
    await s.putManifest(id, d);
    assert.ok(Buffer.from(await s.getManifest(id)).equals(d));
    await s.close();
  });

  test('objects sit at DirStore paths under the prefix (chunks/ab/<digest>, manifests/<id>.json)', async () => {
    const res = await fetch(`${prefix}/chunks/${digest.slice(0, 2)}/${digest}`);
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(data));
    assert.equal((await fetch(`${prefix}/manifests/${digest}.json`)).status, 200);
  });

  test('whole and ranged reads arrive in shared memory (codec threads read them without a copy)', async () => {
    const s = new HttpStore(prefix);
    await assertSharedBodies(s, digest, data);
    await s.close();
  });

  test('ranged reads: middle, first byte, last byte, past the end (cut short), at the end (empty), zero length', async () => {
    const s = new HttpStore(prefix);
    await assertRangedReads(s, digest, data);
    assert.equal((await s.getChunk(digest, { range: { offset: 5, length: 0 } })).length, 0);
    await assert.rejects(s.getChunk('e'.repeat(64), { range: { offset: 0, length: 0 } }), isStoreError('not-found', false));
    await s.close();
  });

  test('a missing object is not-found (not retryable); a bad name is refused before any request', async () => {
    const s = viaProxy();
    proxy.set({});
    await assert.rejects(s.getChunk('f'.repeat(64)), isStoreError('not-found', false));
    assert.equal(await s.hasManifest('f'.repeat(64)), false);
    const before = proxy.requests;
    await assert.rejects(async () => s.getChunk('../etc/passwd'), isStoreError('invalid-name'));
    assert.equal(proxy.requests, before);
    await s.close();
  });

  test('503 and 500 are retried by ResilientStore: exactly maxAttempts requests, then a retryable http-status error', async () => {
    for (const status of [503, 500] as const) {
      proxy.set({ cannedStatus: status });
      const s = new ResilientStore(viaProxy(), { maxAttempts: 3, backoffMs: 5 });
      const before = proxy.requests;
      await assert.rejects(
        s.getChunk(digest),
        (e: unknown) => isStoreError('http-status', true)(e) && (e as Error).message.includes(String(status)),
      );
      assert.equal(proxy.requests - before, 3);
      await s.close();
    }
    proxy.set({});
  });

  test('a 503 that clears while retrying: the read succeeds', async () => {
    proxy.set({ cannedStatus: 503 });
    const s = new ResilientStore(viaProxy(), { maxAttempts: 6, backoffMs: 100 });
    const before = proxy.requests;
    const got = s.getChunk(digest);
    while (proxy.requests === before) await new Promise((r) => setTimeout(r, 5));
    proxy.set({});
    assert.ok(Buffer.from(await got).equals(data));
    assert.ok(proxy.requests - before >= 2, 'answered after a retry');
    await s.close();
  });

  // Background reads are sent and taken in on the store body thread, and their failures cross back
  // to the main thread: each failure is checked both ways.
  for (const background of [false, true]) {
    const how = background ? ' (background read, on the body thread)' : '';

    test(`a stalled server: the headers timeout fires (retryable timeout), on a 404 canned answer nothing is retried${how}`, async () => {
      proxy.set({ stall: true });
      const s = viaProxy({ headersTimeoutMs: 300 });
      const t0 = Date.now();
      await assert.rejects(s.getChunk(digest, { background }), isStoreError('timeout', true));
      assert.ok(Date.now() - t0 < 3000);
      await s.close();
      proxy.set({ cannedStatus: 404 });
      const r = new ResilientStore(viaProxy(), { maxAttempts: 3, backoffMs: 5 });
      const before = proxy.requests;
      await assert.rejects(r.getChunk(digest, { background }), isStoreError('not-found', false));
      assert.equal(proxy.requests - before, 1);
      await r.close();
      proxy.set({});
    });

    test(`a body that stops arriving after its headers: the body timeout fires (retryable timeout)${how}`, async () => {
      proxy.set({ stallAfterResponseBytes: 20_000 });
      const s = viaProxy({ headersTimeoutMs: 5000, bodyTimeoutMs: 300 });
      const t0 = Date.now();
      await assert.rejects(s.getChunk(digest, { background }), isStoreError('timeout', true));
      assert.ok(Date.now() - t0 < 3000);
      proxy.set({});
      await s.close();
    });

    test(`a body cut mid-way (reset) and a truncated body (clean close) are errors, never short data${how}`, async () => {
      for (const settings of [{ cutAfterResponseBytes: 100_000 }, { truncateBodyAfterBytes: 1000 }]) {
        proxy.set(settings);
        const s = viaProxy();
        await assert.rejects(
          s.getChunk(digest, { background }),
          (e: unknown) => e instanceof StoreError && e.retryable && (e.kind === 'integrity' || e.kind === 'io'),
          JSON.stringify(settings),
        );
        await assert.rejects(
          s.getChunk(digest, { range: { offset: 10, length: 200_000 }, background }),
          (e: unknown) => e instanceof StoreError && e.retryable,
          JSON.stringify(settings),
        );
        await s.close();
      }
      proxy.set({});
    });
  }

  test('a background read is aborted at once, and the body thread serves the next one', async () => {
    proxy.set({ stall: true });
    const s = viaProxy({ headersTimeoutMs: 5000 });
    const a = new AbortController();
    const p = s.getChunk(digest, { signal: a.signal, background: true });
    setTimeout(() => a.abort(), 50);
    const t0 = Date.now();
    await assert.rejects(p, isStoreError('aborted', false));
    assert.ok(Date.now() - t0 < 1000, `aborted after ${Date.now() - t0} ms`);
    proxy.set({});
    assert.ok(Buffer.from(await s.getChunk(digest, { background: true })).equals(data));
    await s.close();
  });

  test("a background read's body is taken in off the main thread: it arrives while the main thread is blocked", async () => {
    // 64 MiB: taking it in on the main thread costs tens of ms of CPU after the block (about 2 ms
    // per MiB on the machines this runs on, remote.receive.md); on the body thread it is in
    // shared memory before the block ends, and only the answer's message is left to handle.
    const big = crypto.randomBytes(64 * 1024 * 1024);
    const id = sha(big);
    const s = new HttpStore(prefix);
    try {
      await s.putChunk(id, big);
      await storeBodyThreadLoaded(); // until then background reads are taken in on the main thread
      const read = s.getChunk(id, { background: true });
      await new Promise((resolve) => setTimeout(resolve, 10)); // the GET is on its way
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
      const t0 = performance.now();
      const bytes = await read;
      const afterBlockMs = performance.now() - t0;
      assert.ok(Buffer.from(bytes).equals(big), 'the bytes read are the bytes stored');
      assert.ok(bytes.buffer instanceof SharedArrayBuffer, 'in shared memory');
      assert.ok(afterBlockMs < 40, `the body took ${afterBlockMs.toFixed(1)} ms after the main thread was free again`);
    } finally {
      await s.close();
    }
  });

  test('a flipped byte is caught by the disk cache (manifest id = sha256), not cached, and fetched again', async () => {
    proxy.set({ flipBodyByteAt: 1234 });
    const dir = tempDir('fc-uffd-cache-');
    // As openStore layers it: the cache above the retries, fetching again itself when a check fails.
    const cache = await DiskCacheStore.open(new ResilientStore(viaProxy(), { maxAttempts: 3, backoffMs: 20 }), { dir, maxBytes: 10e6 });
    const before = proxy.requests;
    const got = cache.getManifest(digest);
    while (proxy.requests === before) await new Promise((r) => setTimeout(r, 2));
    proxy.set({});
    assert.ok(Buffer.from(await got).equals(data));
    assert.ok(proxy.requests - before >= 2, 'the damaged body was fetched again');
    assert.equal(cache.hits, 0);
    assert.ok(Buffer.from(await cache.getManifest(digest)).equals(data));
    assert.equal(cache.hits, 1, 'the good copy was cached');
    await cache.close();
  });

  test('the Authorization value is sent, and appears in no error, log text or inspected store', async () => {
    const secret = `Bearer s3cr3t-${crypto.randomBytes(8).toString('hex')}`;
    process.env.FC_UFFD_TEST_HTTP_AUTH = secret;
    proxy.set({});
    const s = viaProxy({ authEnvVar: 'FC_UFFD_TEST_HTTP_AUTH', headersTimeoutMs: 300 });
    assert.ok(Buffer.from(await s.getChunk(digest)).equals(data));
    assert.match(proxy.lastRequestHead, new RegExp(`authorization: ${secret}`, 'i'));
    const texts: string[] = [util.inspect(s, { depth: 5, showHidden: true }), JSON.stringify(s), s.description];
    for (const settings of [
      { cannedStatus: 503 as const },
      { cannedStatus: 404 as const },
      { stall: true },
      { truncateBodyAfterBytes: 10 },
    ]) {
      proxy.set(settings);
      const err = await s.getChunk(digest).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof StoreError, JSON.stringify(settings));
      texts.push(err.message, util.inspect(err, { depth: 10 }), String(err.stack));
    }
    proxy.set({});
    assert.throws(
      () => new HttpStore(`http://user:${secret.slice(7)}@127.0.0.1:1/x`),
      (e: unknown) => {
        texts.push((e as Error).message);
        return isStoreError('config')(e);
      },
    );
    for (const t of texts) assert.ok(!t.includes(secret.slice(7)), `secret leaked into: ${t.slice(0, 200)}`);
    delete process.env.FC_UFFD_TEST_HTTP_AUTH;
    assert.throws(() => viaProxy({ authEnvVar: 'FC_UFFD_TEST_HTTP_AUTH' }), isStoreError('config'));
    await s.close();
  });

  test('concurrent reads of one object share one request (counted at the proxy); other ranges get their own', async () => {
    proxy.set({ latencyMs: 30 });
    const s = new InflightStore(new ResilientStore(viaProxy()));
    const before = proxy.requests;
    const all = await Promise.all(Array.from({ length: 10 }, () => s.getChunk(digest)));
    for (const b of all) assert.ok(Buffer.from(b).equals(data));
    assert.equal(proxy.requests - before, 1);
    const ranges = await Promise.all([0, 0, 4096, 4096, 8192].map((offset) => s.getChunk(digest, { range: { offset, length: 4096 } })));
    assert.ok(Buffer.from(ranges[2]!).equals(data.subarray(4096, 8192)));
    assert.equal(proxy.requests - before, 4);
    proxy.set({});
    await s.close();
  });

  test('a shared read is aborted only when every waiter aborted', async () => {
    proxy.set({ stall: true });
    const s = new InflightStore(viaProxy({ headersTimeoutMs: 5000 }));
    const a = new AbortController();
    const b = new AbortController();
    const pa = s.getChunk(digest, { signal: a.signal });
    const pb = s.getChunk(digest, { signal: b.signal });
    a.abort();
    await assert.rejects(pa, isStoreError('aborted', false));
    assert.equal(s.inflightCount, 1, 'still in flight for the other waiter');
    proxy.set({ stall: false }); // drops the stalled connection: make the shared read fail or finish
    const second = await pb.then(
      () => 'ok',
      (e: unknown) => (e instanceof StoreError ? e.kind : 'other'),
    );
    assert.notEqual(second, 'aborted', 'b did not abort: its read was not aborted');
    proxy.set({ stall: true });
    const c = new AbortController();
    const d = new AbortController();
    const pc = s.getChunk(digest, { signal: c.signal });
    const pd = s.getChunk(digest, { signal: d.signal });
    c.abort();
    d.abort();
    await assert.rejects(pc, isStoreError('aborted'));
    await assert.rejects(pd, isStoreError('aborted'));
    assert.equal(s.inflightCount, 0);
    proxy.set({});
    assert.ok(Buffer.from(await s.getChunk(digest)).equals(data), 'a later read starts afresh');
    await s.close();
  });
});
