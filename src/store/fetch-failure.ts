// What a VM sees when its memory cannot be fetched: one stable code, STORE_FETCH_FAILED, for every
// way a store read fails after its retries (timeout, refused connection, a 5xx that did not clear,
// bytes that never verified), with the object and the cause in the message and never a secret
// (store descriptions and StoreError messages are built without credentials or query strings).
import { FcUffdError } from '../errors.js';
import { StoreError } from './types.js';

/** The StoreError behind `err`: itself, or one a higher layer wrapped (as `cause` or `details.cause`). */
export function storeCause(err: unknown): StoreError | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof StoreError) return e;
    const wrapped = e as { cause?: unknown; details?: { cause?: unknown } };
    e = wrapped.details?.cause ?? wrapped.cause;
  }
  return undefined;
}

/**
 * The error that stops a VM whose chunk could not be read. A store read that failed (not a missing
 * object: that is the snapshot's fault, SNAPSHOT_MISSING_CHUNK, and stays as it is) becomes
 * STORE_FETCH_FAILED naming `object` in `storeDescription`; any other error passes through.
 */
export function vmFetchError(err: unknown, object: string, storeDescription: string): FcUffdError {
  const cause = storeCause(err);
  if (cause && cause.kind !== 'not-found' && cause.kind !== 'invalid-name')
    return new FcUffdError(
      'STORE_FETCH_FAILED',
      `cannot fetch ${object} from ${storeDescription} (${cause.kind}, ${cause.retryable ? 'retries exhausted' : 'not retryable'}): ${cause.message}`,
      {
        storeCode: cause.code,
        retryable: cause.retryable,
      },
    );
  if (err instanceof FcUffdError) return err;
  return new FcUffdError('SNAPSHOT_STORE', `cannot fetch ${object} from ${storeDescription}: ${(err as Error).message}`);
}
