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
//
// Version 2 (framed): the chunk's offset space is cut into frames of F bytes (a power of two, the
// last may be short); each frame's data pages are an independent zstd frame, so one frame can be
// fetched with a ranged read and decoded alone. An all-zero frame stores nothing (length 0).
//   0   4  magic "FCCK"
//   4   1  blob format version (2)
//   5   1  compression: 2 = zstd, one independent frame per F bytes of the chunk
//   6   2  reserved, 0
//   8   4  chunk length in bytes
//   12  4  page granule in bytes (4096)
//   16  4  data (non-zero) pages
//   20  4  bitmap bytes B = ceil(pages / 8)
//   24  4  frame size F in bytes
//   28  4  frame count N = ceil(chunk length / F)
//   32  B  zero-page bitmap (as in version 1)
//   32+B 4N compressed length of each frame (u32le)
//   32+B+4N frames, in order
// A frame's hash (in the manifest) is the sha256 of its logical bytes: [k*F, min((k+1)*F, len)) of
// the chunk, zero pages included.
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { FcUffdError } from '../errors.js';

export const GRANULE_BYTES = 4096;
export const BLOB_MAGIC = 0x4b434346; // "FCCK" read as u32le
export const BLOB_VERSION = 1;
export const BLOB_HEADER_BYTES = 24;
export const COMPRESSION_ZSTD = 1;
export const BLOB_VERSION_FRAMED = 2;
export const BLOB_HEADER_FRAMED_BYTES = 32;
export const COMPRESSION_ZSTD_FRAMES = 2;
/** 256 KiB: see docs/chunked-format.md for the measurements behind it. */
export const DEFAULT_FRAME_BYTES = 256 * 1024;
export const MIN_FRAME_BYTES = 64 * 1024;
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

/** The chunk's data pages in [startPage, endPage), packed in order (the chunk itself when none is zero). */
function packPages(chunk: Uint8Array, bitmap: Uint8Array, startPage: number, endPage: number): Uint8Array {
  const end = Math.min(endPage * GRANULE_BYTES, chunk.length);
  let packedLen = 0;
  let zero = 0;
  for (let p = startPage; p < endPage; p++) {
    if (isZeroPage(bitmap, p)) zero++;
    else packedLen += Math.min(GRANULE_BYTES, chunk.length - p * GRANULE_BYTES);
  }
  if (zero === 0) return chunk.subarray(startPage * GRANULE_BYTES, end);
  const packed = new Uint8Array(packedLen);
  let o = 0;
  for (let p = startPage; p < endPage; p++) {
    if (isZeroPage(bitmap, p)) continue;
    const page = chunk.subarray(p * GRANULE_BYTES, Math.min((p + 1) * GRANULE_BYTES, chunk.length));
    packed.set(page, o);
    o += page.length;
  }
  return packed;
}

function compressInto(out: Uint8Array, data: Uint8Array, level: number): number {
  cctx ??= new zstd.CCtx();
  return cctx.compress(out, data, level);
}

/** Builds the version 1 blob (one zstd frame) of a chunk that has at least one data page. */
export function encodeChunkBlob(chunk: Uint8Array, analysis: ChunkAnalysis, level = DEFAULT_ZSTD_LEVEL): Uint8Array {
  const packed = packPages(chunk, analysis.zeroBitmap, 0, pageCount(chunk.length));
  const bitmapLen = analysis.zeroBitmap.length;
  const out = Buffer.allocUnsafe(BLOB_HEADER_BYTES + bitmapLen + zstd.compressBound(packed.length));
  out.writeUInt32LE(BLOB_MAGIC, 0);
  out.writeUInt8(BLOB_VERSION, 4);
  out.writeUInt8(COMPRESSION_ZSTD, 5);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(chunk.length, 8);
  out.writeUInt32LE(GRANULE_BYTES, 12);
  out.writeUInt32LE(analysis.dataPages, 16);
  out.writeUInt32LE(bitmapLen, 20);
  out.set(analysis.zeroBitmap, BLOB_HEADER_BYTES);
  const n = compressInto(out.subarray(BLOB_HEADER_BYTES + bitmapLen), packed, level);
  return out.subarray(0, BLOB_HEADER_BYTES + bitmapLen + n);
}

