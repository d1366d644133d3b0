// S3Store against a real Ceph RGW, faults injected by tools/fault-proxy.ts.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import util from 'node:util';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Store, needsPathStyle } from '../../src/store/s3.js';
import { openStore, parseStoreSpec, describeStoreSpec } from '../../src/store/open.js';
import { ResilientStore } from '../../src/store/resilient.js';
import { StoreError } from '../../src/store/types.js';
import { FaultProxy } from '../../tools/fault-proxy.js';
import { CEPH_TEST_KEYS, s3Server, type RunningServer } from '../helpers/servers.js';
import { assertRangedReads, assertSharedBodies } from '../helpers/ranged-reads.js';

const server = await s3Server();
const skip = typeof server === 'string' ? server : false;
if (skip) console.log(`# skipping S3Store tests: ${skip}`);

function sha(b: Uint8Array): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}
function isStoreError(kind: StoreError['kind'], retryable?: boolean) {
  return (e: unknown): boolean => e instanceof StoreError && e.kind === kind && (retryable === undefined || e.retryable === retryable);
}

describe('openStore specs (no server)', () => {
  test('parses directories, s3:// and http(s):// specs; refuses unknown schemes and a missing bucket', () => {
    assert.deepEqual(parseStoreSpec('s3://bkt/a/b/'), { kind: 's3', bucket: 'bkt', prefix: 'a/b' });
    assert.deepEqual(parseStoreSpec('s3://bkt'), { kind: 's3', bucket: 'bkt', prefix: '' });
    assert.equal(parseStoreSpec('https://h:1/p').kind, 'http');
    assert.equal(parseStoreSpec('some/dir').kind, 'dir');
    assert.throws(
      () => parseStoreSpec('s3:///prefix'),
      (e: unknown) => isStoreError('config')(e) && /no bucket/.test((e as Error).message),
    );
    assert.throws(
      () => parseStoreSpec('ftp://h/x'),
      (e: unknown) => isStoreError('config')(e) && /unsupported store scheme ftp/.test((e as Error).message),
    );
    assert.deepEqual(parseStoreSpec('file:///tmp/a%20b'), { kind: 'dir', path: '/tmp/a b' });
    // The fuzzer's find: file://[ reached new URL() and left as a TypeError; file:// named the root directory.
    for (const spec of ['file://[', 'file://', 'file:///', 'file://otherhost/x', 'file:///%E0%A4%A'])
      assert.throws(
        () => parseStoreSpec(spec),
        (e: unknown) => isStoreError('config')(e) && /not a store directory/.test((e as Error).message),
        spec,
      );
    assert.equal(describeStoreSpec('https://u:pw@h/p?X-Amz-Signature=abc'), 'https://h/p');
    assert.equal(needsPathStyle('http://127.0.0.1:7480'), true);
    assert.equal(needsPathStyle('http://[::1]:7480'), true);
    assert.equal(needsPathStyle('http://localhost:7480'), true);
    assert.equal(needsPathStyle('https://s3.eu-west-1.amazonaws.com'), false);
  });
});

