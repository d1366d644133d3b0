import { setTimeout as sleep } from 'node:timers/promises';
import { listManifestIds, StoreError, type ChunkStore, type GetOptions } from './types.js';

export interface ResilienceOptions {
  /** Operations in flight at once against the inner store (default 8). */
  maxConcurrency?: number;
  /** Tries of an operation that failed with a retryable StoreError (default 3). */
  maxAttempts?: number;
  /** First retry delay; doubles each time, with jitter (default 20 ms). */
  backoffMs?: number;
}

/** A counting semaphore: at most `limit` holders at once, FIFO. */
export class Limiter {
  private active = 0;
  private readonly queue: Array<() => void> = [];

  constructor(readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    // A releasing holder hands its slot straight to the first waiter, so the count never depends on
    // the order in which the woken waiter and a newcomer get to run.
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/**
 * Wraps any store with a concurrency limit and retries of transient failures (what a remote store
 * needs; harmless for a local one). Non-retryable failures, such as not-found, fail at once.
 */
export class ResilientStore implements ChunkStore {
  private readonly limiter: Limiter;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;

  constructor(
    readonly inner: ChunkStore,
    options: ResilienceOptions = {},
  ) {
    this.limiter = new Limiter(options.maxConcurrency ?? 8);
    this.maxAttempts = options.maxAttempts ?? 3;
    this.backoffMs = options.backoffMs ?? 20;
  }

  get description(): string {
    return this.inner.description;
  }

  private async attempt<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await this.limiter.run(fn);
      } catch (err) {
        if (!(err instanceof StoreError) || !err.retryable || n >= this.maxAttempts) throw err;
        await sleep(this.backoffMs * 2 ** (n - 1) * (0.5 + Math.random()), undefined, signal ? { signal } : {});
      }
    }
  }

  hasChunk(digest: string, options?: GetOptions): Promise<boolean> {
    return this.attempt(() => this.inner.hasChunk(digest, options), options?.signal);
  }
  getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
    return this.attempt(() => this.inner.getChunk(digest, options), options?.signal);
  }
  putChunk(digest: string, data: Uint8Array): Promise<void> {
    return this.attempt(() => this.inner.putChunk(digest, data));
  }
  hasManifest(id: string): Promise<boolean> {
    return this.attempt(() => this.inner.hasManifest(id));
  }
  getManifest(id: string, options?: GetOptions): Promise<Uint8Array> {
    return this.attempt(() => this.inner.getManifest(id, options), options?.signal);
  }
  putManifest(id: string, data: Uint8Array): Promise<void> {
    return this.attempt(() => this.inner.putManifest(id, data));
  }
  manifestIdsWithPrefix(prefix: string): Promise<string[]> {
    return this.attempt(() => listManifestIds(this.inner, prefix));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
