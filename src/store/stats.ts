// What an opened store did, read from the layers openStore stacks (open.ts): for metrics.
import { DiskCacheStore } from './disk-cache.js';
import { InflightStore } from './inflight.js';
import { ResilientStore, type StoreRequestCounts } from './resilient.js';
import type { ChunkStore } from './types.js';

export interface StoreCounts {
  /** The store as logs name it (no credentials). */
  description: string;
  /** What was asked of the store under the retry layer; absent for a store without one. */
  requests: StoreRequestCounts | undefined;
  /** The local disk tier's reads and evictions; absent without `--cache-dir`. */
  diskCache: { hits: number; misses: number; evictedEntries: number; corruptEntries: number } | undefined;
}

/** The counters of `store`'s layers, found by walking from the outermost layer inwards. */
export function storeCounts(store: ChunkStore): StoreCounts {
  const out: StoreCounts = { description: store.description, requests: undefined, diskCache: undefined };
  for (let layer: ChunkStore | undefined = store; layer;) {
    if (layer instanceof ResilientStore) {
      out.requests = layer.counts;
      layer = layer.inner;
    } else if (layer instanceof DiskCacheStore) {
      out.diskCache = {
        hits: layer.hits,
        misses: layer.misses,
        evictedEntries: layer.evictedEntries,
        corruptEntries: layer.corruptEntries,
      };
      layer = layer.inner;
    } else if (layer instanceof InflightStore) layer = layer.inner;
    else layer = undefined;
  }
  return out;
}
