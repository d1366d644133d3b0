import { StoreError, checkDigestName } from './types.js';

// Object names inside any store, relative to its root or prefix. They are DirStore's file layout,
// so a store directory can be copied to a bucket or a web root as it is (`aws s3 sync DIR
// s3://BUCKET/PREFIX`, `rsync DIR host:/var/www/PREFIX`) and read back by any store.

export function chunkKey(digest: string): string {
  checkDigestName(digest);
  return `chunks/${digest.slice(0, 2)}/${digest}`;
}

export function manifestKey(id: string): string {
  checkDigestName(id);
  return `manifests/${id}.json`;
}

/** The key prefix of every manifest whose id starts with `idPrefix` (hex digits), for a store that lists keys. */
export function manifestKeyPrefix(idPrefix: string): string {
  if (!/^[0-9a-f]{0,64}$/.test(idPrefix))
    throw new StoreError('invalid-name', `not a prefix of a sha256 hex digest: ${JSON.stringify(idPrefix)}`, false);
  return `manifests/${idPrefix}`;
}

/** The manifest id a listed key names (the key relative to the store's root or prefix), or undefined. */
export function manifestIdOfKey(rel: string): string | undefined {
  return /^manifests\/([0-9a-f]{64})\.json$/.exec(rel)?.[1];
}

/** What a ranged read means in every store: bytes [offset, offset + length), cut short at the object's end. */
export function checkRange(range: { offset: number; length: number }): void {
  if (!Number.isSafeInteger(range.offset) || range.offset < 0 || !Number.isSafeInteger(range.length) || range.length < 0)
    throw new RangeError(`invalid range: offset ${range.offset}, length ${range.length}`);
}

/** The HTTP Range header value for a non-empty range. */
export function rangeHeader(range: { offset: number; length: number }): string {
  return `bytes=${range.offset}-${range.offset + range.length - 1}`;
}

/**
 * Checks a `Content-Range: bytes START-END/TOTAL` answer to a ranged request against what was
 * asked: START must be the offset and END the last byte asked for, or the object's last byte when
 * the range runs past it. Returns the byte count the body must have, or an error text.
 */
export function checkContentRange(header: string | undefined, range: { offset: number; length: number }): number | string {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header ?? '');
  if (!m) return `answer to a ranged read has no valid Content-Range (${JSON.stringify(header ?? null)})`;
  const start = Number(m[1]);
  const end = Number(m[2]);
  const total = m[3] === '*' ? undefined : Number(m[3]);
  const wantEnd = Math.min(range.offset + range.length, total ?? Infinity) - 1;
  if (start !== range.offset || end !== wantEnd || end < start)
    return `asked for bytes ${range.offset}-${range.offset + range.length - 1}, got ${header}`;
  return end - start + 1;
}
