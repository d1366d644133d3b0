// One stored chunk ("blob"): the chunk's non-zero 4 KiB pages, packed in order and compressed,
// behind a small self-describing header. A chunk is named by the sha256 of its *uncompressed,
// logical* bytes (zero pages included), so identical memory gets the same name in every snapshot
// and a reader can verify what it reconstructed, whatever the compression did.
//
// Blob layout (little endian), version 1:
//   0   4  magic "FCCK"
//   4   1  blob format version (1)
//   5   1  compression: 1 = zstd (one frame)
//   6   2  reserved, 0
//   8   4  chunk length in bytes (the last chunk of a snapshot may be short)
//   12  4  page granule in bytes (4096)
//   16  4  data (non-zero) pages
//   20  4  bitmap bytes B = ceil(pages / 8)
//   24  B  zero-page bitmap: bit i (byte i>>3, bit i&7) set = page i is all zero, not stored
//   24+B   compressed payload: the data pages in order (the last one may be short)
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { FcUffdError } from '../errors.js';

export const GRANULE_BYTES = 4096;
export const BLOB_MAGIC = 0x4b434346; // "FCCK" read as u32le
export const BLOB_VERSION = 1;
export const BLOB_HEADER_BYTES = 24;
export const COMPRESSION_ZSTD = 1;
export const DEFAULT_ZSTD_LEVEL = 3;

const require = createRequire(import.meta.url);
/** zstd-napi's low-level binding: (de)compression into caller-owned buffers (SharedArrayBuffer views too). */
const zstd = require('zstd-napi/binding.js') as typeof ZstdBinding;

/** A blob that cannot be what its name says: bad header, bad payload, or wrong digest. */
export class ChunkFormatError extends FcUffdError {
  constructor(message: string) {
    super('SNAPSHOT_CHUNK_FORMAT', message);
  }
}

export function pageCount(lenBytes: number): number {
  return Math.ceil(lenBytes / GRANULE_BYTES);
}

