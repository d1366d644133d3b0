// Opening a store for snapshots: openStore plus what only the snapshot layer knows, the checks
// that a chunk blob is what its name says (the name is the sha256 of the decoded chunk, so the
// disk cache under a remote store cannot check it without the codec).
import { openStore, type OpenStoreOptions } from '../store/open.js';
import type { ChunkStore } from '../store/types.js';
import { parseBlobHeader } from './chunk-format.js';
import { ChunkCodecPool } from './chunk-pool.js';

/**
 * The disk cache's check of a blob fetched on a miss: its structure only (header, bitmap, and for a
 * version 2 blob that its frame table adds up to its length), microseconds on the main thread. A
 * truncated or padded body, an error page, another object: refused, fetched again, never cached.
 *
 * Decision: no decode here. It cost a whole-chunk decode and hash on the main thread for every
 * miss, and it is redundant: every consumer of a chunk decodes it and checks it (a version 2 frame
 * against the manifest's frame hash, a whole chunk against its digest) before a byte is served,
 * and reads it once more when the check fails. That repeat makes the cache check the entry's
 * content with verifyChunkContent (below, on a codec thread) and drop it if it fails, so a blob
 * damaged in a way its structure does not show is served at most once per process and then
 * fetched again from the remote store.
 */
export function verifyChunkBlob(_digest: string, blob: Uint8Array): void {
  parseBlobHeader(blob);
}

let contentPool: ChunkCodecPool | undefined;

/**
 * Decodes a cached blob and checks its content against `digest` on a codec thread (throws a
 * ChunkFormatError when it is damaged). One thread, started on first use: it runs only for a read
 * repeated after a consumer's failed check, so it is idle (and does not keep the process alive)
 * almost always.
 */
export async function verifyChunkContent(digest: string, blob: Uint8Array): Promise<void> {
  const { chunkLength } = parseBlobHeader(blob);
  contentPool ??= new ChunkCodecPool(1);
  // A copy goes to the thread: the cache still serves from `blob`.
  await contentPool.decode(new Uint8Array(blob), digest, new SharedArrayBuffer(chunkLength), chunkLength);
}

/** openStore with the chunk checks in the disk cache tier (when there is one). */
export function openSnapshotStore(spec: string, options: OpenStoreOptions = {}): Promise<ChunkStore> {
  return openStore(
    spec,
    options.cache ? { ...options, cache: { verifyChunk: verifyChunkBlob, verifyChunkContent, ...options.cache } } : options,
  );
}