export function frameCount(chunkLength: number, frameBytes: number): number {
  return Math.ceil(chunkLength / frameBytes);
}

/** Bytes before the first frame of a version 2 blob (header, bitmap, frame table). */
export function framedHeaderBytes(chunkLength: number, frameBytes: number): number {
  return BLOB_HEADER_FRAMED_BYTES + Math.ceil(pageCount(chunkLength) / 8) + 4 * frameCount(chunkLength, frameBytes);
}

export function isValidFrameSize(frameBytes: number, chunkBytes: number): boolean {
  return (
    Number.isSafeInteger(frameBytes) && frameBytes >= MIN_FRAME_BYTES && frameBytes <= chunkBytes && (frameBytes & (frameBytes - 1)) === 0
  );
}

export interface FramedBlob {
  blob: Uint8Array;
  /** Compressed bytes of each frame (0: all its pages are zero, nothing stored). */
  frameBytes: number[];
  /** sha256 hex of each frame's logical bytes; '' for an all-zero frame. */
  frameSha256: string[];
}

/** Builds the version 2 blob (independent frames of `frameBytes` of the chunk) of a chunk that has a data page. */
export function encodeChunkBlobFramed(
  chunk: Uint8Array,
  analysis: ChunkAnalysis,
  frameBytes: number,
  level = DEFAULT_ZSTD_LEVEL,
): FramedBlob {
  const pages = pageCount(chunk.length);
  const n = frameCount(chunk.length, frameBytes);
  const framePages = frameBytes / GRANULE_BYTES;
  const bitmapLen = analysis.zeroBitmap.length;
  const head = framedHeaderBytes(chunk.length, frameBytes);
  let bound = head;
  const packedFrames: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    const packed = packPages(chunk, analysis.zeroBitmap, k * framePages, Math.min((k + 1) * framePages, pages));
    packedFrames.push(packed);
    bound += packed.length === 0 ? 0 : zstd.compressBound(packed.length);
  }
  const out = Buffer.allocUnsafe(bound);
  out.writeUInt32LE(BLOB_MAGIC, 0);
  out.writeUInt8(BLOB_VERSION_FRAMED, 4);
  out.writeUInt8(COMPRESSION_ZSTD_FRAMES, 5);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(chunk.length, 8);
  out.writeUInt32LE(GRANULE_BYTES, 12);
  out.writeUInt32LE(analysis.dataPages, 16);
  out.writeUInt32LE(bitmapLen, 20);
  out.writeUInt32LE(frameBytes, 24);
  out.writeUInt32LE(n, 28);
  out.set(analysis.zeroBitmap, BLOB_HEADER_FRAMED_BYTES);
  const table = BLOB_HEADER_FRAMED_BYTES + bitmapLen;
  const lengths: number[] = [];
  const hashes: string[] = [];
  let o = head;
  for (let k = 0; k < n; k++) {
    const packed = packedFrames[k]!;
    const len = packed.length === 0 ? 0 : compressInto(out.subarray(o), packed, level);
    out.writeUInt32LE(len, table + 4 * k);
    lengths.push(len);
    hashes.push(len === 0 ? '' : sha256Hex(chunk.subarray(k * frameBytes, Math.min((k + 1) * frameBytes, chunk.length))));
    o += len;
  }
  return { blob: out.subarray(0, o), frameBytes: lengths, frameSha256: hashes };
}

export interface BlobHeader {
  version: number;
  compression: number;
  chunkLength: number;
  granuleBytes: number;
  dataPages: number;
  zeroBitmap: Uint8Array;
  /** Version 1: the one zstd frame. Version 2: every frame, in order. */
  payload: Uint8Array;
  /** Version 2 only: frame size and each frame's compressed length. */
  frameSizeBytes?: number;
  frameLengths?: number[];
}

