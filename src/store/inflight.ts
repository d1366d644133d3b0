import { listManifestIds, StoreError, type ChunkStore, type GetOptions } from './types.js';

interface Flight {
  readonly promise: Promise<Uint8Array>;
  readonly controller: AbortController;
  waiters: number;
}

/**
 * Concurrent reads of the same object (same name, same range) share one request to the inner
 * store: VMs restored from one snapshot fault the same chunks at the same moments. The shared
 * request is aborted only when every caller waiting for it has aborted (a VM that ends aborts its
 * own waits, never another VM's); a caller that comes after that starts a fresh request. Callers
 * get the same bytes and must not modify them. Concurrency limits and retries are the inner
 * store's (a ResilientStore), so a shared read is retried once for all its waiters.
 */
export class InflightStore implements ChunkStore {
  private readonly flights = new Map<string, Flight>();

  constructor(readonly inner: ChunkStore) {}

  get description(): string {
    return this.inner.description;
  }

  /** Reads in flight now (for tests and metrics). */
  get inflightCount(): number {
    return this.flights.size;
  }

  getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
    return this.share(`chunk:${digest}`, options, (o) => this.inner.getChunk(digest, o));
  }
  getManifest(id: string, options?: GetOptions): Promise<Uint8Array> {
    return this.share(`manifest:${id}`, options, (o) => this.inner.getManifest(id, o));
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
  putManifest(id: string, data: Uint8Array): Promise<void> {
    return this.inner.putManifest(id, data);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  manifestIdsWithPrefix(prefix: string): Promise<string[]> {
    return listManifestIds(this.inner, prefix);
  }

  private share(name: string, options: GetOptions | undefined, start: (o: GetOptions) => Promise<Uint8Array>): Promise<Uint8Array> {
    const signal = options?.signal;
    const aborted = (): StoreError => new StoreError('aborted', `read of ${name} aborted`, false, signal?.reason);
    if (signal?.aborted) return Promise.reject(aborted());
    const range = options?.range;
    const key = range ? `${name}@${range.offset}+${range.length}` : name;
    let flight = this.flights.get(key);
    if (!flight) {
      const controller = new AbortController();
      // The first caller's `background` holds for all: a fault's read that joins a background one
      // (the same whole chunk) may find it sent after other faults' requests, never lost.
      const promise = start({
        ...(range ? { range } : {}),
        ...(options?.background ? { background: true } : {}),
        signal: controller.signal,
      });
      const created: Flight = { promise, controller, waiters: 0 };
      flight = created;
      this.flights.set(key, created);
      const forget = (): void => {
        if (this.flights.get(key) === created) this.flights.delete(key);
      };
      // Every waiter handles the outcome; this keeps an abandoned flight's rejection handled.
      promise.then(forget, forget);
    }
    const f = flight;
    f.waiters++;
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        if (--f.waiters === 0) {
          if (this.flights.get(key) === f) this.flights.delete(key);
          f.controller.abort(signal?.reason);
        }
        reject(aborted());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      f.promise.then(
        (bytes) => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          resolve(bytes);
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }
}
