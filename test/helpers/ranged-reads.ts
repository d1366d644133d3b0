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
