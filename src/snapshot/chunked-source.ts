// Serving a chunked snapshot. Main thread: ServedChunkedSnapshot answers each VM's chunk requests
// from the shared cache, or fetches (store), verifies and decompresses (codec threads) a chunk
// once, then posts it to the VM's worker and signals its wake eventfd. Worker: ChunkedSource
// answers the fault loop from the chunks it holds and asks for the others.
//
// A miss never holds up a hit: requests are handled as they arrive, a cached chunk is posted at
// once while a fetch for another is under way, and the fault loop serves other faults while one
// waits for its chunk.
//
// Framed chunks (manifest version 2): a fault asks for the frame it needs; that frame is read with
// a ranged get, verified and decoded first and posted as soon as it is in the chunk's buffer; the
// whole blob follows behind it and fills the other frames (FramedChunkLoad). The worker serves a
// range once every frame under it has arrived.
import { setMaxListeners } from 'node:events';
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { Logger } from 'pino';
import { native } from '../kernel/native.js';
import { FcUffdError, type ErrorCode } from '../errors.js';
import {
  CLASS_GRANULE_BYTES,
  PAGE_DATA,
  PAGE_ZERO,
  PageClassMap,
  type FetchAhead,
  type PageSource,
  type SourceSpan,
} from '../memory/source.js';
import { registerSnapshotKind, type FetchTrace, type ServedSnapshot, type VmChannel } from '../memory/snapshot.js';
import type { ChunkStore } from '../store/types.js';
import { SharedSignal, waitUnlessAborted, withSignal } from '../store/abort.js';
import { storeCause, vmFetchError } from '../store/fetch-failure.js';
import { isZeroPage, pageCount } from './chunk-format.js';
import { ChunkCache, sharedChunkCache } from './chunk-cache.js';
import { ChunkCodecPool } from './chunk-pool.js';
import { chunkLength, chunkZeroBitmap, frameOffsets, type Manifest } from './manifest.js';
import { FramedChunkLoad, type FrameTiming } from './frame-load.js';
import { fetchChunk, loadManifest, throwIfAborted, type LoadedManifest } from './pack.js';
import { Limiter } from '../store/resilient.js';
import { FETCH_CACHE, FETCH_EMPTY, FETCH_IN_FLIGHT, FETCH_STORE } from '../trace/format.js';

/** What a VM worker needs to serve from a chunked snapshot (structured-clonable). */
export interface ChunkedSnapshotRef {
  readonly kind: 'chunked';
  readonly manifestId: string;
  readonly sizeBytes: number;
  readonly chunkSizeBytes: number;
  /** Frame size of the manifest's framed chunks; 0 when it has none (version 1). */
  readonly frameSizeBytes: number;
  /** One byte per 4 KiB page, PAGE_ZERO or PAGE_DATA, from the manifest; shared by every VM. */
  readonly classMap: SharedArrayBuffer;
  /** Chunks a prefetch may ask for ahead of its cursor (aheadChunks()). */
  readonly aheadChunks: number;
}

/** Chunks a prefetch asks for ahead at most: the remote bench's guest needed its working set asked for this far ahead (prefetcher.ts). */
const AHEAD_CHUNKS_MAX = 16;
/** Of the chunk cache, what one VM's prefetch may fill ahead of its cursor: the rest stays for what other VMs use. */
const AHEAD_CACHE_SHARE = 4;
/** Bytes of chunks one VM's prefetch may have asked for ahead of its cursor, whatever the cache. */
const AHEAD_BYTES_MAX = 64 * 1024 * 1024;

/**
 * Chunks a VM's prefetch may ask for ahead of its cursor (at least one). Each is fetched, decoded,
 * cached and held by the VM until its pages are installed, so the bytes ahead stay within a
 * quarter of the cache and 64 MiB: 16 chunks of 4 MiB with the default 1 GiB cache, one of 64 MiB.
 */
export function aheadChunks(cacheCapacityBytes: number, chunkSizeBytes: number): number {
  const budgetBytes = Math.min(cacheCapacityBytes / AHEAD_CACHE_SHARE, AHEAD_BYTES_MAX);
  return Math.max(1, Math.min(AHEAD_CHUNKS_MAX, Math.floor(budgetBytes / chunkSizeBytes)));
}

/** Worker → main. */
export interface ChunkWant {
  type: 'want';
  chunk: number;
  /** Only this frame of it is needed now (the whole chunk follows anyway). */
  frame?: number;
}

