// Where chunks and manifests live. The local directory store is the embedded default; HTTP and S3
// stores implement the same interface (ranged reads, cancellation and a retryable flag on errors
// are in it for them), and `ResilientStore` adds concurrency limits and retries around any store.

/** Chunk and manifest names are lower-case hex digests (sha256: 64 characters). */
export const DIGEST_HEX = /^[0-9a-f]{64}$/;

export interface GetOptions {
  /** Only bytes [offset, offset + length) of the object (HTTP Range, S3 GetObject Range). */
  range?: { offset: number; length: number };
  signal?: AbortSignal;
}

/**
 * A content-addressed object store. Every method is async and may be called concurrently; `put`
 * of an object that exists is a no-op (same name, same bytes). Failures are StoreErrors.
 */
export interface ChunkStore {
  /** For logs: where this store is (a path, a URL). */
  readonly description: string;
  hasChunk(digest: string, options?: GetOptions): Promise<boolean>;
  getChunk(digest: string, options?: GetOptions): Promise<Uint8Array>;
  putChunk(digest: string, data: Uint8Array): Promise<void>;
  hasManifest(id: string): Promise<boolean>;
  getManifest(id: string, options?: GetOptions): Promise<Uint8Array>;
  putManifest(id: string, data: Uint8Array): Promise<void>;
  /** Manifest ids starting with `prefix`, for short ids typed by an operator; stores that cannot list leave it out. */
  manifestIdsWithPrefix?(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}

export type StoreErrorKind = 'not-found' | 'io' | 'invalid-name';

/** A store operation failed. `retryable`: a transient failure that may succeed if tried again. */
export class StoreError extends Error {
  constructor(
    readonly kind: StoreErrorKind,
    message: string,
    readonly retryable: boolean,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export function checkDigestName(name: string): void {
  if (!DIGEST_HEX.test(name)) throw new StoreError('invalid-name', `not a sha256 hex digest: ${JSON.stringify(name)}`, false);
}
