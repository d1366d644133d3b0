// A store that forwards every call to `inner`: tests that inject delays, gates or damage extend it
// and override only the calls they change.
import type { ChunkStore, GetOptions } from '../../src/store/types.js';

export class WrappedStore implements ChunkStore {
  constructor(readonly inner: ChunkStore) {}
  get description(): string {
    return this.inner.description;
  }
  getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
    return this.inner.getChunk(digest, options);
  }
  hasChunk(digest: string, options?: GetOptions): Promise<boolean> {
    return this.inner.hasChunk(digest, options);
  }
  putChunk(digest: string, data: Uint8Array): Promise<void> {
    return this.inner.putChunk(digest, data);
  }
  hasManifest(id: string): Promise<boolean> {
    return this.inner.hasManifest(id);
  }
  getManifest(id: string, options?: GetOptions): Promise<Uint8Array> {
    return this.inner.getManifest(id, options);
  }
  putManifest(id: string, data: Uint8Array): Promise<void> {
    return this.inner.putManifest(id, data);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