export function parseBlobHeader(blob: Uint8Array): BlobHeader {
  if (blob.length < BLOB_HEADER_BYTES) throw new ChunkFormatError(`blob of ${blob.length} bytes is shorter than its header`);
  const v = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (v.getUint32(0, true) !== BLOB_MAGIC) throw new ChunkFormatError('blob has no FCCK magic: not a chunk');
  const version = v.getUint8(4);
  if (version !== BLOB_VERSION && version !== BLOB_VERSION_FRAMED)
    throw new ChunkFormatError(
      `chunk blob format version ${version} is not supported (this reader knows ${BLOB_VERSION} and ${BLOB_VERSION_FRAMED})`,
    );
  const compression = v.getUint8(5);
  if (compression !== (version === BLOB_VERSION ? COMPRESSION_ZSTD : COMPRESSION_ZSTD_FRAMES))
    throw new ChunkFormatError(`unknown chunk compression ${compression} for blob version ${version}`);
  const headerBytes = version === BLOB_VERSION ? BLOB_HEADER_BYTES : BLOB_HEADER_FRAMED_BYTES;
  if (blob.length < headerBytes) throw new ChunkFormatError(`blob of ${blob.length} bytes is shorter than its header`);
  const chunkLength = v.getUint32(8, true);
  const granuleBytes = v.getUint32(12, true);
  if (granuleBytes !== GRANULE_BYTES) throw new ChunkFormatError(`chunk page granule ${granuleBytes} is not ${GRANULE_BYTES}`);
  const dataPages = v.getUint32(16, true);
  const bitmapLen = v.getUint32(20, true);
  const pages = pageCount(chunkLength);
  if (bitmapLen !== Math.ceil(pages / 8) || headerBytes + bitmapLen > blob.length)
    throw new ChunkFormatError(`chunk bitmap of ${bitmapLen} bytes does not fit a ${chunkLength}-byte chunk in a ${blob.length}-byte blob`);
  const zeroBitmap = blob.subarray(headerBytes, headerBytes + bitmapLen);
  let zero = 0;
  for (let p = 0; p < pages; p++) if (isZeroPage(zeroBitmap, p)) zero++;
  if (pages - zero !== dataPages) throw new ChunkFormatError(`chunk header says ${dataPages} data pages, its bitmap ${pages - zero}`);
  const h: BlobHeader = {
    version,
    compression,
    chunkLength,
    granuleBytes,
    dataPages,
    zeroBitmap,
    payload: blob.subarray(headerBytes + bitmapLen),
  };
  if (version === BLOB_VERSION) return h;
  const frameSizeBytes = v.getUint32(24, true);
  const n = v.getUint32(28, true);
  if (!isValidFrameSize(frameSizeBytes, 1 << 30) || n !== frameCount(chunkLength, frameSizeBytes))
    throw new ChunkFormatError(`chunk frame size ${frameSizeBytes} and count ${n} do not fit a ${chunkLength}-byte chunk`);
  const table = headerBytes + bitmapLen;
  if (table + 4 * n > blob.length) throw new ChunkFormatError(`chunk frame table does not fit a ${blob.length}-byte blob`);
  const frameLengths: number[] = [];
  let total = 0;
  for (let k = 0; k < n; k++) {
    const len = v.getUint32(table + 4 * k, true);
    frameLengths.push(len);
    total += len;
  }
  if (table + 4 * n + total !== blob.length)
    throw new ChunkFormatError(`chunk frames take ${total} bytes, the blob has ${blob.length - table - 4 * n} after its frame table`);
  return { ...h, payload: blob.subarray(table + 4 * n), frameSizeBytes, frameLengths };
}

/**
 * Decompresses the packed data pages of pages [firstPage, endPage) of a chunk into `out` (the whole
 * chunk's bytes) and spreads them to their places; zero pages are zero-filled. Writes only inside
 * that range, so other ranges of `out` may be read meanwhile.
 */
