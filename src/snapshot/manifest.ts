// The manifest of a chunked snapshot: what memory it describes and which chunk holds each piece.
// It is canonical JSON (fixed key order, no whitespace, one trailing newline), named by the sha256
// of its bytes, so a manifest id pins the whole snapshot: the manifest names every chunk by digest.
//
// Any change to what a reader must understand gets a new `version`; a reader refuses a version it
// does not know (SNAPSHOT_MANIFEST_VERSION) instead of guessing.
import { FcUffdError } from '../errors.js';
import { DIGEST_HEX } from '../store/types.js';
import { GRANULE_BYTES, pageCount, sha256Hex } from './chunk-format.js';

export const MANIFEST_FORMAT = 'fc-uffd-chunked-snapshot';
export const MANIFEST_VERSION = 1;
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
} | null;

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  memorySizeBytes: number;
  chunkSizeBytes: number;
  /** Granule of zero-page elision (4096), whatever page size the guest uses. */
  pageSizeBytes: number;
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
    digestAlgorithm: m.digestAlgorithm,
    compression: { algorithm: m.compression.algorithm, level: m.compression.level },
    base: m.base,
    chunks: m.chunks.map((c) => (c === null ? null : { digest: c.digest, storedBytes: c.storedBytes, ...(c.zeroPages ? { zeroPages: c.zeroPages } : {}) })),
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
  if (o.version !== MANIFEST_VERSION)
    throw new FcUffdError('SNAPSHOT_MANIFEST_VERSION', `manifest version ${JSON.stringify(o.version)} is not supported: this fc-uffd reads version ${MANIFEST_VERSION} only`, {
      version: o.version,
    });
  const size = o.memorySizeBytes;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) throw invalid(`memorySizeBytes ${JSON.stringify(size)} is not a positive integer`);
  const cs = o.chunkSizeBytes;
  if (typeof cs !== 'number' || !isValidChunkSize(cs)) throw invalid(`chunkSizeBytes ${JSON.stringify(cs)} is not a power of two between 2 MiB and 1 GiB`);
  if (o.pageSizeBytes !== GRANULE_BYTES) throw invalid(`pageSizeBytes ${JSON.stringify(o.pageSizeBytes)} is not ${GRANULE_BYTES}`);
  if (o.digestAlgorithm !== 'sha256') throw invalid(`digest algorithm ${JSON.stringify(o.digestAlgorithm)} is not sha256`);
  const comp = o.compression as Record<string, unknown> | null;
  if (typeof comp !== 'object' || comp === null || comp.algorithm !== 'zstd' || typeof comp.level !== 'number')
    throw invalid(`compression ${JSON.stringify(comp)} is not {"algorithm":"zstd","level":N}`);
  if (o.base !== null && (typeof o.base !== 'string' || !DIGEST_HEX.test(o.base))) throw invalid(`base ${JSON.stringify(o.base)} is not a manifest id`);
  if (!Array.isArray(o.chunks)) throw invalid('chunks is not an array');
  const expected = chunkCount(size, cs);
  if (o.chunks.length !== expected) throw invalid(`${o.chunks.length} chunks listed, ${expected} expected for ${size} bytes in ${cs}-byte chunks`);
  const chunks: ChunkEntry[] = o.chunks.map((c: unknown, i: number) => {
    if (c === null) return null;
    const e = c as Record<string, unknown>;
    if (typeof e !== 'object' || typeof e.digest !== 'string' || !DIGEST_HEX.test(e.digest)) throw invalid(`chunk ${i} has no valid digest`);
    if (typeof e.storedBytes !== 'number' || !Number.isSafeInteger(e.storedBytes) || e.storedBytes <= 0) throw invalid(`chunk ${i} has no valid storedBytes`);
    const entry: NonNullable<ChunkEntry> = { digest: e.digest, storedBytes: e.storedBytes };
    if (e.zeroPages !== undefined) {
      const bitmapLen = Math.ceil(pageCount(Math.min(cs, size - i * cs)) / 8);
      if (typeof e.zeroPages !== 'string' || Buffer.from(e.zeroPages, 'base64').length !== bitmapLen) throw invalid(`chunk ${i} has a malformed zeroPages bitmap`);
      entry.zeroPages = e.zeroPages;
    }
    return entry;
  });
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    memorySizeBytes: size,
    chunkSizeBytes: cs,
    pageSizeBytes: GRANULE_BYTES,
    digestAlgorithm: 'sha256',
    compression: { algorithm: 'zstd', level: comp.level },
    base: o.base,
    chunks,
  };
  return { manifest, id };
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
  return { chunks: m.chunks.length, zeroChunks, distinctChunks: distinct.size, storedBytes, zeroPages, pages: pageCount(m.memorySizeBytes) };
}

function popcount8(b: number): number {
  let n = 0;
  for (; b; b &= b - 1) n++;
  return n;
}