/** Main → worker. */
export type ChunkReply =
  | { type: 'chunk'; chunk: number; buffer: SharedArrayBuffer; /** FETCH_* of trace/format.ts */ from: number }
  /** Frame `frame` of the chunk's buffer is verified; the rest of the buffer may still be filling. */
  | { type: 'frame'; chunk: number; frame: number; buffer: SharedArrayBuffer; from: number }
  | { type: 'error'; chunk: number; code: ErrorCode; message: string };

export interface ChunkedSnapshotOptions {
  /** A manifest id (looked up in the store) or a manifest file, or one already loaded. */
  manifest: string | LoadedManifest;
  store: ChunkStore;
  /** Default: the process-wide shared cache. */
  cache?: ChunkCache;
  /** Default: a pool of its own (closed with the snapshot). */
  pool?: ChunkCodecPool;
  /** Chunks fetched ahead of the one a VM asked for, in offset order (default 2; 0 disables). */
  prefetchChunks?: number;
  /** Whole-chunk reads at once (default 6): kept below the store's limit so a fault's frame read never queues behind them. */
  backgroundReads?: number;
  /** Stops open() (ABORTED) and aborts its manifest read. */
  signal?: AbortSignal;
  logger?: Logger;
}

export interface ChunkedServeStats {
  requests: number;
  servedFromCache: number;
  fetched: number;
  prefetched: number;
  errors: number;
  /** Frame replies posted ahead of their whole chunk. */
  framesServed: number;
}

/** A chunked snapshot in a store, served to any number of VMs. */
export class ServedChunkedSnapshot implements ServedSnapshot {
  readonly classes: PageClassMap;
  readonly stats: ChunkedServeStats = { requests: 0, servedFromCache: 0, fetched: 0, prefetched: 0, errors: 0, framesServed: 0 };
  /** Want-to-post time of frames fetched from the store (ms; the latest 10,000), for benchmarks. */
  readonly frameFetchMs: number[] = [];
  /** Frames fetched by a ranged read: where the time went (the last 10 000). */
  readonly frameTimings: FrameTiming[] = [];
  /** Store reads of this snapshot under way. */
  private readonly reads = { active: 0 };
  /** Whole-chunk reads (prefetch, the rest of a chunk behind its frame) at once; faults' frame reads bypass it. */
  private readonly backgroundGate: Limiter;
  private readonly listeners = new Map<VmChannel, (m: ChunkWant) => void>();
  private readonly detached = new Set<VmChannel>();
  /** Per VM: aborted when it detaches, so its waits for chunks end with it. */
  private readonly vmAborts = new Map<VmChannel, AbortController>();
  /** Per chunk fetch under way: its store read is aborted once no VM waits for it any more. */
  private readonly fetchSignals = new Map<string, SharedSignal>();
  private readonly closing = new AbortController();
  private prefetching = 0;
  private closed = false;

  private constructor(
    readonly loaded: LoadedManifest,
    readonly store: ChunkStore,
    readonly cache: ChunkCache,
    private readonly pool: ChunkCodecPool,
    private readonly ownPool: boolean,
    private readonly prefetchChunks: number,
    private readonly logger: Logger | undefined,
    backgroundGate: Limiter,
  ) {
    this.backgroundGate = backgroundGate;
    const m = loaded.manifest;
    this.classes = PageClassMap.forSize(m.memorySizeBytes);
    for (let i = 0; i < m.chunks.length; i++) {
      const start = i * m.chunkSizeBytes;
      const len = chunkLength(m, i);
      const bitmap = chunkZeroBitmap(m, i);
      const first = start / CLASS_GRANULE_BYTES;
      for (let p = 0; p < pageCount(len); p++) this.classes.bytes[first + p] = isZeroPage(bitmap, p) ? PAGE_ZERO : PAGE_DATA;
    }
  }

