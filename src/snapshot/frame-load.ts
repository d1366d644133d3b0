// One framed (version 2) chunk being loaded for serving: the frame a fault needs is fetched first
// with a ranged read, verified against its hash and decoded into its place in the chunk's buffer;
// the whole blob follows behind it, and its other frames are decoded into the same buffer, each
// released to its waiters as soon as it is verified (not when the whole chunk is). Each
// frame is decoded exactly once (claimed by its ranged read or by the whole blob), so a byte a VM
// may already be copying is never written again (a frame whose ranged read failed or was aborted
// was never handed to a VM: the whole blob decodes it then).
// Cancellation: VMs join the load with their signal; a frame's ranged read is aborted once every
// VM waiting for that frame ended, the whole read once every VM that joined the load ended.
import { SharedSignal, waitUnlessAborted } from '../store/abort.js';
import type { Limiter } from '../store/resilient.js';
import type { ChunkStore, GetOptions } from '../store/types.js';
import { ChunkFormatError, decodeFrames, type FrameJob } from './chunk-format.js';
import type { ChunkCodecPool, FrameTarget } from './chunk-pool.js';
import { chunkReadError, corruptChunkError } from './pack.js';

/** Frames up to this size a fault waits for decode on the main thread (FramedChunkLoad.decodeForFault). */
export const INLINE_DECODE_MAX_BYTES = 512 * 1024;

export interface FramedChunkSpec {
  store: ChunkStore;
  pool: ChunkCodecPool;
  digest: string;
  lengthBytes: number;
  frameSizeBytes: number;
  zeroBitmap: Uint8Array;
  /** Offset of each frame in the blob, then the blob's size (frames + 1 numbers). */
  offsets: number[];
  frameSha256: string[];
  /** For errors: which chunk of which manifest. */
  where: string;
  /**
   * Whole-blob reads pass this gate, ranged frame reads do not: the store's concurrency limit is
   * first come first served, so background reads kept below it leave room for a fault's frame.
   */
  backgroundGate?: Limiter;
  /** Store reads of this snapshot under way (shared by its loads; for the fault-path breakdown). */
  reads?: { active: number };
  /** Called once per frame fetched by a ranged read: where its time went. */
  onFrameTiming?: (t: FrameTiming) => void;
}

/** One ranged frame read, from the want to the verified bytes in the buffer (ms). */
export interface FrameTiming {
  /** Store reads of the snapshot already under way when this one was asked for. */
  readsAhead: number;
  /** Want to bytes received (queueing in the store's limiter, the round trip and the transfer). */
  fetchMs: number;
  /** Bytes received to verified and decoded in place (on the main thread, or a codec thread's queue + work for a large frame). */
  decodeMs: number;
}

export class FramedChunkLoad {
  readonly buffer: SharedArrayBuffer;
  private readonly target: FrameTarget;
  /** Per frame: settles once its bytes in `buffer` are verified (undefined: nobody claimed it yet). */
  private readonly frames: Array<Promise<void> | undefined>;
  private readonly frameInterest: Array<SharedSignal | undefined>;
  private wholePromise: Promise<SharedArrayBuffer> | undefined;
  /** Aborts the whole read once every VM that joined has ended (a load nobody joined runs on). */
  private readonly interest = new SharedSignal();
  private readonly joined = new WeakSet<AbortSignal>();
  /** Ranged reads made (for tests and stats). */
  rangedReads = 0;
  private wholeFailed = false;

  constructor(private readonly s: FramedChunkSpec) {
    this.buffer = new SharedArrayBuffer(s.lengthBytes);
    this.target = { out: this.buffer, length: s.lengthBytes, zeroBitmap: s.zeroBitmap, frameBytes: s.frameSizeBytes };
    this.frames = new Array<Promise<void> | undefined>(s.frameSha256.length);
    this.frameInterest = new Array<SharedSignal | undefined>(s.frameSha256.length);
  }

  /** Every VM that joined ended: the whole read was aborted; a new want needs a new load. */
  get abandoned(): boolean {
    return this.interest.signal.aborted;
  }

