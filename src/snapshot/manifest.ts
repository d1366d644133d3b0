// The manifest of a chunked snapshot: what memory it describes and which chunk holds each piece.
// It is canonical JSON (fixed key order, no whitespace, one trailing newline), named by the sha256
// of its bytes, so a manifest id pins the whole snapshot: the manifest names every chunk by digest.
//
// Any change to what a reader must understand gets a new `version`; a reader refuses a version it
// does not know (SNAPSHOT_MANIFEST_VERSION) instead of guessing. Version 2 adds frames: chunks
// stored as independent zstd frames of `frameSizeBytes`, each frame's compressed length and the
// sha256 of its logical bytes listed in the chunk's entry, so a fault can fetch (ranged read) and
// verify one frame before the rest of its chunk. A version 2 entry without frames is a version 1
// blob (one frame), served whole. Version 1 manifests are read as they are.
import { FcUffdError } from '../errors.js';
import { DIGEST_HEX } from '../store/types.js';
import { framedHeaderBytes, frameCount, GRANULE_BYTES, isValidFrameSize, isZeroPage, pageCount, sha256Hex } from './chunk-format.js';

export const MANIFEST_FORMAT = 'fc-uffd-chunked-snapshot';
/** What pack writes. */
export const MANIFEST_VERSION = 2;
export const MANIFEST_VERSIONS: readonly ManifestVersion[] = [1, 2];
export type ManifestVersion = 1 | 2;
export const MIN_CHUNK_BYTES = 2 * 1024 * 1024;
export const MAX_CHUNK_BYTES = 1024 * 1024 * 1024;
/** 4 MiB: see docs/chunked-format.md for the measurements behind it. */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

/** One chunk of the memory: null when all of it is zero (nothing stored). */
export type ChunkEntry = {
  /** sha256 (hex) of the chunk's uncompressed bytes; the blob's name in the store. */
  digest: string;
  /** Bytes of the stored blob (header + compressed data pages). */
  storedBytes: number;
  /** Zero-page bitmap, base64 (bit i set = page i of this chunk is zero); absent when no page is zero. */
  zeroPages?: string;
  /** Version 2, framed blob: compressed bytes of each frame (0 = an all-zero frame, not stored). */
  frameBytes?: number[];
  /** Version 2, framed blob: sha256 hex of each frame's logical bytes ('' for an all-zero frame). */
  frameSha256?: string[];
} | null;

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: ManifestVersion;
  memorySizeBytes: number;
  chunkSizeBytes: number;
  /** Granule of zero-page elision (4096), whatever page size the guest uses. */
  pageSizeBytes: number;
  /** Version 2: bytes of the chunk each frame of a framed blob holds. */
  frameSizeBytes?: number;
  digestAlgorithm: 'sha256';
  compression: { algorithm: 'zstd'; level: number };
  /** Manifest this one was packed against (provenance; serving does not need it). */
  base: string | null;
  chunks: ChunkEntry[];
}

export function isValidChunkSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= MIN_CHUNK_BYTES && n <= MAX_CHUNK_BYTES && (n & (n - 1)) === 0;
}

export function chunkCount(memorySizeBytes: number, chunkSizeBytes: number): number {
  return Math.ceil(memorySizeBytes / chunkSizeBytes);
}

/** Length of chunk `i` (the last may be short). */
export function chunkLength(m: Pick<Manifest, 'memorySizeBytes' | 'chunkSizeBytes'>, i: number): number {
  return Math.min(m.chunkSizeBytes, m.memorySizeBytes - i * m.chunkSizeBytes);
}

/** The canonical bytes of a manifest (key order as in the interface). */
export function encodeManifest(m: Manifest): Uint8Array {
  const canonical = {
    format: m.format,
    version: m.version,
    memorySizeBytes: m.memorySizeBytes,
    chunkSizeBytes: m.chunkSizeBytes,
    pageSizeBytes: m.pageSizeBytes,
    ...(m.version >= 2 ? { frameSizeBytes: m.frameSizeBytes } : {}),
    digestAlgorithm: m.digestAlgorithm,
    compression: { algorithm: m.compression.algorithm, level: m.compression.level },
    base: m.base,
    chunks: m.chunks.map((c) =>
      c === null
        ? null
        : {
            digest: c.digest,
            storedBytes: c.storedBytes,
            ...(c.zeroPages ? { zeroPages: c.zeroPages } : {}),
            ...(m.version >= 2 && c.frameBytes ? { frameBytes: c.frameBytes, frameSha256: c.frameSha256 } : {}),
          },
    ),
  };
  return Buffer.from(`${JSON.stringify(canonical)}\n`);
}

export function manifestId(bytes: Uint8Array): string {
  return sha256Hex(bytes);
}

