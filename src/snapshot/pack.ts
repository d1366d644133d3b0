// pack: a memory file (full, or a Firecracker diff layered on a base manifest) into chunks in a
// store plus a manifest; unpack: a manifest back into a memory file.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { SEEK_DATA, SEEK_HOLE } from '../kernel/constants.js';
import { ERRNO } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { writeFileAtomicAsync } from '../atomic-write.js';
import { FcUffdError } from '../errors.js';
import { IntervalSet } from '../memory/intervals.js';
import { withSignal } from '../store/abort.js';
import { StoreError, type ChunkStore } from '../store/types.js';
import {
  BLOB_VERSION_FRAMED,
  ChunkFormatError,
  DEFAULT_FRAME_BYTES,
  DEFAULT_ZSTD_LEVEL,
  frameCount,
  framedHeaderBytes,
  GRANULE_BYTES,
  isValidFrameSize,
  isZeroPage,
  pageCount,
  parseBlobHeader,
} from './chunk-format.js';
import { ChunkCodecPool } from './chunk-pool.js';
import {
  chunkCount,
  chunkLength,
  chunkZeroBitmap,
  DEFAULT_CHUNK_BYTES,
  encodeManifest,
  isValidChunkSize,
  manifestId,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  parseManifest,
  type ChunkEntry,
  type Manifest,
} from './manifest.js';

export interface LoadedManifest {
  id: string;
  manifest: Manifest;
}

const HEX_ID = /^(?:sha256:)?([0-9a-f]{64})$/;
/** A unique prefix of an id, as git takes one: at least 6 hex digits. */
const SHORT_ID = /^(?:sha256:)?([0-9a-f]{6,63})$/;

async function resolveShortId(prefix: string, store: ChunkStore | undefined): Promise<string> {
  if (!store) throw new FcUffdError('CONFIG', `manifest ${prefix} is named by id: say which store holds it (--store)`);
  if (!store.manifestIdsWithPrefix)
    throw new FcUffdError('CONFIG_INVALID', `${store.description} cannot look up short ids: give the full 64-digit manifest id`);
  const ids = await store.manifestIdsWithPrefix(prefix);
  if (ids.length === 0)
    throw new FcUffdError('SNAPSHOT_MANIFEST_MISSING', `no manifest id in ${store.description} starts with ${prefix}`, { prefix });
  if (ids.length > 1)
    throw new FcUffdError('CONFIG_INVALID', `${prefix} is ambiguous in ${store.description}: ${ids.join(', ')}; give more digits`);
  return ids[0]!;
}

/**
 * Loads a manifest named by its id (looked up in `store`, verified against the id) or by the path
 * of a manifest file.
 */
export async function loadManifest(ref: string, store?: ChunkStore): Promise<LoadedManifest> {
  const short = SHORT_ID.exec(ref);
  if (short && !fs.existsSync(ref)) ref = await resolveShortId(short[1]!, store);
  const m = HEX_ID.exec(ref);
  if (m && !fs.existsSync(ref)) {
    const id = m[1]!;
    if (!store) throw new FcUffdError('CONFIG', `manifest ${id} is named by id: say which store holds it (--store)`);
    let bytes: Uint8Array;
    try {
      bytes = await store.getManifest(id);
    } catch (err) {
      if (err instanceof StoreError && err.kind === 'not-found')
        throw new FcUffdError('SNAPSHOT_MANIFEST_MISSING', `manifest ${id} is not in ${store.description}`, { id });
      throw new FcUffdError('SNAPSHOT_STORE', `cannot read manifest ${id} from ${store.description}: ${(err as Error).message}`, { id });
    }
    return parseManifest(bytes, id);
  }
  let bytes: Uint8Array;
  try {
    bytes = await fsp.readFile(ref);
  } catch (err) {
    throw new FcUffdError('SNAPSHOT_MANIFEST_MISSING', `cannot read manifest file ${ref}: ${(err as Error).message}`);
  }
  return parseManifest(bytes);
}