  /** The whole read failed for good (after its retries): a new want needs a new load. */
  get failed(): boolean {
    return this.wholeFailed;
  }

  /** A waiter for this chunk (until `signal` fires); without a signal the load is never abandoned. */
  join(signal?: AbortSignal): void {
    if (signal && this.joined.has(signal)) return;
    if (signal) this.joined.add(signal);
    this.interest.join(signal);
  }

  get frameCount(): number {
    return this.frames.length;
  }

  /** Frame `k` is (or is being) decoded into the buffer. */
  claimed(k: number): boolean {
    return this.frames[k] !== undefined;
  }

  /**
   * Resolves once frame `k` is verified in the buffer; the first want of it starts its ranged read.
   * `signal`: this waiter leaves when it fires (an 'aborted' StoreError); the ranged read is aborted
   * once every waiter of the frame left.
   */
  frame(k: number, signal?: AbortSignal): Promise<void> {
    // An all-zero frame: the buffer's zeros are its bytes (no decode ever writes there).
    if (this.s.frameSha256[k] === '') return Promise.resolve();
    this.join(signal);
    let p = this.frames[k];
    // A ranged read every earlier waiter abandoned was aborted: this waiter starts another (if
    // the aborted one had its bytes already, both write the same verified bytes).
    if (p === undefined || this.frameInterest[k]?.signal.aborted === true) {
      const interest = new SharedSignal();
      this.frameInterest[k] = interest;
      p = this.fetchFrame(k, interest.signal);
      this.frames[k] = p;
      p.catch(() => undefined); // waiters handle it; a failed frame is not retried by this load
    }
    this.frameInterest[k]?.join(signal);
    return waitUnlessAborted(p, signal, `frame ${k} of ${this.s.where}`);
  }

  /** The whole chunk, verified frame by frame (started once; the caller caches the result). */
  whole(): Promise<SharedArrayBuffer> {
    this.wholePromise ??= this.fetchWhole();
    return this.wholePromise;
  }

  private job(k: number, srcOffset: number): FrameJob {
    return { frame: k, srcOffset, srcLength: this.s.offsets[k + 1]! - this.s.offsets[k]!, sha256: this.s.frameSha256[k]! };
  }

  /** A frame that fails verification is read once more (damage on the way), then SNAPSHOT_CORRUPT_CHUNK. */
  private async fetchFrame(k: number, signal: AbortSignal): Promise<void> {
    const s = this.s;
    const offset = s.offsets[k]!;
    const length = s.offsets[k + 1]! - offset;
    for (let attempt = 1; ; attempt++) {
      let bytes: Uint8Array;
      const t0 = performance.now();
      const readsAhead = s.reads?.active ?? 0;
      try {
        this.rangedReads++;
        bytes = await this.read({ range: { offset, length }, signal });
      } catch (err) {
        throw chunkReadError(err, s.store, s.digest, s.where);
      }
      try {
        if (bytes.length !== length) throw new ChunkFormatError(`frame ${k}: ${bytes.length} bytes read, ${length} asked for`);
        const t1 = performance.now();
        await this.decodeForFault(bytes, k);
        s.onFrameTiming?.({ readsAhead, fetchMs: t1 - t0, decodeMs: performance.now() - t1 });
        return;
      } catch (err) {
        if (!(err instanceof ChunkFormatError)) throw err;
        if (attempt >= 2) throw corruptChunkError(err, s.store, s.digest, s.where);
      }
    }
  }

  /**
   * Decodes a ranged read of frame `k`, which a fault waits for. A frame of up to
   * INLINE_DECODE_MAX_BYTES decodes here, on the main thread that received it: 0.5 ms for 256 KiB
   * of the real guest (p50; p90 0.9), where a codec thread took 3 ms from bytes to decoded with
   * the main thread idle and 11 ms while it took in bulk bodies (p50s of the remote bench's
   * on-demand rows): the hops to the thread and back wait for a CPU and for the main event loop.
   * A larger frame goes to a codec thread, so no fault stalls the main loop for milliseconds.
   */
  private async decodeForFault(bytes: Uint8Array, k: number): Promise<void> {
    const t = this.target;
    if (t.frameBytes > INLINE_DECODE_MAX_BYTES) return this.s.pool.decodeFrames(bytes, t, [this.job(k, 0)]);
    decodeFrames(bytes, new Uint8Array(t.out, 0, t.length), t.zeroBitmap, t.frameBytes, [this.job(k, 0)]);
  }

