// One framed (version 2) chunk being loaded for serving: the frame a fault needs is fetched first
// with a ranged read, verified against its hash and decoded into its place in the chunk's buffer;
// the whole blob follows behind it, and its other frames are decoded into the same buffer, each
// released to its waiters as soon as it is verified (not when the whole chunk is). Each frame is
// decoded exactly once, by whichever of its bytes arrive first (its ranged read's or the whole
// blob's: the one that claims it), so a byte a VM may already be copying is never written again
// (a frame whose ranged read failed or was aborted was never handed to a VM: the whole blob
// decodes it then). A frame the whole blob claims while its ranged read is under way is served
// from the blob and its ranged read aborted: on a 20 ms link, a fault that came a few ms before
// the whole blob waited a round trip for its own frame (FramedChunkLoad.claimInWhole).
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
  /** Per frame: its waiters' slot (undefined: nobody wanted it and the whole blob has not claimed it). */
  private readonly slots: Array<FrameSlot | undefined>;
  /** Per frame: 1 once a decode of it into `buffer` has begun (by its ranged read or the whole blob). */
  private readonly claims: Uint8Array;
  /** Per frame: the decode of a ranged read's bytes while it is under way. */
  private readonly rangedDecodes: Array<Promise<void> | undefined>;
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
    this.slots = new Array<FrameSlot | undefined>(s.frameSha256.length);
    this.claims = new Uint8Array(s.frameSha256.length);
    this.rangedDecodes = new Array<Promise<void> | undefined>(s.frameSha256.length);
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
    return this.slots.length;
  }

  /** Frame `k` is on its way (a ranged read or the whole blob brings it) or in the buffer. */
  inFlight(k: number): boolean {
    return this.slots[k] !== undefined;
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
    let slot = this.slots[k];
    // A ranged read every earlier waiter abandoned was aborted: this waiter starts another (if
    // the aborted one had its bytes already, it claimed and decoded the frame, and this one's
    // bytes are dropped).
    if (slot === undefined || (slot.read?.interest.signal.aborted === true && this.claims[k] === 0)) {
      slot = newSlot();
      slot.read = { interest: new SharedSignal(), cancel: new AbortController() };
      this.slots[k] = slot;
      void this.readFrame(k, slot);
    }
    slot.read?.interest.join(signal);
    return waitUnlessAborted(slot.verified, signal, `frame ${k} of ${this.s.where}`);
  }

  /** The whole chunk, verified frame by frame (started once; the caller caches the result). */
  whole(): Promise<SharedArrayBuffer> {
    this.wholePromise ??= this.fetchWhole();
    return this.wholePromise;
  }

  private job(k: number, srcOffset: number): FrameJob {
    return { frame: k, srcOffset, srcLength: this.s.offsets[k + 1]! - this.s.offsets[k]!, sha256: this.s.frameSha256[k]! };
  }

  /**
   * Frame `k`'s ranged read for `slot`'s waiters, which it settles unless the whole blob claims the
   * frame first (that decode settles them then). A frame that fails verification is read once
   * more (damage on the way), then SNAPSHOT_CORRUPT_CHUNK.
   */
  private async readFrame(k: number, slot: FrameSlot): Promise<void> {
    const s = this.s;
    const read = slot.read!;
    const offset = s.offsets[k]!;
    const length = s.offsets[k + 1]! - offset;
    const signal = AbortSignal.any([read.interest.signal, read.cancel.signal]);
    for (let attempt = 1; ; attempt++) {
      let bytes: Uint8Array;
      const t0 = performance.now();
      const readsAhead = s.reads?.active ?? 0;
      try {
        this.rangedReads++;
        bytes = await this.read({ range: { offset, length }, signal });
      } catch (err) {
        await this.otherRangedDecode(k);
        if (this.claims[k] === 0) settleOnce(slot, chunkReadError(err, s.store, s.digest, s.where));
        return;
      }
      await this.otherRangedDecode(k);
      if (this.claims[k] === 1) return; // the whole blob (or an earlier read) decoded it: that settles the waiters
      this.claims[k] = 1;
      const t1 = performance.now();
      const decode = this.decodeForFault(bytes, k, length);
      this.rangedDecodes[k] = decode;
      try {
        await decode;
        s.onFrameTiming?.({ readsAhead, fetchMs: t1 - t0, decodeMs: performance.now() - t1 });
        settleOnce(slot);
        // Waiters of a later read (this one's waiters had all left when its bytes came): released too.
        const current = this.slots[k]!;
        current.read?.cancel.abort(new Error('an earlier read brought this frame'));
        settleOnce(current);
        return;
      } catch (err) {
        this.claims[k] = 0; // nothing of it was handed out: another read (or the whole blob) decodes it
        if (!(err instanceof ChunkFormatError)) {
          settleOnce(slot, err as Error);
          return;
        }
        if (attempt >= 2) {
          settleOnce(slot, corruptChunkError(err, s.store, s.digest, s.where));
          return;
        }
      } finally {
        this.rangedDecodes[k] = undefined;
      }
    }
  }

  /** Resolves once no other ranged read's decode of frame `k` is under way (one may fail and leave it unclaimed). */
  private async otherRangedDecode(k: number): Promise<void> {
    for (let d = this.rangedDecodes[k]; d !== undefined; d = this.rangedDecodes[k]) await d.catch(() => undefined);
  }

  /**
   * Decodes a ranged read of frame `k`, which a fault waits for. A frame of up to
   * INLINE_DECODE_MAX_BYTES decodes here, on the main thread that received it: 0.5 ms for 256 KiB
   * of the real guest (p50; p90 0.9), where a codec thread took 3 ms from bytes to decoded with
   * the main thread idle and 11 ms while it took in bulk bodies (p50s of the remote bench's
   * on-demand rows): the hops to the thread and back wait for a CPU and for the main event loop.
   * A larger frame goes to a codec thread, so no fault stalls the main loop for milliseconds.
   */
  private async decodeForFault(bytes: Uint8Array, k: number, length: number): Promise<void> {
    if (bytes.length !== length) throw new ChunkFormatError(`frame ${k}: ${bytes.length} bytes read, ${length} asked for`);
    const t = this.target;
    if (t.frameBytes > INLINE_DECODE_MAX_BYTES) return this.s.pool.decodeFrames(bytes, t, [this.job(k, 0)]);
    decodeFrames(bytes, new Uint8Array(t.out, 0, t.length), t.zeroBitmap, t.frameBytes, [this.job(k, 0)]);
  }

  /**
   * Claims, for the whole blob just read, frame `k` if no decode of it has begun: its waiters (if
   * a ranged read of it is under way) are then settled by the blob's decode, and that read is
   * aborted (should the blob fail to verify twice, they get its error). Returns the frame's slot,
   * or undefined when the frame was claimed already or is all zeros.
   */
  private claimInWhole(k: number): FrameSlot | undefined {
    if (this.claims[k] === 1 || this.s.frameSha256[k] === '') return undefined;
    this.claims[k] = 1;
    let slot = this.slots[k];
    if (slot === undefined || slot.settled) {
      slot = newSlot();
      this.slots[k] = slot;
    }
    slot.read?.cancel.abort(new Error('the whole chunk brought this frame first'));
    return slot;
  }

  private async fetchWhole(): Promise<SharedArrayBuffer> {
    const s = this.s;
    // Frames this whole read claims settle one by one as each is verified in the buffer (a fault
    // on one waits for its own frame, not for the whole chunk); a frame that fails waits for the
    // read's final outcome (after a retry), which decodes only the frames not verified yet.
    const mine = new Map<number, FrameSlot>();
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
          // Frames faults wait for first (their ranged reads are then aborted), the rest in order.
          const waited: FrameJob[] = [];
          const rest: FrameJob[] = [];
          for (let k = 0; k < this.slots.length; k++) {
            const waitedFor = this.slots[k]?.settled === false;
            const slot = this.claimInWhole(k);
            if (!slot) continue;
            mine.set(k, slot);
            (waitedFor ? waited : rest).push(this.job(k, s.offsets[k]!));
          }
          jobs = [...waited, ...rest];
        }
        try {
          if (blob.length !== s.offsets[s.offsets.length - 1])
            throw new ChunkFormatError(`blob of ${blob.length} bytes, the manifest says ${s.offsets[s.offsets.length - 1]}`);
          const left = jobs.filter((j) => mine.has(j.frame));
          if (left.length)
            await s.pool.decodeFramesInBackground(blob, this.target, left, (k) => {
              const slot = mine.get(k);
              if (slot) settleOnce(slot);
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
      for (const slot of mine.values()) settleOnce(slot, err as Error);
      throw err;
    }
    // A frame a ranged read claimed and then failed to verify was never handed out: once those
    // decodes are done, the blob decodes every frame left unclaimed.
    for (let k = 0; k < this.slots.length; k++) await this.otherRangedDecode(k);
    const late = new Map<number, FrameSlot>();
    for (let k = 0; k < this.slots.length; k++) {
      const slot = this.claimInWhole(k);
      if (slot) late.set(k, slot);
    }
    try {
      if (late.size)
        await s.pool.decodeFrames(
          blob,
          this.target,
          [...late.keys()].map((k) => this.job(k, s.offsets[k]!)),
        );
      for (const slot of late.values()) settleOnce(slot);
    } catch (err) {
      const e = err instanceof ChunkFormatError ? corruptChunkError(err, s.store, s.digest, s.where) : (err as Error);
      for (const slot of late.values()) settleOnce(slot, e);
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

/** A frame's waiters: what they wait on, and the ranged read under way for them (if any). */
interface FrameSlot {
  /** Settles once the frame's bytes in the buffer are verified; rejects when it cannot be served. Marked handled. */
  verified: Promise<void>;
  settle: (err?: Error) => void;
  settled: boolean;
  read?: {
    /** Aborted once every waiter left. */
    interest: SharedSignal;
    /** Aborted when the whole blob claims the frame first. */
    cancel: AbortController;
  };
}

function newSlot(): FrameSlot {
  let settle!: (err?: Error) => void;
  const verified = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
  verified.catch(() => undefined); // a frame nobody waits for may fail without an unhandled rejection
  return { verified, settle, settled: false };
}

function settleOnce(slot: FrameSlot, err?: Error): void {
  if (slot.settled) return;
  slot.settled = true;
  slot.settle(err);
}
