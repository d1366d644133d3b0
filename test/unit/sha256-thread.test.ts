import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { sha256OffThread } from '../../src/store/sha256-thread.js';

const sha = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

test('a view of shared memory is hashed in place: the same bytes come back, no copy', async () => {
  const shared = new Uint8Array(new SharedArrayBuffer(1 << 20));
  crypto.randomFillSync(shared);
  const view = shared.subarray(4096, 4096 + 512 * 1024);
  const { digest, bytes } = await sha256OffThread(view);
  assert.equal(digest.toString('hex'), sha(view));
  assert.equal(bytes, view);
});

test('an ArrayBuffer travels to the thread and back; a view of part of one is copied first', async () => {
  const whole = crypto.randomBytes(256 * 1024);
  const own = new Uint8Array(whole.length);
  own.set(whole);
  const r1 = await sha256OffThread(own);
  assert.equal(r1.digest.toString('hex'), sha(whole));
  assert.ok(Buffer.from(r1.bytes).equals(whole));
  assert.equal(own.byteLength, 0, 'the buffer was moved to the thread');
  const part = whole.subarray(100, 200_100);
  const r2 = await sha256OffThread(part);
  assert.equal(r2.digest.toString('hex'), sha(part));
  assert.ok(Buffer.from(r2.bytes).equals(part));
  assert.equal(part.length, 200_000, 'the caller’s view is left alone');
});