describe('S3Store against Ceph RGW', { skip }, () => {
  const srv = server as RunningServer;
  const bucket = `fc-uffd-${crypto.randomBytes(4).toString('hex')}`;
  const data = crypto.randomBytes(300_000);
  const digest = sha(data);
  let proxy: FaultProxy;
  before(async () => {
    process.env.AWS_ACCESS_KEY_ID ??= CEPH_TEST_KEYS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY ??= CEPH_TEST_KEYS.secretAccessKey;
    const admin = new S3Client({ endpoint: srv.url, region: 'us-east-1', forcePathStyle: true });
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    admin.destroy();
    const s = new S3Store({ bucket, prefix: 'p', endpoint: srv.url });
    await s.putChunk(digest, data);
    await s.close();
    const u = new URL(srv.url);
    proxy = await FaultProxy.start({ host: u.hostname, port: Number(u.port) });
  });
  after(async () => {
    await proxy.close();
    srv.stop();
  });
  const viaProxy = (o: { headersTimeoutMs?: number; bodyTimeoutMs?: number } = {}) =>
    new S3Store({ bucket, prefix: 'p', endpoint: proxy.url, ...o });

  test('put, get, has; a second put of an existing object (412 from If-None-Match) succeeds', async () => {
    const s = new S3Store({ bucket, prefix: 'q/r', endpoint: srv.url });
    const d = crypto.randomBytes(5000);
    const id = sha(d);
    assert.equal(await s.hasChunk(id), false);
    await s.putChunk(id, d);
    await s.putChunk(id, d);
    assert.equal(await s.hasChunk(id), true);
    assert.ok(Buffer.from(await s.getChunk(id)).equals(d));
    await s.putManifest(id, d);
    assert.equal(await s.hasManifest(id), true);
    assert.ok(Buffer.from(await s.getManifest(id)).equals(d));
    await s.close();
  });

  test('whole and ranged reads arrive in shared memory (codec threads read them without a copy)', async () => {
    const s = new S3Store({ bucket, prefix: 'p', endpoint: srv.url });
    await assertSharedBodies(s, digest, data);
    await s.close();
  });

  test('ranged reads: middle, ends of the object, past the end (cut short), at the end (empty)', async () => {
    const s = new S3Store({ bucket, prefix: 'p', endpoint: srv.url });
    await assertRangedReads(s, digest, data);
    await s.close();
  });

  test('a missing object is not-found; openStore on a missing bucket fails with a clear config error', async () => {
    const s = new S3Store({ bucket, prefix: 'p', endpoint: srv.url });
    await assert.rejects(s.getChunk('f'.repeat(64)), isStoreError('not-found', false));
    assert.equal(await s.hasManifest('f'.repeat(64)), false);
    await s.close();
    await assert.rejects(
      openStore('s3://no-such-bucket-fc-uffd/x', { s3: { endpoint: srv.url } }),
      (e: unknown) => isStoreError('config', false)(e) && /bucket no-such-bucket-fc-uffd does not exist/.test((e as Error).message),
    );
    const opened = await openStore(`s3://${bucket}/p`, { s3: { endpoint: srv.url } });
    assert.ok(Buffer.from(await opened.getChunk(digest)).equals(data));
    await opened.close();
  });

  /** Runs `fn` with these AWS_* variables set (undefined: unset), then puts the old values back. */
  async function withEnv(vars: Record<string, string | undefined>, fn: () => Promise<void>): Promise<void> {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    const apply = (v: Record<string, string | undefined>): void => {
      for (const [k, val] of Object.entries(v))
        if (val === undefined) Reflect.deleteProperty(process.env, k);
        else process.env[k] = val;
    };
    apply(vars);
    try {
      await fn();
    } finally {
      apply(saved);
    }
  }

  test('short ids: manifests listed by id prefix, under this prefix only, through every layer openStore adds', async () => {
    const ids = ['abc123' + '0'.repeat(58), 'abc123' + '1'.repeat(58), 'abd' + '2'.repeat(61)];
    const s = new S3Store({ bucket, prefix: 'short', endpoint: srv.url });
    for (const id of ids) await s.putManifest(id, Buffer.from('{}'));
    // Not manifests of this store: one under another prefix that starts alike, and a key that is not <id>.json.
    const other = new S3Store({ bucket, prefix: 'short2', endpoint: srv.url });
    await other.putManifest('abc123' + '3'.repeat(58), Buffer.from('{}'));
    await other.close();
    const admin = new S3Client({ endpoint: srv.url, region: 'us-east-1', forcePathStyle: true });
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: `short/manifests/abc123${'4'.repeat(58)}.json.partial`, Body: '{}' }));
    admin.destroy();
    assert.deepEqual((await s.manifestIdsWithPrefix('abc123')).sort(), ids.slice(0, 2));
    assert.deepEqual(await s.manifestIdsWithPrefix('abd'), [ids[2]]);
    assert.deepEqual(await s.manifestIdsWithPrefix('abe'), []);
    assert.deepEqual((await s.manifestIdsWithPrefix('')).sort(), ids);
    await assert.rejects(s.manifestIdsWithPrefix('../x'), isStoreError('invalid-name', false));
    await s.close();
    const opened = await openStore(`s3://${bucket}/short`, { s3: { endpoint: srv.url } });
    assert.deepEqual(await opened.manifestIdsWithPrefix!('abd'), [ids[2]]);
    await opened.close();
    await withEnv({ AWS_SECRET_ACCESS_KEY: 'wrong-secret' }, async () => {
      const denied = new S3Store({ bucket, prefix: 'short', endpoint: srv.url });
      await assert.rejects(
        denied.manifestIdsWithPrefix('abc'),
        (e: unknown) =>
          isStoreError('http-status', false)(e) &&
          /ListObjectsV2 .*access denied.*give the full 64-digit manifest id/.test((e as Error).message),
      );
      await denied.close();
    });
  });

  test("wrong credentials: a non-retryable access error naming S3's code, without the secret or session token", async () => {
    const secret = `wrong-${crypto.randomBytes(8).toString('hex')}`;
    const token = `token-${crypto.randomBytes(8).toString('hex')}`;
    await withEnv({ AWS_SECRET_ACCESS_KEY: secret, AWS_SESSION_TOKEN: token }, async () => {
      const s = new S3Store({ bucket, prefix: 'p', endpoint: srv.url });
      for (const range of [undefined, { offset: 10, length: 100 }]) {
        const err = await s.getChunk(digest, range ? { range } : {}).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(isStoreError('http-status', false)(err), String(err));
        assert.match((err as Error).message, /access denied \(SignatureDoesNotMatch\).*AWS_SECRET_ACCESS_KEY/);
        const everything = `${(err as Error).message}\n${String((err as Error).stack)}\n${util.inspect(err, { depth: 10 })}`;
        assert.ok(!everything.includes(secret) && !everything.includes(token), 'a secret in the error');
      }
      // HeadBucket (the SDK; its answer has no body to name the error): the status, not "Unknown".
      const head = await s.checkBucket().then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(isStoreError('http-status', false)(head), String(head));
      assert.match((head as Error).message, /^HeadBucket s3:\/\/\S+: access denied \(403\): check the AWS credentials/);
      assert.ok(!String(head).includes(secret) && !String(head).includes(token), 'a secret in the error');
      await s.close();
    });
  });

  test('a session token (AWS_SESSION_TOKEN) goes out as a signed x-amz-security-token header', async () => {
    const token = `token-${crypto.randomBytes(8).toString('hex')}`;
    await withEnv({ AWS_SESSION_TOKEN: token }, async () => {
      const s = viaProxy();
      // RGW without STS ignores the token but checks the signature, which covers the header.
      assert.ok(Buffer.from(await s.getChunk(digest, { range: { offset: 5, length: 50 } })).equals(data.subarray(5, 55)));
      const head = proxy.lastRequestHead.toLowerCase();
      assert.ok(head.startsWith('get /'), head.slice(0, 40));
      assert.ok(head.includes(`\r\nx-amz-security-token: ${token}\r\n`), 'the token header was not sent');
      assert.match(
        head,
        /\r\nauthorization: aws4-hmac-sha256 credential=testkey\/\d{8}\/us-east-1\/s3\/aws4_request, signedheaders=[^,]*x-amz-security-token/,
      );
      assert.match(head, /\r\nx-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\r\n/);
      await s.close();
    });
    const s = viaProxy();
    await s.getChunk(digest, { range: { offset: 5, length: 50 } });
    assert.ok(!proxy.lastRequestHead.toLowerCase().includes('x-amz-security-token'), 'a token header without AWS_SESSION_TOKEN');
    await s.close();
  });

  test('a GET from a missing bucket is a config error; a 404 without an S3 body is not-found', async () => {
    const missing = new S3Store({ bucket: 'no-such-bucket-fc-uffd', endpoint: srv.url });
    await assert.rejects(
      missing.getChunk(digest),
      (e: unknown) => isStoreError('config', false)(e) && /bucket no-such-bucket-fc-uffd does not exist/.test((e as Error).message),
    );
    await missing.close();
    proxy.set({ cannedStatus: 404 });
    const s = viaProxy();
    await assert.rejects(s.getChunk(digest, { range: { offset: 0, length: 10 } }), isStoreError('not-found', false));
    proxy.set({});
    await s.close();
  });

  test('a read aborted by its signal while the server stalls is aborted, promptly', async () => {
    proxy.set({ stall: true });
    const s = viaProxy();
    const t0 = Date.now();
    await assert.rejects(s.getChunk(digest, { signal: AbortSignal.timeout(200) }), isStoreError('aborted', false));
    assert.ok(Date.now() - t0 < 5000);
    proxy.set({});
    await s.close();
  });

  test('503 and 500 are retried by ResilientStore: exactly maxAttempts requests, then a retryable error', async () => {
    for (const status of [503, 500] as const) {
      proxy.set({ cannedStatus: status });
      const s = new ResilientStore(viaProxy(), { maxAttempts: 3, backoffMs: 5 });
      const before = proxy.requests;
      await assert.rejects(s.getChunk(digest), isStoreError('http-status', true));
      assert.equal(proxy.requests - before, 3);
      await s.close();
    }
    proxy.set({});
    const ok = viaProxy();
    assert.ok(Buffer.from(await ok.getChunk(digest)).equals(data), 'through the proxy when it forwards');
    await ok.close();
  });

  test('a stalled server times out (retryable timeout)', async () => {
    proxy.set({ stall: true });
    const s = viaProxy({ headersTimeoutMs: 500 });
    const t0 = Date.now();
    await assert.rejects(s.getChunk(digest), isStoreError('timeout', true));
    assert.ok(Date.now() - t0 < 5000);
    proxy.set({});
    await s.close();
  });

  test('a truncated or cut body is an error, never short data', async () => {
    for (const settings of [{ truncateBodyAfterBytes: 1000 }, { cutAfterResponseBytes: 100_000 }]) {
      proxy.set(settings);
      const s = viaProxy();
      await assert.rejects(s.getChunk(digest), (e: unknown) => e instanceof StoreError && e.retryable, JSON.stringify(settings));
      // A connection the server dropped is said as such: the SDK calls a reset a TimeoutError.
      if ('cutAfterResponseBytes' in settings)
        await assert.rejects(
          s.getChunk(digest),
          (e: unknown) => isStoreError('io', true)(e) && !/timed out/.test((e as Error).message),
          'a cut is not a timeout',
        );
      await s.close();
    }
    proxy.set({});
  });
});
