// Opening a store for snapshots: openStore plus what only the snapshot layer knows, the check
// that a chunk blob is what its name says (the name is the sha256 of the decoded chunk, so the
// disk cache under a remote store cannot check it without the codec).
import { openStore, type OpenStoreOptions } from '../store/open.js';
import type { ChunkStore } from '../store/types.js';
import { decodeChunkBlob, parseBlobHeader } from './chunk-format.js';

/**
 * Decodes and hashes a fetched blob; throws (a ChunkFormatError) when it is damaged or not the
 * chunk it was asked for. Costs a decode of each chunk fetched from the remote store (once, before
 * it is cached on disk): a torn or flipped body is then fetched again instead of kept.
 */
export function verifyChunkBlob(digest: string, blob: Uint8Array): void {
  decodeChunkBlob(blob, Buffer.allocUnsafe(parseBlobHeader(blob).chunkLength), digest);
}

/** openStore with the chunk check in the disk cache tier (when there is one). */
export function openSnapshotStore(spec: string, options: OpenStoreOptions = {}): Promise<ChunkStore> {
  return openStore(spec, options.cache ? { ...options, cache: { verifyChunk: verifyChunkBlob, ...options.cache } } : options);
}
