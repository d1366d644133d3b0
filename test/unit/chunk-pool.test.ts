// The codec pool's scheduling of a whole chunk's frames (background work) against a fault's frame.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, test } from 'node:test';
import { ChunkCodecPool } from '../../src/snapshot/chunk-pool.js';
import { analyzeChunk, encodeChunkBlobFramed, sha256Hex, type FrameJob } from '../../src/snapshot/chunk-format.js';
import { frameOffsets } from '../../src/snapshot/manifest.js';

const FRAME = 256 * 1024;
const pool = new ChunkCodecPool(2);
after(() => pool.close());

test('a whole chunk decodes in the background on one of two threads, a few frames queued ahead; the other is free for a fault, which does not wait for them', async () => {
  const chunk = crypto.randomBytes(4 * 1024 * 1024);
  const a = analyzeChunk(chunk);
  const f = encodeChunkBlobFramed(chunk, a, FRAME);
  const offsets = frameOffsets({ digest: sha256Hex(chunk), storedBytes: f.blob.length, ...f }, chunk.length, FRAME);
  const job = (k: number, srcOffset: number): FrameJob => ({
    frame: k,
    srcOffset,
    srcLength: offsets[k + 1]! - offsets[k]!,
    sha256: f.frameSha256[k]!,
  });
  const out = new SharedArrayBuffer(chunk.length);
  const target = { out, length: chunk.length, zeroBitmap: a.zeroBitmap, frameBytes: FRAME };
  await pool.warm();
  // Both threads decode a frame first (two at once go to both): a thread's first decode runs cold
  // code several times slower, and the fault must not be the only first one.
  await Promise.all([0, 1].map(() => pool.decodeFrames(f.blob.slice(offsets[0], offsets[1]), target, [job(0, 0)])));
  const done: number[] = [];
  const loads: Array<Array<{ tasks: number; background: number }>> = [];
  const background = pool.decodeFramesInBackground(
    f.blob,
    target,
    Array.from({ length: 15 }, (_, k) => job(k, offsets[k]!)),
    (k) => {
      done.push(k);
      loads.push(pool.load);
    },
  );
  // Four frames queued on one thread: it goes from one to the next without waiting for the main
  // thread to post it. The other thread is kept idle for faults.
  assert.deepEqual(pool.load, [
    { tasks: 4, background: 4 },
    { tasks: 0, background: 0 },
  ]);
  const fault = pool.decodeFrames(f.blob.slice(offsets[15], offsets[16]), target, [job(15, 0)]);
  // The fault's frame went at once to the thread with no background frame, so it waits behind none
  // of them (asserted by where it went, not by timing: a loaded machine may run either thread late).
  assert.deepEqual(pool.load, [
    { tasks: 4, background: 4 },
    { tasks: 1, background: 0 },
  ]);
  await fault;
  await background;
  for (const load of loads) {
    assert.ok(
      load[0]!.background <= 4 && load[1]!.background === 0,
      `background work stays on one thread, four frames at most: ${JSON.stringify(load)}`,
    );
  }
  assert.deepEqual(
    done,
    Array.from({ length: 15 }, (_, k) => k),
    'each frame reported as it was verified, in order',
  );
  assert.ok(Buffer.from(out).equals(chunk));
});
