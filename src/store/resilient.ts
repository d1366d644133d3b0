import { setTimeout as sleep } from 'node:timers/promises';
import { listManifestIds, StoreError, type ChunkStore, type GetOptions, type StoreErrorKind } from './types.js';

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

export type StoreOperation = 'get' | 'head' | 'put' | 'list';

/** What a ResilientStore asked of the store under it since it was opened, and what came of it (for metrics). */
export interface StoreRequestCounts {
  /** Tries sent to the store, by operation: a retried operation counts each try. */
  tries: Record<StoreOperation, number>;
  /** Tries that failed and were tried again. */
  retries: number;
  /**
   * Operations that failed in the end (at once, or with their retries spent), by the kind of their
   * last error; `other` for an error that is not a StoreError. A read nobody waits for any more
   * (its VM ended, or its bytes came by another read) counts as `aborted`; a HEAD that finds
   * nothing is an answer, not a failure.
   */
  failures: Partial<Record<StoreErrorKind | 'other', number>>;
  /** Bytes of the reads that succeeded: chunks, frames of chunks, manifests. */
  receivedBytes: number;
}

/**
 * Wraps any store with a concurrency limit and retries of transient failures (what a remote store
 * needs; harmless for a local one). Non-retryable failures, such as not-found, fail at once.
 */
export class ResilientStore implements ChunkStore {
  private readonly limiter: Limiter;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  readonly counts: StoreRequestCounts = { tries: { get: 0, head: 0, put: 0, list: 0 }, retries: 0, failures: {}, receivedBytes: 0 };

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

  private async attempt<T>(op: StoreOperation, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    try {
      for (let n = 1; ; n++) {
        try {
          return await this.limiter.run(() => {
            this.counts.tries[op]++;
            return fn();
          });
        } catch (err) {
          if (!(err instanceof StoreError) || !err.retryable || n >= this.maxAttempts) throw err;
          this.counts.retries++;
          await sleep(this.backoffMs * 2 ** (n - 1) * (0.5 + Math.random()), undefined, signal ? { signal } : {});
        }
      }
    } catch (err) {
      // The backoff's own abort is not a StoreError: the operation was given up, as an aborted read is.
      const kind = err instanceof StoreError ? err.kind : signal?.aborted ? 'aborted' : 'other';
      this.counts.failures[kind] = (this.counts.failures[kind] ?? 0) + 1;
      throw err;
    }
  }

  private async read(fn: () => Promise<Uint8Array>, signal?: AbortSignal): Promise<Uint8Array> {
    const bytes = await this.attempt('get', fn, signal);
    this.counts.receivedBytes += bytes.byteLength;
    return bytes;
  }

  hasChunk(digest: string, options?: GetOptions): Promise<boolean> {
    return this.attempt('head', () => this.inner.hasChunk(digest, options), options?.signal);
  }
  getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
    return this.read(() => this.inner.getChunk(digest, options), options?.signal);
  }
  putChunk(digest: string, data: Uint8Array): Promise<void> {
    return this.attempt('put', () => this.inner.putChunk(digest, data));
  }
  hasManifest(id: string): Promise<boolean> {
    return this.attempt('head', () => this.inner.hasManifest(id));
  }
  getManifest(id: string, options?: GetOptions): Promise<Uint8Array> {
    return this.read(() => this.inner.getManifest(id, options), options?.signal);
  }
  putManifest(id: string, data: Uint8Array): Promise<void> {
    return this.attempt('put', () => this.inner.putManifest(id, data));
  }
  manifestIdsWithPrefix(prefix: string): Promise<string[]> {
    return this.attempt('list', () => listManifestIds(this.inner, prefix));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
