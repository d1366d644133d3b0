// The ranged reads every remote store must answer exactly: a middle range, the first and last
// byte, a range past the end (cut short), the whole object, and a range at the end (empty).
import assert from 'node:assert/strict';
import type { ChunkStore } from '../../src/store/types.js';

export async function assertRangedReads(store: ChunkStore, digest: string, data: Buffer): Promise<void> {
  const n = data.length;
  for (const [offset, length] of [
    [1000, 5000],
    [0, 1],
    [n - 1, 1],
    [n - 10, 100],
    [0, n],
  ] as const)
    assert.ok(
      Buffer.from(await store.getChunk(digest, { range: { offset, length } })).equals(data.subarray(offset, offset + length)),
      `range ${offset}+${length}`,
    );
  assert.equal((await store.getChunk(digest, { range: { offset: n, length: 10 } })).length, 0);
}

/**
 * Whole and ranged reads arrive in shared memory: the codec threads read a blob's frames from it
 * without a copy on the main thread (see SharedBody).
 */
export async function assertSharedBodies(store: ChunkStore, digest: string, data: Buffer): Promise<void> {
  for (const range of [undefined, { offset: 1000, length: 5000 }]) {
    const bytes = await store.getChunk(digest, range ? { range } : {});
    assert.ok(bytes.buffer instanceof SharedArrayBuffer, `${range ? 'ranged' : 'whole'} read not in shared memory`);
    assert.ok(Buffer.from(bytes).equals(range ? data.subarray(range.offset, range.offset + range.length) : data));
  }
}