export function sha256Hex(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

export interface ChunkAnalysis {
  /** Bit set = page all zero. */
  zeroBitmap: Uint8Array;
  zeroPages: number;
  dataPages: number;
}

const ZERO_PAGE = new Uint8Array(GRANULE_BYTES);

/** Finds the all-zero pages of a chunk. */
export function analyzeChunk(chunk: Uint8Array): ChunkAnalysis {
  const pages = pageCount(chunk.length);
  const zeroBitmap = new Uint8Array(Math.ceil(pages / 8));
  const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  let zeroPages = 0;
  for (let p = 0; p < pages; p++) {
    const start = p * GRANULE_BYTES;
    const end = Math.min(start + GRANULE_BYTES, chunk.length);
    if (buf.compare(ZERO_PAGE, 0, end - start, start, end) === 0) {
      zeroBitmap[p >>> 3]! |= 1 << (p & 7);
      zeroPages++;
    }
  }
  return { zeroBitmap, zeroPages, dataPages: pages - zeroPages };
}

export function isZeroPage(bitmap: Uint8Array, page: number): boolean {
  return (bitmap[page >>> 3]! & (1 << (page & 7))) !== 0;
}

let cctx: ZstdBinding.CCtx | undefined;
let dctx: ZstdBinding.DCtx | undefined;

/** Builds the blob of a chunk that has at least one data page. */
export function encodeChunkBlob(chunk: Uint8Array, analysis: ChunkAnalysis, level = DEFAULT_ZSTD_LEVEL): Uint8Array {
  const pages = pageCount(chunk.length);
  let packedLen = 0;
  for (let p = 0; p < pages; p++) if (!isZeroPage(analysis.zeroBitmap, p)) packedLen += Math.min(GRANULE_BYTES, chunk.length - p * GRANULE_BYTES);
  let packed: Uint8Array;
  if (analysis.zeroPages === 0) packed = chunk;
  else {
    packed = new Uint8Array(packedLen);
    let o = 0;
    for (let p = 0; p < pages; p++) {
      if (isZeroPage(analysis.zeroBitmap, p)) continue;
      const page = chunk.subarray(p * GRANULE_BYTES, Math.min((p + 1) * GRANULE_BYTES, chunk.length));
      packed.set(page, o);
      o += page.length;
    }
  }
  const bitmapLen = analysis.zeroBitmap.length;
  const out = Buffer.allocUnsafe(BLOB_HEADER_BYTES + bitmapLen + zstd.compressBound(packedLen));
  out.writeUInt32LE(BLOB_MAGIC, 0);
  out.writeUInt8(BLOB_VERSION, 4);
  out.writeUInt8(COMPRESSION_ZSTD, 5);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(chunk.length, 8);
  out.writeUInt32LE(GRANULE_BYTES, 12);
  out.writeUInt32LE(analysis.dataPages, 16);
  out.writeUInt32LE(bitmapLen, 20);
  out.set(analysis.zeroBitmap, BLOB_HEADER_BYTES);
  cctx ??= new zstd.CCtx();
  const n = cctx.compress(out.subarray(BLOB_HEADER_BYTES + bitmapLen), packed, level);
  return out.subarray(0, BLOB_HEADER_BYTES + bitmapLen + n);
}

export interface BlobHeader {
  version: number;
  compression: number;
  chunkLength: number;
  granuleBytes: number;
  dataPages: number;
  zeroBitmap: Uint8Array;
  payload: Uint8Array;
}

export function parseBlobHeader(blob: Uint8Array): BlobHeader {
  if (blob.length < BLOB_HEADER_BYTES) throw new ChunkFormatError(`blob of ${blob.length} bytes is shorter than its header`);
  const v = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (v.getUint32(0, true) !== BLOB_MAGIC) throw new ChunkFormatError('blob has no FCCK magic: not a chunk');
  const version = v.getUint8(4);
  if (version !== BLOB_VERSION) throw new ChunkFormatError(`chunk blob format version ${version} is not supported (this reader knows ${BLOB_VERSION})`);
  const compression = v.getUint8(5);
  if (compression !== COMPRESSION_ZSTD) throw new ChunkFormatError(`unknown chunk compression ${compression}`);
  const chunkLength = v.getUint32(8, true);
  const granuleBytes = v.getUint32(12, true);
  if (granuleBytes !== GRANULE_BYTES) throw new ChunkFormatError(`chunk page granule ${granuleBytes} is not ${GRANULE_BYTES}`);
  const dataPages = v.getUint32(16, true);
  const bitmapLen = v.getUint32(20, true);
  const pages = pageCount(chunkLength);
  if (bitmapLen !== Math.ceil(pages / 8) || BLOB_HEADER_BYTES + bitmapLen > blob.length)
    throw new ChunkFormatError(`chunk bitmap of ${bitmapLen} bytes does not fit a ${chunkLength}-byte chunk in a ${blob.length}-byte blob`);
  const zeroBitmap = blob.subarray(BLOB_HEADER_BYTES, BLOB_HEADER_BYTES + bitmapLen);
  let zero = 0;
  for (let p = 0; p < pages; p++) if (isZeroPage(zeroBitmap, p)) zero++;
  if (pages - zero !== dataPages) throw new ChunkFormatError(`chunk header says ${dataPages} data pages, its bitmap ${pages - zero}`);
  return { version, compression, chunkLength, granuleBytes, dataPages, zeroBitmap, payload: blob.subarray(BLOB_HEADER_BYTES + bitmapLen) };
}

/**
 * Reconstructs a chunk's logical bytes into `out` (exactly the chunk's length; a fresh or any
 * buffer: every byte is written) and verifies them against `expectedDigest`. Throws
 * ChunkFormatError for anything that does not add up; `out` then holds garbage.
 */
export function decodeChunkBlob(blob: Uint8Array, out: Uint8Array, expectedDigest: string): void {
  const h = parseBlobHeader(blob);
  if (h.chunkLength !== out.length) throw new ChunkFormatError(`chunk blob holds ${h.chunkLength} bytes, the manifest expects ${out.length}`);
  const pages = pageCount(out.length);
  const lastLen = out.length - (pages - 1) * GRANULE_BYTES;
  const lastIsData = pages > 0 && !isZeroPage(h.zeroBitmap, pages - 1);
  const packedLen = h.dataPages === 0 ? 0 : (h.dataPages - 1) * GRANULE_BYTES + (lastIsData ? lastLen : GRANULE_BYTES);
  dctx ??= new zstd.DCtx();
  let n: number;
  try {
    n = dctx.decompress(out, h.payload);
  } catch (err) {
    throw new ChunkFormatError(`chunk payload does not decompress: ${(err as Error).message}`);
  }
  if (n !== packedLen) throw new ChunkFormatError(`chunk payload decompressed to ${n} bytes, expected ${packedLen}`);
  // Spread the packed pages to their places, last first: page k's packed index j is <= k, so
  // every write lands on packed bytes already moved.
  let j = h.dataPages - 1;
  for (let k = pages - 1; k >= 0; k--) {
    const start = k * GRANULE_BYTES;
    const len = k === pages - 1 ? lastLen : GRANULE_BYTES;
    if (isZeroPage(h.zeroBitmap, k)) out.fill(0, start, start + len);
    else {
      if (j !== k) out.copyWithin(start, j * GRANULE_BYTES, j * GRANULE_BYTES + len);
      j--;
    }
  }
  const digest = sha256Hex(out);
  if (digest !== expectedDigest) throw new ChunkFormatError(`chunk content hashes to sha256:${digest}, its name is sha256:${expectedDigest}`);
}
