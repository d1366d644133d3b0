// Where chunks and manifests live. The local directory store is the embedded default; HTTP and S3
// stores implement the same interface (ranged reads, cancellation and a retryable flag on errors
// are in it for them), and `ResilientStore` adds concurrency limits and retries around any store.
import { FcUffdError, type ErrorCode } from '../errors.js';

/** Chunk and manifest names are lower-case hex digests (sha256: 64 characters). */
export const DIGEST_HEX = /^[0-9a-f]{64}$/;

export interface GetOptions {
  /** Only bytes [offset, offset + length) of the object (HTTP Range, S3 GetObject Range). */
  range?: { offset: number; length: number };
  signal?: AbortSignal;
  /**
   * No fault waits for this read (a chunk read ahead, the rest of a chunk behind its frame): a
   * remote store sends it after a fault's request (read-priority.ts) and takes its body in off the
   * main thread, so those bytes are not queued there ahead of a fault's. Local stores ignore it.
   */
  background?: boolean;
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

export type StoreErrorKind =
  | 'not-found'
  | 'io'
  | 'invalid-name'
  /** No answer (headers or body) within the configured time. */
  | 'timeout'
  /** The server answered a status the store cannot use (denied, throttled, a server error). */
  | 'http-status'
  /** Bytes that are not what was asked for: a short body, a wrong range, a hash mismatch. */
  | 'integrity'
  /** The caller's AbortSignal fired. */
  | 'aborted'
  /** The store is not usable as configured (a bad URL, a missing bucket, an unsupported scheme). */
  | 'config';

const STORE_ERROR_CODES: Record<StoreErrorKind, ErrorCode> = {
  'not-found': 'STORE_NOT_FOUND',
  io: 'STORE_IO',
  'invalid-name': 'STORE_INVALID_NAME',
  timeout: 'STORE_TIMEOUT',
  'http-status': 'STORE_HTTP_STATUS',
  integrity: 'STORE_INTEGRITY',
  aborted: 'STORE_ABORTED',
  config: 'STORE_CONFIG',
};

/**
 * A store operation failed. `retryable`: a transient failure that may succeed if tried again. The
 * code is STORE_<KIND>; `kind` stays for stores and callers that branch on it.
 */
export class StoreError extends FcUffdError {
  constructor(
    readonly kind: StoreErrorKind,
    message: string,
    readonly retryable: boolean,
    override readonly cause?: unknown,
  ) {
    super(STORE_ERROR_CODES[kind], message, { retryable });
  }
}

export function checkDigestName(name: string): void {
  if (!DIGEST_HEX.test(name)) throw new StoreError('invalid-name', `not a sha256 hex digest: ${JSON.stringify(name)}`, false);
}

/** A wrapper's pass-through of `manifestIdsWithPrefix`: short ids work through every layer of a store that can list. */
export function listManifestIds(inner: ChunkStore, prefix: string): Promise<string[]> {
  if (!inner.manifestIdsWithPrefix)
    return Promise.reject(
      new StoreError('config', `${inner.description} cannot look up short ids: give the full 64-digit manifest id`, false),
    );
  return inner.manifestIdsWithPrefix(prefix);
}