  static async open(o: ChunkedSnapshotOptions): Promise<ServedChunkedSnapshot> {
    throwIfAborted(o.signal, 'opening the snapshot');
    let loaded: LoadedManifest;
    try {
      loaded =
        typeof o.manifest === 'string' ? await loadManifest(o.manifest, o.signal ? withSignal(o.store, o.signal) : o.store) : o.manifest;
    } catch (err) {
      throwIfAborted(o.signal, 'opening the snapshot'); // the read failed because it was aborted
      throw err;
    }
    throwIfAborted(o.signal, 'opening the snapshot');
    const backgroundReads = o.backgroundReads ?? 6;
    if (!Number.isSafeInteger(backgroundReads) || backgroundReads < 1)
      throw new FcUffdError('CONFIG', `backgroundReads must be a positive integer, not ${backgroundReads}`);
    return new ServedChunkedSnapshot(
      loaded,
      o.store,
      o.cache ?? sharedChunkCache(),
      o.pool ?? new ChunkCodecPool(),
      o.pool === undefined,
      o.prefetchChunks ?? 2,
      o.logger,
      new Limiter(backgroundReads),
    );
  }

  get manifest(): Manifest {
    return this.loaded.manifest;
  }

  get id(): string {
    return this.loaded.id;
  }

  get description(): string {
    return `chunked:${this.loaded.id} in ${this.store.description}`;
  }

  /** The manifest id pins every byte (it names every chunk by digest). */
  get identity(): string {
    return `chunked:${this.loaded.id}`;
  }

  get sizeBytes(): number {
    return this.loaded.manifest.memorySizeBytes;
  }

  /** Starts the codec threads, so the first chunk a guest faults on pays no thread start-up. */
  ready(): Promise<void> {
    return this.pool.warm();
  }

  attachVm(channel: VmChannel): ChunkedSnapshotRef {
    const listener = (m: ChunkWant): void => {
      this.want(channel, m.chunk, m.frame);
    };
    this.listeners.set(channel, listener);
    const abort = new AbortController();
    // Each framed load a VM waits on listens for its end (until then): one listener per chunk and
    // frame it wanted, bounded by the snapshot's size, not a leak.
    setMaxListeners(0, abort.signal);
    this.vmAborts.set(channel, abort);
    channel.port.on('message', listener);
    const m = this.loaded.manifest;
    return {
      kind: 'chunked',
      manifestId: this.loaded.id,
      sizeBytes: m.memorySizeBytes,
      chunkSizeBytes: m.chunkSizeBytes,
      frameSizeBytes: m.frameSizeBytes ?? 0,
      classMap: this.classes.buffer,
      aheadChunks: aheadChunks(this.cache.capacityBytes, m.chunkSizeBytes),
    };
  }

  detachVm(channel: VmChannel): void {
    const l = this.listeners.get(channel);
    if (l) channel.port.off('message', l);
    this.listeners.delete(channel);
    this.detached.add(channel);
    this.vmAborts.get(channel)?.abort(new Error('the VM ended'));
    this.vmAborts.delete(channel);
  }

  /**
   * Loads chunk `i` into the cache (the fetch a want or a prefetch triggers). `signal`: the waiter
   * leaves when it fires; the store read is aborted once every waiter left (none given: the
   * snapshot's own, aborted at close).
   */
  loadChunk(i: number, signal: AbortSignal = this.closing.signal): Promise<SharedArrayBuffer> {
    const m = this.loaded.manifest;
    const e = m.chunks[i];
    const len = chunkLength(m, i);
    if (e === undefined) return Promise.reject(new FcUffdError('VM_FAULT_OUTSIDE_REGIONS', `chunk ${i} is beyond the snapshot`));
    if (e === null) return Promise.resolve(new SharedArrayBuffer(len));
    if (e.frameBytes && !this.cache.has(e.digest)) {
      const load = this.framedLoad(i);
      load.join(signal);
      return waitUnlessAborted(load.whole(), signal, `chunk ${i}`);
    }
    let shared = this.fetchSignals.get(e.digest);
    if (!shared || shared.signal.aborted) this.fetchSignals.set(e.digest, (shared = new SharedSignal()));
    shared.join(signal);
    const group = shared;
    const load = this.cache.load(e.digest, () => {
      this.stats.fetched++;
      return fetchChunk(withSignal(this.store, group.signal), this.pool, e.digest, len, `chunk ${i} of manifest ${this.loaded.id}`);
    });
    const forget = (): void => {
      if (this.fetchSignals.get(e.digest) === group) this.fetchSignals.delete(e.digest);
    };
    load.then(forget, forget);
    return waitUnlessAborted(load, signal, `chunk ${i}`);
  }