/** Parses a ranges file: lines `<start> <end>` (file offsets, end exclusive; # comments), or a JSON array of pairs. */
export function parseRanges(text: string, source = 'ranges'): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const check = (s: unknown, e: unknown, where: string): void => {
    if (typeof s !== 'number' || typeof e !== 'number' || !Number.isSafeInteger(s) || !Number.isSafeInteger(e) || s < 0 || e <= s)
      throw new FcUffdError('CONFIG', `${source}${where}: not a range <start> <end> with 0 <= start < end`);
    out.push([s, e]);
  };
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    let arr: unknown;
    try {
      arr = JSON.parse(trimmed);
    } catch (err) {
      throw new FcUffdError('CONFIG', `${source}: not valid JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(arr)) throw new FcUffdError('CONFIG', `${source}: not an array of [start, end] pairs`);
    arr.forEach((r: unknown, i) => (Array.isArray(r) ? check(r[0], r[1], ` entry ${i}`) : check(undefined, undefined, ` entry ${i}`)));
    return out;
  }
  text.split('\n').forEach((line, i) => {
    const l = line.replace(/#.*/, '').trim();
    if (!l) return;
    const parts = l.split(/\s+/);
    if (parts.length !== 2 || !parts.every((p) => /^\d+$/.test(p))) check(undefined, undefined, ` line ${i + 1}`);
    check(Number(parts[0]), Number(parts[1]), ` line ${i + 1}`);
  });
  return out;
}

/** Data extents of a file (SEEK_DATA/SEEK_HOLE); the whole file when the filesystem cannot tell. */
function dataExtents(fd: number, size: number): IntervalSet {
  const set = new IntervalSet();
  let offset = 0;
  while (offset < size) {
    const data = native.lseek(fd, offset, SEEK_DATA);
    if (data === -ERRNO.ENXIO) break;
    if (data < 0) {
      set.add(offset, size);
      break;
    }
    const hole = native.lseek(fd, data, SEEK_HOLE);
    const end = hole < 0 ? size : Math.min(hole, size);
    set.add(data, end);
    offset = end;
  }
  return set;
}

export interface PackOptions {
  memPath: string;
  store: ChunkStore;
  /** Reuse this manifest's chunks (and its chunk size). */
  base?: LoadedManifest;
  /** The memory file is a Firecracker diff snapshot: its holes keep the base's bytes (needs `base`). */
  diff?: boolean;
  /** File offsets whose pages need not be kept (balloon-removed): stored as zero pages. */
  removed?: Array<[number, number]>;
  chunkSizeBytes?: number;
  /** Bytes of a chunk each independent zstd frame holds (default DEFAULT_FRAME_BYTES). */
  frameSizeBytes?: number;
  zstdLevel?: number;
  /** Uploads (hasChunk + putChunk) in flight at once (default 8); encoding goes on meanwhile. */
  maxUploads?: number;
  pool?: ChunkCodecPool;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Stops the pack (ABORTED): no more chunks read, store requests aborted, no manifest written. */
  signal?: AbortSignal;
}

export interface PackResult {
  id: string;
  manifest: Manifest;
  manifestBytes: Uint8Array;
  chunks: number;
  /** Chunks whose blob was written to the store by this pack. */
  newChunks: number;
  /** Chunks the store had already (the base's or any other snapshot's). */
  reusedChunks: number;
  zeroChunks: number;
  zeroPages: number;
  pages: number;
  /** Bytes of non-zero pages in the new chunks, and their blobs' bytes. */
  newDataBytes: number;
  newStoredBytes: number;
  /** Blob bytes of all chunks the manifest references (distinct). */
  totalStoredBytes: number;
  memorySizeBytes: number;
  durationMs: number;
}

async function readFull(fd: number, buf: Uint8Array, offset: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const n = await new Promise<number>((resolve, reject) =>
      fs.read(fd, buf, done, buf.length - done, offset + done, (err, bytes) => (err ? reject(err) : resolve(bytes))),
    );
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** The pieces of sorted, disjoint `ranges` inside [start, end). */
function clip(ranges: Array<[number, number]>, start: number, end: number): Array<[number, number]> {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges[mid]![1] <= start) lo = mid + 1;
    else hi = mid;
  }
  const out: Array<[number, number]> = [];
  for (let i = lo; i < ranges.length && ranges[i]![0] < end; i++) out.push([Math.max(start, ranges[i]![0]), Math.min(end, ranges[i]![1])]);
  return out;
}

function popcountBitmap(bitmap: Uint8Array, pages: number): number {
  let n = 0;
  for (let p = 0; p < pages; p++) if (isZeroPage(bitmap, p)) n++;
  return n;
}

/** The snapshot error for a failed read of a chunk (or a range of it) from a store. */
export function chunkReadError(err: unknown, store: ChunkStore, digest: string, where: string): FcUffdError {
  if (err instanceof StoreError && err.kind === 'not-found')
    return new FcUffdError('SNAPSHOT_MISSING_CHUNK', `chunk sha256:${digest} (${where}) is missing from ${store.description}`, { digest });
  return new FcUffdError(
    'SNAPSHOT_STORE',
    `cannot read chunk sha256:${digest} (${where}) from ${store.description}: ${(err as Error).message}`,
    { digest, cause: err },
  );
}

export function corruptChunkError(err: ChunkFormatError, store: ChunkStore, digest: string, where: string): FcUffdError {
  return new FcUffdError('SNAPSHOT_CORRUPT_CHUNK', `chunk sha256:${digest} (${where}) in ${store.description} is corrupt: ${err.message}`, {
    digest,
  });
}

/**
 * Fetches, verifies and decodes one chunk of a manifest into `out` (a fresh SharedArrayBuffer by
 * default). A blob that fails verification is fetched once more (bytes damaged on the way may
 * arrive whole), then SNAPSHOT_CORRUPT_CHUNK.
 */
export async function fetchChunk(
  store: ChunkStore,
  pool: ChunkCodecPool,
  digest: string,
  length: number,
  where: string,
): Promise<SharedArrayBuffer> {
  for (let attempt = 1; ; attempt++) {
    let blob: Uint8Array;
    try {
      blob = await store.getChunk(digest);
    } catch (err) {
      throw chunkReadError(err, store, digest, where);
    }
    const out = new SharedArrayBuffer(length);
    try {
      await pool.decode(blob, digest, out, length);
      return out;
    } catch (err) {
      if (!(err instanceof ChunkFormatError)) throw err;
      if (attempt >= 2) throw corruptChunkError(err, store, digest, where);
    }
  }
}

/**
 * The manifest entry for a chunk the store already holds. Its blob may be another version or frame
 * size than this pack makes (packed by an older fc-uffd, or with another --frame-size): the entry
 * must describe the stored bytes. One ranged read of the header and frame table in the usual case
 * (a framed blob of this frame size); otherwise the whole blob, listed without frames (served whole).
 */
async function storedEntry(
  store: ChunkStore,
  digest: string,
  len: number,
  frameBytes: number,
  ours: NonNullable<ChunkEntry>,
): Promise<NonNullable<ChunkEntry>> {
  const base: NonNullable<ChunkEntry> = { digest, storedBytes: 0, ...(ours.zeroPages ? { zeroPages: ours.zeroPages } : {}) };
  if (frameBytes > 0 && ours.frameSha256) {
    const headLen = framedHeaderBytes(len, frameBytes);
    let head: Uint8Array | undefined;
    try {
      head = await store.getChunk(digest, { range: { offset: 0, length: headLen } });
    } catch {
      head = undefined; // a short (version 1) blob: read it whole below
    }
    if (head && head.length === headLen && head[4] === BLOB_VERSION_FRAMED) {
      const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
      const n = frameCount(len, frameBytes);
      if (v.getUint32(24, true) === frameBytes && v.getUint32(28, true) === n) {
        const table = headLen - 4 * n;
        const lengths = Array.from({ length: n }, (_, k) => v.getUint32(table + 4 * k, true));
        if (lengths.every((b, k) => b > 0 === (ours.frameSha256![k] !== '')))
          return { ...base, storedBytes: headLen + lengths.reduce((a, b) => a + b, 0), frameBytes: lengths, frameSha256: ours.frameSha256 };
      }
    }
  }
  let blob: Uint8Array;
  try {
    blob = await store.getChunk(digest);
  } catch (err) {
    throw chunkReadError(err, store, digest, 'stored already');
  }
  try {
    parseBlobHeader(blob);
  } catch (err) {
    throw new FcUffdError(
      'SNAPSHOT_CORRUPT_CHUNK',
      `chunk sha256:${digest} in ${store.description} is damaged (${(err as Error).message}): remove it and pack again`,
      { digest },
    );
  }
  return { ...base, storedBytes: blob.length };
}

export async function pack(options: PackOptions): Promise<PackResult> {
  const t0 = performance.now();
  const signal = options.signal;
  throwIfAborted(signal, 'pack');
  const o: PackOptions = signal ? { ...options, store: withSignal(options.store, signal) } : options;
  if (o.diff && !o.base) throw new FcUffdError('CONFIG', 'a diff snapshot can only be packed onto a base (--base)');
  let fd: number;
  try {
    fd = fs.openSync(o.memPath, 'r');
  } catch (err) {
    throw new FcUffdError('SNAPSHOT_OPEN', `cannot open memory file ${o.memPath}: ${(err as Error).message}`);
  }
  const ownPool = o.pool === undefined;
  const pool = o.pool ?? new ChunkCodecPool();
  try {
    const size = fs.fstatSync(fd).size;
    if (size === 0) throw new FcUffdError('SNAPSHOT_EMPTY', `memory file ${o.memPath} is empty`);
    const base = o.base?.manifest;
    const chunkSize = o.chunkSizeBytes ?? base?.chunkSizeBytes ?? DEFAULT_CHUNK_BYTES;
    if (!isValidChunkSize(chunkSize))
      throw new FcUffdError('CONFIG', `chunk size ${chunkSize} is not a power of two between 2 MiB and 1 GiB`);
    if (o.diff && base) {
      if (base.memorySizeBytes !== size)
        throw new FcUffdError(
          'CONFIG',
          `diff snapshot ${o.memPath} has ${size} bytes, its base ${base.memorySizeBytes}: not a diff of that base`,
        );
      if (base.chunkSizeBytes !== chunkSize)
        throw new FcUffdError('CONFIG', `a diff is packed in its base's chunk size (${base.chunkSizeBytes})`);
    }
    const level = o.zstdLevel ?? DEFAULT_ZSTD_LEVEL;
    const frameBytes = o.frameSizeBytes ?? Math.min(DEFAULT_FRAME_BYTES, chunkSize);
    if (!isValidFrameSize(frameBytes, chunkSize))
      throw new FcUffdError('CONFIG', `frame size ${frameBytes} is not a power of two between 64 KiB and the chunk size (${chunkSize})`);
    // One entry per distinct digest: the base's (its blobs are in the store), then each new one once
    // its upload (or the check that the store has it) is done.
    const entryOf = new Map<string, Promise<NonNullable<ChunkEntry>>>();
    if (base)
      for (const c of base.chunks)
        if (c && !entryOf.has(c.digest)) {
          // A base of another frame size: its blobs are listed without frames (served whole).
          const keep = c.frameBytes && base.frameSizeBytes === frameBytes;
          const { frameBytes: fb, frameSha256: fh, ...whole } = c;
          entryOf.set(c.digest, Promise.resolve(keep ? { ...whole, frameBytes: fb, frameSha256: fh } : whole));
        }
    // Chunks of the base need not be compressed again: the store has them.
    await pool.setKnown(entryOf.keys());
    const maxUploads = o.maxUploads ?? 8;
    const uploads = new Set<Promise<unknown>>();
    let uploadError: Error | undefined;

    const extents = dataExtents(fd, size);
    const removed = new IntervalSet();
    for (const [s, e] of o.removed ?? []) {
      // Only whole pages are dropped: a partly removed page keeps its bytes.
      const first = Math.ceil(s / GRANULE_BYTES) * GRANULE_BYTES;
      const last = Math.min(size, Math.floor(e / GRANULE_BYTES) * GRANULE_BYTES);
      if (last > first) removed.add(first, last);
    }

    const extentList = extents.toArray();
    const removedList = removed.toArray();
    const n = chunkCount(size, chunkSize);
    const entries: ChunkEntry[] = new Array<ChunkEntry>(n).fill(null);
    const r = { newChunks: 0, reusedChunks: 0, zeroChunks: 0, zeroPages: 0, newDataBytes: 0, newStoredBytes: 0 };
    const free: ArrayBuffer[] = [];
    const entryWaits: Array<Promise<void>> = [];
    let done = 0;

    const processChunk = async (i: number): Promise<void> => {
      const start = i * chunkSize;
      const len = chunkLength({ memorySizeBytes: size, chunkSizeBytes: chunkSize }, i);
      const hasData = extents.intersects(start, start + len);
      const hasRemoved = removed.rangeCount > 0 && removed.intersects(start, start + len);
      const pages = pageCount(len);
      if (o.diff && base && !hasData && !hasRemoved) {
        // Not dirtied since the base: the base's chunk as it is.
        const e = base.chunks[i] as ChunkEntry;
        entries[i] = e;
        if (e === null) {
          r.zeroChunks++;
          r.zeroPages += pages;
        } else {
          r.reusedChunks++;
          r.zeroPages += popcountBitmap(chunkZeroBitmap(base, i), pages);
        }
        return;
      }
      if (!hasData && !o.diff) {
        entries[i] = null;
        r.zeroChunks++;
        r.zeroPages += pages;
        return;
      }
      const buffer = free.pop() ?? new ArrayBuffer(chunkSize);
      const bytes = new Uint8Array(buffer, 0, len);
      if (o.diff && base) {
        const be = base.chunks[i];
        if (be) bytes.set(new Uint8Array(await fetchChunk(o.store, pool, be.digest, len, `chunk ${i} of base ${o.base!.id}`)));
        else bytes.fill(0);
        // Overlay the dirty extents.
        for (const [a, b] of clip(extentList, start, start + len)) await readFull(fd, bytes.subarray(a - start, b - start), a);
      } else {
        const got = await readFull(fd, bytes, start);
        if (got < len) bytes.fill(0, got);
      }
      if (hasRemoved) for (const [a, b] of clip(removedList, start, start + len)) bytes.fill(0, a - start, b - start);
      const res = await pool.encode(buffer, len, level, frameBytes);
      free.push(res.buffer);
      if (res.allZero) {
        entries[i] = null;
        r.zeroChunks++;
        r.zeroPages += pages;
        return;
      }
      r.zeroPages += res.zeroPages;
      const known = entryOf.get(res.digest);
      if (known !== undefined) {
        r.reusedChunks++;
        entryWaits.push(known.then((e) => void (entries[i] = e)));
        return;
      }
      const blob = res.blob;
      if (!blob) throw new Error(`internal: no blob for chunk ${i}`);
      const entry: NonNullable<ChunkEntry> = { digest: res.digest, storedBytes: blob.length };
      if (res.zeroPages > 0) entry.zeroPages = Buffer.from(res.zeroBitmap).toString('base64');
      if (res.frames) Object.assign(entry, res.frames);
      const digest = res.digest;
      // Streaming: the upload goes on while the next chunks are read and encoded; at most
      // maxUploads at once (and so at most that many blobs held).
      while (uploads.size >= maxUploads) await Promise.race(uploads);
      if (uploadError !== undefined) return;
      const upload = (async (): Promise<NonNullable<ChunkEntry>> => {
        if (await o.store.hasChunk(digest)) {
          r.reusedChunks++;
          return storedEntry(o.store, digest, len, res.frames ? frameBytes : 0, entry);
        }
        await o.store.putChunk(digest, blob);
        r.newChunks++;
        r.newDataBytes += len - res.zeroPages * GRANULE_BYTES;
        r.newStoredBytes += blob.length;
        return entry;
      })();
      entryOf.set(digest, upload);
      const tracked: Promise<unknown> = upload
        .then(
          (e) => void (entries[i] = e),
          (err: unknown) => void (uploadError ??= err instanceof Error ? err : new Error(String(err))),
        )
        .finally(() => uploads.delete(tracked));
      uploads.add(tracked);
    };

    // A window of chunks in flight: reads overlap the codec threads' work.
    const window = pool.threads + 2;
    let next = 0;
    const lanes = Array.from({ length: Math.min(window, n) }, async () => {
      while (next < n && uploadError === undefined) {
        throwIfAborted(signal, 'pack');
        const i = next++;
        await processChunk(i);
        done += chunkLength({ memorySizeBytes: size, chunkSizeBytes: chunkSize }, i);
        o.onProgress?.(done, size);
      }
    });
    try {
      await Promise.all(lanes);
    } finally {
      // Never leave an upload running behind a failed pack (the caller may close the store).
      await Promise.allSettled(uploads);
    }
    if (uploadError !== undefined) throw uploadError;
    await Promise.all(entryWaits);

    // The manifest last: a reader never sees a manifest whose chunks are not all in the store. A
    // pack interrupted before this leaves whole chunks and no manifest; running it again finds
    // them (hasChunk) and uploads only the rest.
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      memorySizeBytes: size,
      chunkSizeBytes: chunkSize,
      pageSizeBytes: GRANULE_BYTES,
      frameSizeBytes: frameBytes,
      digestAlgorithm: 'sha256',
      compression: { algorithm: 'zstd', level },
      base: o.base?.id ?? null,
      chunks: entries,
    };
    const manifestBytes = encodeManifest(manifest);
    const id = manifestId(manifestBytes);
    throwIfAborted(signal, 'pack');
    await o.store.putManifest(id, manifestBytes);
    const distinct = new Map<string, number>();
    for (const e of entries) if (e) distinct.set(e.digest, e.storedBytes);
    let totalStoredBytes = 0;
    for (const v of distinct.values()) totalStoredBytes += v;
    return {
      id,
      manifest,
      manifestBytes,
      chunks: n,
      ...r,
      pages: pageCount(size),
      totalStoredBytes,
      memorySizeBytes: size,
      durationMs: performance.now() - t0,
    };
  } finally {
    fs.closeSync(fd);
    if (ownPool) await pool.close();
  }
}

