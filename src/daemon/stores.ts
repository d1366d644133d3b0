// Chunk stores as the daemon opens them: one client per store, shared by every restore naming it.
// The one place a `store` string becomes a ChunkStore, so remote stores (http://, s3://) slot in here.
import fs from 'node:fs';
import path from 'node:path';
import { FcUffdError } from '../errors.js';
import { DirStore } from '../store/dir.js';
import { ResilientStore } from '../store/resilient.js';
import type { ChunkStore } from '../store/types.js';

export class StoreRegistry {
  private readonly stores = new Map<string, ChunkStore>();

  /** The store named by `spec` (a directory for now), opened once per process. */
  open(spec: string): ChunkStore {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec))
      throw new FcUffdError('CONFIG', `store ${spec}: only directory stores are supported by this version (remote stores are not yet)`);
    let dir: string;
    try {
      dir = fs.realpathSync(path.resolve(spec));
    } catch {
      throw new FcUffdError('SNAPSHOT_STORE', `store directory ${spec} does not exist`);
    }
    if (!fs.statSync(dir).isDirectory()) throw new FcUffdError('SNAPSHOT_STORE', `store ${spec} is not a directory`);
    let store = this.stores.get(dir);
    if (!store) {
      store = new ResilientStore(DirStore.open(dir));
      this.stores.set(dir, store);
    }
    return store;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.stores.values()].map((s) => s.close()));
    this.stores.clear();
  }
}