  /** The framed load of chunk `i` (shared by every VM and snapshot of this cache); starts it when new. */
  framedLoad(i: number, firstFrame?: number, signal?: AbortSignal): FramedChunkLoad {
    const m = this.loaded.manifest;
    const e = m.chunks[i]!;
    const len = chunkLength(m, i);
    const frameSize = m.frameSizeBytes!;
    return this.cache.framedLoad(
      e.digest,
      () => {
        this.stats.fetched++;
        return new FramedChunkLoad({
          store: this.store,
          pool: this.pool,
          digest: e.digest,
          lengthBytes: len,
          frameSizeBytes: frameSize,
          zeroBitmap: chunkZeroBitmap(m, i),
          offsets: frameOffsets(e, len, frameSize),
          frameSha256: e.frameSha256!,
          where: `chunk ${i} of manifest ${this.loaded.id}`,
          backgroundGate: this.backgroundGate,
          reads: this.reads,
          onFrameTiming: (t) => {
            if (this.frameTimings.length >= 10_000) this.frameTimings.shift();
            this.frameTimings.push(t);
          },
        });
      },
      firstFrame,
      signal,
    );
  }

  private reply(channel: VmChannel, msg: ChunkReply): void {
    if (this.detached.has(channel) || this.closed) return;
    channel.port.postMessage(msg);
    native.eventfdSignal(channel.wakeFd);
  }

  private want(channel: VmChannel, i: number, frame?: number): void {
    this.stats.requests++;
    const e = this.loaded.manifest.chunks[i];
    const cached = e ? this.cache.get(e.digest) : undefined;
    if (cached) {
      this.stats.servedFromCache++;
      this.reply(channel, { type: 'chunk', chunk: i, buffer: cached, from: FETCH_CACHE });
    } else if (e && e.frameBytes && frame !== undefined && frame < e.frameBytes.length) {
      // The frame first; its load's whole read (started with it) brings the rest into the cache.
      const vmSignal = this.vmAborts.get(channel)?.signal;
      const load = this.framedLoad(i, frame, vmSignal);
      const from = load.inFlight(frame) ? FETCH_IN_FLIGHT : FETCH_STORE;
      const t0 = performance.now();
      load.frame(frame, vmSignal).then(
        () => {
          this.stats.framesServed++;
          if (from === FETCH_STORE) {
            if (this.frameFetchMs.length >= 10_000) this.frameFetchMs.shift();
            this.frameFetchMs.push(performance.now() - t0);
          }
          this.reply(channel, { type: 'frame', chunk: i, frame, buffer: load.buffer, from });
        },
        (err: unknown) => this.failVm(channel, i, err, vmSignal),
      );
    } else {
      const from = e === null ? FETCH_EMPTY : e && this.cache.isLoading(e.digest) ? FETCH_IN_FLIGHT : FETCH_STORE;
      const vmSignal = this.vmAborts.get(channel)?.signal;
      const load = (): Promise<SharedArrayBuffer> => this.loadChunk(i, vmSignal);
      // A read this VM joined under way may fail for a reason older than the VM: aborted because
      // every VM waiting for it ended, or its retries spent while the store was down (a prefetch
      // that began then). Such a VM gets one read of its own before it is stopped.
      load()
        .catch((err: unknown) => {
          if (!vmSignal?.aborted && (from === FETCH_IN_FLIGHT || storeCause(err)?.kind === 'aborted')) return load();
          throw err;
        })
        .then(
          (buffer) => this.reply(channel, { type: 'chunk', chunk: i, buffer, from }),
          (err: unknown) => this.failVm(channel, i, err, vmSignal),
        );
    }
    this.prefetchAfter(i);
  }

  /** A chunk (or frame) that cannot be served stops the VM that wanted it, with the error's code. */
  private failVm(channel: VmChannel, i: number, err: unknown, vmSignal?: AbortSignal): void {
    if (vmSignal?.aborted) return; // this VM ended: nobody to tell
    this.stats.errors++;
    const e = this.loaded.manifest.chunks[i];
    const vmErr = vmFetchError(err, `chunk ${i} (sha256:${e?.digest ?? '-'}) of manifest ${this.loaded.id}`, this.store.description);
    const code: ErrorCode = vmErr.code;
    const message = vmErr.message;
    this.logger?.error({ code, chunk: i, manifest: this.loaded.id }, message);
    this.reply(channel, { type: 'error', chunk: i, code, message });
  }