export interface UnpackOptions {
  loaded: LoadedManifest;
  store: ChunkStore;
  outPath: string;
  pool?: ChunkCodecPool;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Stops the unpack (ABORTED): store requests aborted, no output file left behind. */
  signal?: AbortSignal;
}

export interface UnpackResult {
  memorySizeBytes: number;
  chunksFetched: number;
  /** Bytes of blobs read and of data pages written. */
  storedBytesRead: number;
  dataBytesWritten: number;
  durationMs: number;
}

/**
 * Writes the memory a manifest describes to `outPath` (via a temporary file renamed into place).
 * Zero pages and zero chunks are left as holes. Every chunk is verified before it is written.
 */
export async function unpack(options: UnpackOptions): Promise<UnpackResult> {
  const t0 = performance.now();
  const signal = options.signal;
  throwIfAborted(signal, 'unpack');
  const o: UnpackOptions = signal ? { ...options, store: withSignal(options.store, signal) } : options;
  const m = o.loaded.manifest;
  const ownPool = o.pool === undefined;
  const pool = o.pool ?? new ChunkCodecPool();
  const res = { chunksFetched: 0, storedBytesRead: 0, dataBytesWritten: 0 };
  try {
    // Not fsynced: a memory file is made again by unpacking again, and an fsync of gigabytes would
    // hold the command up for nothing the caller asked for.
    await writeFileAtomicAsync(o.outPath, { durable: false }, async (fh) => {
      await fh.truncate(m.memorySizeBytes);
      const n = m.chunks.length;
      let next = 0;
      let done = 0;
      const lanes = Array.from({ length: Math.min(pool.threads + 2, n) }, async () => {
        while (next < n) {
          throwIfAborted(signal, 'unpack');
          const i = next++;
          const e = m.chunks[i] as ChunkEntry;
          const len = chunkLength(m, i);
          if (e) {
            const sab = await fetchChunk(o.store, pool, e.digest, len, `chunk ${i} of manifest ${o.loaded.id}`);
            res.chunksFetched++;
            res.storedBytesRead += e.storedBytes;
            const bytes = new Uint8Array(sab);
            const bitmap = chunkZeroBitmap(m, i);
            const pages = pageCount(len);
            // Write runs of data pages; zero pages stay holes.
            for (let p = 0; p < pages;) {
              if (isZeroPage(bitmap, p)) {
                p++;
                continue;
              }
              let q = p;
              while (q < pages && !isZeroPage(bitmap, q)) q++;
              const a = p * GRANULE_BYTES;
              const b = Math.min(q * GRANULE_BYTES, len);
              // fs writes cannot take a SharedArrayBuffer view: copy the run out.
              const run = Buffer.from(bytes.subarray(a, b));
              await fh.write(run, 0, run.length, i * m.chunkSizeBytes + a);
              res.dataBytesWritten += b - a;
              p = q;
            }
          }
          done += len;
          o.onProgress?.(done, m.memorySizeBytes);
        }
      });
      await Promise.all(lanes);
      throwIfAborted(signal, 'unpack');
    });
  } finally {
    if (ownPool) await pool.close();
  }
  return { memorySizeBytes: m.memorySizeBytes, ...res, durationMs: performance.now() - t0 };
}

/** ABORTED when `signal` fired (a store read it cut short fails with the store's own 'aborted' error). */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted)
    throw new FcUffdError('ABORTED', `${what} aborted: ${signal.reason instanceof Error ? signal.reason.message : String(signal.reason)}`);
}