function decodePages(compressed: Uint8Array, out: Uint8Array, bitmap: Uint8Array, firstPage: number, endPage: number): void {
  const start = firstPage * GRANULE_BYTES;
  const end = Math.min(endPage * GRANULE_BYTES, out.length);
  const lastLen = end - (endPage - 1) * GRANULE_BYTES;
  let data = 0;
  for (let p = firstPage; p < endPage; p++) if (!isZeroPage(bitmap, p)) data++;
  const lastIsData = !isZeroPage(bitmap, endPage - 1);
  const packedLen = data === 0 ? 0 : (data - 1) * GRANULE_BYTES + (lastIsData ? lastLen : GRANULE_BYTES);
  const region = out.subarray(start, end);
  let n = 0;
  if (packedLen > 0 || compressed.length > 0) {
    dctx ??= new zstd.DCtx();
    try {
      n = dctx.decompress(region, compressed);
    } catch (err) {
      throw new ChunkFormatError(`chunk payload does not decompress: ${(err as Error).message}`);
    }
  }
  if (n !== packedLen) throw new ChunkFormatError(`chunk payload decompressed to ${n} bytes, expected ${packedLen}`);
  // Spread the packed pages to their places, last first: page k's packed index j is <= k, so
  // every write lands on packed bytes already moved.
  let j = firstPage + data - 1;
  for (let k = endPage - 1; k >= firstPage; k--) {
    const s = k * GRANULE_BYTES;
    const len = k === endPage - 1 ? lastLen : GRANULE_BYTES;
    if (isZeroPage(bitmap, k)) out.fill(0, s, s + len);
    else {
      if (j !== k) out.copyWithin(s, (j - firstPage) * GRANULE_BYTES + start, (j - firstPage) * GRANULE_BYTES + start + len);
      j--;
    }
  }
}

/**
 * Reconstructs a chunk's logical bytes into `out` (exactly the chunk's length; a fresh or any
 * buffer: every byte is written) and verifies them against `expectedDigest`. Either blob version.
 * Throws ChunkFormatError for anything that does not add up; `out` then holds garbage.
 */
export function decodeChunkBlob(blob: Uint8Array, out: Uint8Array, expectedDigest: string): void {
  const h = parseBlobHeader(blob);
  if (h.chunkLength !== out.length)
    throw new ChunkFormatError(`chunk blob holds ${h.chunkLength} bytes, the manifest expects ${out.length}`);
  const pages = pageCount(out.length);
  if (h.frameLengths === undefined) decodePages(h.payload, out, h.zeroBitmap, 0, pages);
  else {
    const framePages = h.frameSizeBytes! / GRANULE_BYTES;
    let o = 0;
    h.frameLengths.forEach((len, k) => {
      decodePages(h.payload.subarray(o, o + len), out, h.zeroBitmap, k * framePages, Math.min((k + 1) * framePages, pages));
      o += len;
    });
  }
  const digest = sha256Hex(out);
  if (digest !== expectedDigest)
    throw new ChunkFormatError(`chunk content hashes to sha256:${digest}, its name is sha256:${expectedDigest}`);
}

/** One frame to decode: its compressed bytes at [srcOffset, srcOffset + srcLength) of the source. */
export interface FrameJob {
  frame: number;
  srcOffset: number;
  srcLength: number;
  /** sha256 hex of the frame's logical bytes (from the manifest). */
  sha256: string;
}

/**
 * Decodes frames of a version 2 chunk into their places in `out` (the whole chunk's bytes) and
 * verifies each against its hash before returning. `src` is a ranged read of one frame or the
 * whole blob. Writes only inside the listed frames' ranges. Throws ChunkFormatError on any mismatch.
 */
export function decodeFrames(src: Uint8Array, out: Uint8Array, zeroBitmap: Uint8Array, frameBytes: number, jobs: FrameJob[]): void {
  const pages = pageCount(out.length);
  const framePages = frameBytes / GRANULE_BYTES;
  for (const j of jobs) {
    if (j.srcOffset + j.srcLength > src.length)
      throw new ChunkFormatError(`frame ${j.frame} at ${j.srcOffset}+${j.srcLength} is past the ${src.length} bytes read`);
    const first = j.frame * framePages;
    if (first >= pages) throw new ChunkFormatError(`frame ${j.frame} is beyond a ${out.length}-byte chunk`);
    decodePages(src.subarray(j.srcOffset, j.srcOffset + j.srcLength), out, zeroBitmap, first, Math.min(first + framePages, pages));
    const got = sha256Hex(out.subarray(j.frame * frameBytes, Math.min((j.frame + 1) * frameBytes, out.length)));
    if (got !== j.sha256) throw new ChunkFormatError(`frame ${j.frame} hashes to sha256:${got}, the manifest says sha256:${j.sha256}`);
  }
}