  /** Warms the cache with the next data chunks (a restore touches memory mostly in order). */
  private prefetchAfter(i: number): void {
    const chunks = this.loaded.manifest.chunks;
    for (let k = i + 1, seen = 0; k < chunks.length && seen < this.prefetchChunks; k++) {
      const e = chunks[k];
      if (!e) continue;
      seen++;
      if (this.cache.has(e.digest) || this.cache.isLoading(e.digest)) continue;
      // Bounded: a demand miss must not queue behind many prefetches on the codec threads.
      if (this.prefetching >= this.prefetchChunks) return;
      this.prefetching++;
      this.stats.prefetched++;
      this.loadChunk(k)
        .catch((err: unknown) =>
          this.logger?.debug({ chunk: k, err: (err as Error).message }, 'prefetch failed (a fault on it will retry and report)'),
        )
        .finally(() => this.prefetching--);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort(new Error('the snapshot was closed'));
    if (this.ownPool) void this.pool.close();
  }
}

/**
 * A VM worker's view of a chunked snapshot: the chunks it holds, requests for the others, zero
 * pages from the shared class map. A chunk is dropped once every data page of it was handed to the
 * fault loop (each page is installed once; a page the balloon removes comes back as zeros), so a
 * long-running VM does not pin chunks the cache has evicted.
 */
export class ChunkedSource implements PageSource {
  readonly sizeBytes: number;
  readonly wakeFd: number;
  private readonly chunkSize: number;
  private readonly classes: PageClassMap;
  private readonly port: MessagePort;
  /** Views over the shared chunk buffers (the addon takes typed arrays, not a bare SharedArrayBuffer). */
  private readonly chunks: Array<Uint8Array | undefined>;
  private readonly requested: Uint8Array;
  /** Framed snapshots: frame size, and per chunk the buffer being filled frame by frame. */
  private readonly frameSize: number;
  private readonly framesPerChunk: number;
  private readonly partial: Array<Uint8Array | undefined>;
  /** Per frame (chunk * framesPerChunk + k): 1 requested, 2 arrived. */
  private readonly frameState: Uint8Array;
  /** Data pages of each chunk not handed out yet; -1: not counted yet. */
  private readonly remaining: Int32Array;
  /** One byte per 4 KiB page: handed out. */
  private readonly handed: Uint8Array;
  private failure: FcUffdError | undefined;
  /** Chunks are asked for in the order they are named, at most backgroundReads fetched at once. */
  readonly fetchAhead: FetchAhead;

  constructor(
    ref: ChunkedSnapshotRef,
    channel: VmChannel,
    private readonly trace?: FetchTrace,
  ) {
    this.sizeBytes = ref.sizeBytes;
    this.chunkSize = ref.chunkSizeBytes;
    this.classes = new PageClassMap(ref.classMap);
    this.port = channel.port;
    this.wakeFd = channel.wakeFd;
    const n = Math.ceil(ref.sizeBytes / ref.chunkSizeBytes);
    this.chunks = new Array<Uint8Array | undefined>(n);
    this.requested = new Uint8Array(n);
    this.frameSize = ref.frameSizeBytes;
    this.framesPerChunk = ref.frameSizeBytes > 0 ? ref.chunkSizeBytes / ref.frameSizeBytes : 0;
    this.partial = new Array<Uint8Array | undefined>(this.framesPerChunk ? n : 0);
    this.frameState = new Uint8Array(n * this.framesPerChunk);
    this.remaining = new Int32Array(n).fill(-1);
    this.handed = new Uint8Array(this.classes.bytes.length);
    this.fetchAhead = { unitBytes: ref.chunkSizeBytes, units: ref.aheadChunks, prepare: (off, len) => this.prepare(off, len) };
  }

  isZero(fileOffset: number, len: number): boolean {
    return this.classes.isZero(fileOffset, len);
  }

  span(fileOffset: number, len: number): SourceSpan | undefined {
    if (this.failure) throw this.failure;
    const ci = Math.floor(fileOffset / this.chunkSize);
    const chunkStart = ci * this.chunkSize;
    if (fileOffset + len > chunkStart + this.chunkSize)
      throw new FcUffdError(
        'INTERNAL',
        `a span of ${len} bytes at ${fileOffset} crosses a ${this.chunkSize}-byte chunk boundary (callers split at SPAN_BOUNDARY_BYTES)`,
      );
    let buf = this.chunks[ci];
    // Framed: the frames under the range are enough, whether or not the whole chunk was asked for.
    if (buf === undefined && this.framesPerChunk > 0) buf = this.framesHere(ci, fileOffset - chunkStart, len);
    if (buf === undefined) {
      if (this.framesPerChunk === 0) this.request(ci);
      return undefined;
    }
    this.account(ci, fileOffset, len);
    return { src: buf, srcOffset: fileOffset - chunkStart };
  }

