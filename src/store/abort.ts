// Cancellation for reads shared by several waiters (VMs restored from one snapshot fault the same
// chunks): a waiter that leaves stops waiting at once, the read itself goes on while another
// waiter remains.
import { StoreError, type ChunkStore, type GetOptions } from './types.js';

/**
 * A signal for one piece of shared work: aborted once every waiter that joined has left (its own
 * signal aborted), never while one remains. A waiter without a signal never leaves.
 */
export class SharedSignal {
  private readonly controller = new AbortController();
  private waiters = 0;
  private permanent = false;

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  join(signal?: AbortSignal): void {
    if (signal === undefined) {
      this.permanent = true;
      return;
    }
    if (signal.aborted) return;
    this.waiters++;
    signal.addEventListener(
      'abort',
      () => {
        if (--this.waiters === 0 && !this.permanent) this.controller.abort(signal.reason);
      },
      { once: true },
    );
  }
}

/** `promise`, or a rejection with an 'aborted' StoreError as soon as `signal` fires (the work itself is not stopped). */
export function waitUnlessAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return promise;
  const aborted = (): StoreError => new StoreError('aborted', `wait for ${what} aborted`, false, signal.reason);
  if (signal.aborted) return Promise.reject(aborted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(aborted());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** `store` with `signal` on every read that carries none of its own (for callers that take a store, not a signal). */
export function withSignal(store: ChunkStore, signal: AbortSignal): ChunkStore {
  const o = (options?: GetOptions): GetOptions => ({ ...options, signal: options?.signal ?? signal });
  return {
    description: store.description,
    hasChunk: (d, options) => store.hasChunk(d, o(options)),
    getChunk: (d, options) => store.getChunk(d, o(options)),
    putChunk: (d, data) => store.putChunk(d, data),
    hasManifest: (id) => store.hasManifest(id),
    getManifest: (id, options) => store.getManifest(id, o(options)),
    putManifest: (id, data) => store.putManifest(id, data),
    close: () => store.close(),
  };
}