  private async fetchWhole(): Promise<SharedArrayBuffer> {
    const s = this.s;
    // Frames this whole read claims settle one by one as each is verified in the buffer (a fault
    // on one waits for its own frame, not for the whole chunk); a frame that fails waits for the
    // read's final outcome (after a retry), which decodes only the frames not verified yet.
    const mine = new Map<number, (err?: Error) => void>();
    let jobs: FrameJob[] | undefined;
    let blob: Uint8Array | undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const read = (): Promise<Uint8Array> => this.read({ signal: this.interest.signal, background: true });
          blob = await (s.backgroundGate ? s.backgroundGate.run(read) : read());
        } catch (err) {
          throw chunkReadError(err, s.store, s.digest, s.where);
        }
        if (jobs === undefined) {
          // Claim every frame nobody has claimed (empty frames are zero: nothing to decode); frames
          // a ranged read claimed are awaited below, never written twice.
          jobs = [];
          for (let k = 0; k < this.frames.length; k++) {
            if (this.frames[k] !== undefined || s.frameSha256[k] === '') continue;
            jobs.push(this.job(k, s.offsets[k]!));
            const { promise, settle } = settleable();
            mine.set(k, settle);
            this.frames[k] = promise;
            this.frameInterest[k] = undefined;
          }
        }
        try {
          if (blob.length !== s.offsets[s.offsets.length - 1])
            throw new ChunkFormatError(`blob of ${blob.length} bytes, the manifest says ${s.offsets[s.offsets.length - 1]}`);
          const left = jobs.filter((j) => mine.has(j.frame));
          if (left.length)
            await s.pool.decodeFramesInBackground(blob, this.target, left, (k) => {
              mine.get(k)?.();
              mine.delete(k);
            });
          break;
        } catch (err) {
          if (!(err instanceof ChunkFormatError)) throw err;
          if (attempt >= 2) throw corruptChunkError(err, s.store, s.digest, s.where);
        }
      }
    } catch (err) {
      this.wholeFailed = true;
      for (const settle of mine.values()) settle(err as Error);
      throw err;
    }
    const claimed = new Set(jobs.map((j) => this.frames[j.frame]));
    // A frame whose ranged read failed (or was aborted) was never handed out: decode it from the blob.
    const { promise: late, settle: settleLate } = settleable();
    const failed: FrameJob[] = [];
    for (let k = 0; k < this.frames.length; k++) {
      for (;;) {
        const p = this.frames[k];
        if (
          p === undefined ||
          claimed.has(p) ||
          p === late ||
          (await p.then(
            () => true,
            () => false,
          ))
        )
          break;
        if (this.frames[k] !== p) continue; // a new waiter started another ranged read meanwhile
        failed.push(this.job(k, s.offsets[k]!));
        this.frames[k] = late;
        this.frameInterest[k] = undefined;
        break;
      }
    }
    try {
      if (failed.length) await s.pool.decodeFrames(blob, this.target, failed);
      settleLate();
    } catch (err) {
      const e = err instanceof ChunkFormatError ? corruptChunkError(err, s.store, s.digest, s.where) : (err as Error);
      settleLate(e);
      throw e;
    }
    return this.buffer;
  }

  private async read(options: GetOptions & { signal: AbortSignal }): Promise<Uint8Array> {
    const reads = this.s.reads;
    if (reads) reads.active++;
    try {
      return await this.s.store.getChunk(this.s.digest, options);
    } finally {
      if (reads) reads.active--;
    }
  }
}

/**
 * A promise for a frame's waiters and the function that settles it (an error rejects it). Marked
 * handled: a frame nobody waits for may fail without an unhandled rejection.
 */
function settleable(): { promise: Promise<void>; settle: (err?: Error) => void } {
  let settle!: (err?: Error) => void;
  const promise = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
  promise.catch(() => undefined);
  return { promise, settle };
}