  /** The chunk's partial buffer when every frame under [off, off + len) arrived; else asks for the missing ones. */
  private framesHere(ci: number, off: number, len: number): Uint8Array | undefined {
    const base = ci * this.framesPerChunk;
    let missing = false;
    for (let k = Math.floor(off / this.frameSize); k <= Math.floor((off + len - 1) / this.frameSize); k++) {
      const st = this.frameState[base + k]!;
      if (st === 2) continue;
      missing = true;
      if (st === 0) {
        this.frameState[base + k] = 1;
        if (!this.frameState.subarray(base, base + this.framesPerChunk).some((x, j) => x !== 0 && j !== k)) this.trace?.fetchWant(ci);
        this.port.postMessage({ type: 'want', chunk: ci, frame: k } satisfies ChunkWant);
      }
    }
    return missing ? undefined : this.partial[ci];
  }

  prepare(fileOffset: number, len: number): void {
    const last = Math.floor((fileOffset + len - 1) / this.chunkSize);
    for (let ci = Math.floor(fileOffset / this.chunkSize); ci <= last; ci++) if (this.chunks[ci] === undefined) this.request(ci);
  }

  private request(ci: number): void {
    if (this.requested[ci]) return;
    this.requested[ci] = 1;
    if (!this.partial[ci]) this.trace?.fetchWant(ci);
    this.port.postMessage({ type: 'want', chunk: ci } satisfies ChunkWant);
  }

  private account(ci: number, fileOffset: number, len: number): void {
    if (this.remaining[ci] === -1) {
      const first = (ci * this.chunkSize) / CLASS_GRANULE_BYTES;
      const end = Math.min(first + this.chunkSize / CLASS_GRANULE_BYTES, this.classes.bytes.length);
      let n = 0;
      for (let p = first; p < end; p++) if (this.classes.bytes[p] === PAGE_DATA && !this.handed[p]) n++;
      this.remaining[ci] = n;
    }
    const end = Math.ceil((fileOffset + len) / CLASS_GRANULE_BYTES);
    for (let p = fileOffset / CLASS_GRANULE_BYTES; p < end; p++) {
      if (this.handed[p]) continue;
      this.handed[p] = 1;
      if (this.classes.bytes[p] === PAGE_DATA) this.remaining[ci] = this.remaining[ci]! - 1;
    }
    if (this.remaining[ci]! <= 0) {
      // The returned span keeps the buffer alive for the copy under way; a later span (a retry
      // after EAGAIN) asks again and gets it from the cache.
      this.chunks[ci] = undefined;
      this.requested[ci] = 0;
      this.remaining[ci] = -1;
      if (this.framesPerChunk > 0) {
        this.partial[ci] = undefined;
        this.frameState.fill(0, ci * this.framesPerChunk, (ci + 1) * this.framesPerChunk);
      }
    }
  }

  onWake(): void {
    for (;;) {
      const r = receiveMessageOnPort(this.port);
      if (r === undefined) break;
      const m = r.message as ChunkReply;
      if (m.type === 'chunk') {
        this.chunks[m.chunk] = new Uint8Array(m.buffer);
        this.trace?.fetchDone(m.chunk, m.buffer.byteLength, m.from);
      } else if (m.type === 'frame') {
        this.partial[m.chunk] ??= new Uint8Array(m.buffer);
        this.frameState[m.chunk * this.framesPerChunk + m.frame] = 2;
        this.trace?.fetchDone(m.chunk, this.frameSize, m.from);
      } else this.failure ??= new FcUffdError(m.code, m.message, { chunk: m.chunk });
    }
    // A chunk that cannot be served correctly stops this VM: never serve wrong or missing memory.
    if (this.failure) throw this.failure;
  }

  close(): void {
    this.chunks.fill(undefined);
    this.partial.fill(undefined);
  }
}

registerSnapshotKind<ChunkedSnapshotRef>('chunked', (ref, channel, trace) => new ChunkedSource(ref, channel, trace));