function invalid(msg: string, details: Record<string, unknown> = {}): FcUffdError {
  return new FcUffdError('SNAPSHOT_MANIFEST_INVALID', `invalid manifest: ${msg}`, details);
}

/**
 * Parses and validates manifest bytes. With `expectedId`, the bytes must hash to it
 * (SNAPSHOT_MANIFEST_CORRUPT otherwise). Every field is checked; an unknown version or format
 * is refused before anything else is read.
 */
export function parseManifest(bytes: Uint8Array, expectedId?: string): { manifest: Manifest; id: string } {
  const id = manifestId(bytes);
  if (expectedId !== undefined && id !== expectedId)
    throw new FcUffdError('SNAPSHOT_MANIFEST_CORRUPT', `manifest ${expectedId} is damaged: its bytes hash to ${id}`, { expectedId, id });
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw invalid(`not JSON (truncated?): ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o.format !== MANIFEST_FORMAT) throw invalid(`format is ${JSON.stringify(o.format)}, not ${JSON.stringify(MANIFEST_FORMAT)}`);
  if (!MANIFEST_VERSIONS.includes(o.version as ManifestVersion))
    throw new FcUffdError(
      'SNAPSHOT_MANIFEST_VERSION',
      `manifest version ${JSON.stringify(o.version)} is not supported: this fc-uffd reads versions ${MANIFEST_VERSIONS.join(' and ')}; upgrade fc-uffd`,
      {
        version: o.version,
      },
    );
  const version = o.version as ManifestVersion;
  const size = o.memorySizeBytes;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0)
    throw invalid(`memorySizeBytes ${JSON.stringify(size)} is not a positive integer`);
  const cs = o.chunkSizeBytes;
  if (typeof cs !== 'number' || !isValidChunkSize(cs))
    throw invalid(`chunkSizeBytes ${JSON.stringify(cs)} is not a power of two between 2 MiB and 1 GiB`);
  if (o.pageSizeBytes !== GRANULE_BYTES) throw invalid(`pageSizeBytes ${JSON.stringify(o.pageSizeBytes)} is not ${GRANULE_BYTES}`);
  const fs = o.frameSizeBytes;
  if (version === 1 && fs !== undefined) throw invalid('frameSizeBytes in a version 1 manifest');
  if (version >= 2 && (typeof fs !== 'number' || !isValidFrameSize(fs, cs)))
    throw invalid(`frameSizeBytes ${JSON.stringify(fs)} is not a power of two between 64 KiB and the chunk size`);
  if (o.digestAlgorithm !== 'sha256') throw invalid(`digest algorithm ${JSON.stringify(o.digestAlgorithm)} is not sha256`);
  const comp = o.compression as Record<string, unknown> | null;
  if (typeof comp !== 'object' || comp === null || comp.algorithm !== 'zstd' || typeof comp.level !== 'number')
    throw invalid(`compression ${JSON.stringify(comp)} is not {"algorithm":"zstd","level":N}`);
  if (o.base !== null && (typeof o.base !== 'string' || !DIGEST_HEX.test(o.base)))
    throw invalid(`base ${JSON.stringify(o.base)} is not a manifest id`);
  if (!Array.isArray(o.chunks)) throw invalid('chunks is not an array');
  const expected = chunkCount(size, cs);
  if (o.chunks.length !== expected)
    throw invalid(`${o.chunks.length} chunks listed, ${expected} expected for ${size} bytes in ${cs}-byte chunks`);
  const chunks: ChunkEntry[] = o.chunks.map((c: unknown, i: number) => {
    if (c === null) return null;
    const e = c as Record<string, unknown>;
    if (typeof e !== 'object' || typeof e.digest !== 'string' || !DIGEST_HEX.test(e.digest))
      throw invalid(`chunk ${i} has no valid digest`);
    if (typeof e.storedBytes !== 'number' || !Number.isSafeInteger(e.storedBytes) || e.storedBytes <= 0)
      throw invalid(`chunk ${i} has no valid storedBytes`);
    const entry: NonNullable<ChunkEntry> = { digest: e.digest, storedBytes: e.storedBytes };
    if (e.zeroPages !== undefined) {
      const bitmapLen = Math.ceil(pageCount(Math.min(cs, size - i * cs)) / 8);
      if (typeof e.zeroPages !== 'string' || Buffer.from(e.zeroPages, 'base64').length !== bitmapLen)
        throw invalid(`chunk ${i} has a malformed zeroPages bitmap`);
      entry.zeroPages = e.zeroPages;
    }
    if (version === 1 && (e.frameBytes !== undefined || e.frameSha256 !== undefined))
      throw invalid(`chunk ${i} has frames in a version 1 manifest`);
    if (e.frameBytes !== undefined || e.frameSha256 !== undefined) {
      Object.assign(entry, checkFrames(e, i, Math.min(cs, size - i * cs), fs as number, entry.zeroPages));
    }
    return entry;
  });
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version,
    memorySizeBytes: size,
    chunkSizeBytes: cs,
    pageSizeBytes: GRANULE_BYTES,
    ...(version >= 2 ? { frameSizeBytes: fs as number } : {}),
    digestAlgorithm: 'sha256',
    compression: { algorithm: 'zstd', level: comp.level },
    base: o.base,
    chunks,
  };
  return { manifest, id };
}

const HASH_OR_EMPTY = /^(?:[0-9a-f]{64})?$/;

/** Checks a chunk entry's frame table against the chunk's length, zero pages and stored size. */
function checkFrames(
  e: Record<string, unknown>,
  i: number,
  len: number,
  frameSize: number,
  zeroPages: string | undefined,
): { frameBytes: number[]; frameSha256: string[] } {
  const n = frameCount(len, frameSize);
  const fb = e.frameBytes;
  const fh = e.frameSha256;
  if (!Array.isArray(fb) || !Array.isArray(fh) || fb.length !== n || fh.length !== n)
    throw invalid(`chunk ${i} does not list ${n} frames (frameBytes and frameSha256)`);
  const pages = pageCount(len);
  const bitmap = zeroPages ? Buffer.from(zeroPages, 'base64') : new Uint8Array(Math.ceil(pages / 8));
  const framePages = frameSize / GRANULE_BYTES;
  let total = framedHeaderBytes(len, frameSize);
  for (let k = 0; k < n; k++) {
    const b: unknown = fb[k];
    const h: unknown = fh[k];
    if (typeof b !== 'number' || !Number.isSafeInteger(b) || b < 0 || typeof h !== 'string' || !HASH_OR_EMPTY.test(h))
      throw invalid(`chunk ${i} frame ${k} has no valid length and sha256`);
    let data = false;
    for (let p = k * framePages; p < Math.min((k + 1) * framePages, pages) && !data; p++) data = !isZeroPage(bitmap, p);
    if (data !== b > 0 || data !== (h !== ''))
      throw invalid(`chunk ${i} frame ${k}: a frame has bytes and a hash exactly when it has a data page`);
    total += b;
  }
  if (total !== e.storedBytes)
    throw invalid(`chunk ${i}: frames and header add up to ${total} bytes, storedBytes says ${JSON.stringify(e.storedBytes)}`);
  return { frameBytes: fb as number[], frameSha256: fh as string[] };
}

/** Offset of each frame in chunk entry `e`'s blob, and the blob size at the end (n + 1 numbers). */
export function frameOffsets(e: NonNullable<ChunkEntry>, chunkLen: number, frameSize: number): number[] {
  const out = [framedHeaderBytes(chunkLen, frameSize)];
  for (const b of e.frameBytes ?? []) out.push(out[out.length - 1]! + b);
  return out;
}

/** The zero-page bitmap of chunk `i` (all set for a zero chunk, all clear when none is zero). */
export function chunkZeroBitmap(m: Manifest, i: number): Uint8Array {
  const pages = pageCount(chunkLength(m, i));
  const c = m.chunks[i];
  if (c === null || c === undefined) {
    const all = new Uint8Array(Math.ceil(pages / 8)).fill(0xff);
    return all;
  }
  return c.zeroPages ? new Uint8Array(Buffer.from(c.zeroPages, 'base64')) : new Uint8Array(Math.ceil(pages / 8));
}

export interface ManifestSummary {
  chunks: number;
  zeroChunks: number;
  distinctChunks: number;
  storedBytes: number;
  zeroPages: number;
  pages: number;
}

export function summarizeManifest(m: Manifest): ManifestSummary {
  let zeroChunks = 0;
  let storedBytes = 0;
  let zeroPages = 0;
  const distinct = new Set<string>();
  for (let i = 0; i < m.chunks.length; i++) {
    // `as`, not `!`: an entry is null for an all-zero chunk; only `undefined` is ruled out.
    const c = m.chunks[i] as ChunkEntry;
    const pages = pageCount(chunkLength(m, i));
    if (c === null) {
      zeroChunks++;
      zeroPages += pages;
      continue;
    }
    if (!distinct.has(c.digest)) storedBytes += c.storedBytes;
    distinct.add(c.digest);
    if (c.zeroPages) for (const b of Buffer.from(c.zeroPages, 'base64')) zeroPages += popcount8(b);
  }
  return {
    chunks: m.chunks.length,
    zeroChunks,
    distinctChunks: distinct.size,
    storedBytes,
    zeroPages,
    pages: pageCount(m.memorySizeBytes),
  };
}

function popcount8(b: number): number {
  let n = 0;
  for (; b; b &= b - 1) n++;
  return n;
}
