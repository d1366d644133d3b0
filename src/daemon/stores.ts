// Chunk stores as the daemon opens them: one client per store, shared by every restore naming it.
// The one place a restore's `store` string becomes a ChunkStore: a directory, s3://BUCKET/PREFIX or
// http(s)://HOST/PREFIX, with the daemon's remote-store options (endpoint, auth, disk cache, retries).
import fs from 'node:fs';
import path from 'node:path';
import { FcUffdError } from '../errors.js';
import { describeStoreSpec, parseStoreSpec, type OpenStoreOptions } from '../store/open.js';
import { openSnapshotStore } from '../snapshot/store-open.js';
import type { ChunkStore } from '../store/types.js';

export class StoreRegistry {
  /** Each store by key: its open, and once that succeeded the store itself (for metrics, read synchronously). */
  private readonly stores = new Map<string, { opening: Promise<ChunkStore>; store: ChunkStore | undefined }>();

  /** `options`: for remote stores (a directory store takes only the retries). */
  constructor(private readonly options: OpenStoreOptions = {}) {}

  /** The store named by `spec`, opened once per process (a failed open is not kept: the next restore tries again). */
  open(spec: string): Promise<ChunkStore> {
    const parsed = parseStoreSpec(spec);
    let key: string;
    let options: OpenStoreOptions;
    if (parsed.kind === 'dir') {
      let dir: string;
      try {
        dir = fs.realpathSync(path.resolve(spec));
      } catch {
        throw new FcUffdError('SNAPSHOT_STORE', `store directory ${spec} does not exist`);
      }
      if (!fs.statSync(dir).isDirectory()) throw new FcUffdError('SNAPSHOT_STORE', `store ${spec} is not a directory`);
      key = dir;
      options = { ...(this.options.resilience ? { resilience: this.options.resilience } : {}), createDir: false };
      spec = dir;
    } else {
      key = describeStoreSpec(spec);
      options = this.options;
    }
    let entry = this.stores.get(key);
    if (!entry) {
      const opened: { opening: Promise<ChunkStore>; store: ChunkStore | undefined } = {
        opening: openSnapshotStore(spec, options),
        store: undefined,
      };
      entry = opened;
      this.stores.set(key, opened);
      opened.opening.then(
        (s) => (opened.store = s),
        () => {
          if (this.stores.get(key) === opened) this.stores.delete(key);
        },
      );
    }
    return entry.opening;
  }

  /** Every store opened so far (and not closed). */
  openStores(): ChunkStore[] {
    return [...this.stores.values()].flatMap((e) => (e.store ? [e.store] : []));
  }

  async closeAll(): Promise<void> {
    const opening = [...this.stores.values()].map((e) => e.opening);
    this.stores.clear();
    // A store that failed to open has nothing to close.
    await Promise.all(
      opening.map((p) =>
        p.then(
          (s) => s.close(),
          () => undefined,
        ),
      ),
    );
  }
}
