// One framed (version 2) chunk being loaded for serving: the frame a fault needs is fetched first
// with a ranged read, verified against its hash and decoded into its place in the chunk's buffer;
// the whole blob follows behind it, and its other frames are decoded into the same buffer. Each
// frame is decoded exactly once (claimed by its ranged read or by the whole blob), so a byte a VM
// may already be copying is never written again.
import type { ChunkStore } from '../store/types.js';
import { ChunkFormatError, type FrameJob } from './chunk-format.js';
import type { ChunkCodecPool } from './chunk-pool.js';
import { chunkReadError, corruptChunkError } from './pack.js';

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
}

export class FramedChunkLoad {
  readonly buffer: SharedArrayBuffer;
  /** Per frame: settles once its bytes in `buffer` are verified (undefined: nobody claimed it yet). */
  private readonly frames: Array<Promise<void> | undefined>;
  private wholePromise: Promise<SharedArrayBuffer> | undefined;
  /** Ranged reads made (for tests and stats). */
  rangedReads = 0;

  constructor(private readonly s: FramedChunkSpec) {
    this.buffer = new SharedArrayBuffer(s.lengthBytes);
    this.frames = new Array<Promise<void> | undefined>(s.frameSha256.length);
  }

  get frameCount(): number {
    return this.frames.length;
  }

  /** Frame `k` is (or is being) decoded into the buffer. */
  claimed(k: number): boolean {
    return this.frames[k] !== undefined;
  }

  /** Resolves once frame `k` is verified in the buffer; the first want of it starts its ranged read. */
  frame(k: number): Promise<void> {
    // An all-zero frame: the buffer's zeros are its bytes (no decode ever writes there).
    if (this.s.frameSha256[k] === '') return Promise.resolve();
    let p = this.frames[k];
    if (p === undefined) {
      p = this.fetchFrame(k);
      this.frames[k] = p;
      p.catch(() => undefined); // waiters handle it; a failed frame is not retried by this load
    }
    return p;
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
  private async fetchFrame(k: number): Promise<void> {
    const s = this.s;
    const offset = s.offsets[k]!;
    const length = s.offsets[k + 1]! - offset;
    for (let attempt = 1; ; attempt++) {
      let bytes: Uint8Array;
      try {
        this.rangedReads++;
        bytes = await s.store.getChunk(s.digest, { range: { offset, length } });
      } catch (err) {
        throw chunkReadError(err, s.store, s.digest, s.where);
      }
      try {
        if (bytes.length !== length) throw new ChunkFormatError(`frame ${k}: ${bytes.length} bytes read, ${length} asked for`);
        await s.pool.decodeFrames(bytes, this.buffer, s.lengthBytes, s.zeroBitmap, s.frameSizeBytes, [this.job(k, 0)]);
        return;
      } catch (err) {
        if (!(err instanceof ChunkFormatError)) throw err;
        if (attempt >= 2) throw corruptChunkError(err, s.store, s.digest, s.where);
      }
    }
  }

  private async fetchWhole(): Promise<SharedArrayBuffer> {
    const s = this.s;
    // Frames this whole read claims wait for its final outcome (after a retry), not a first attempt.
    let settle!: (err?: Error) => void;
    const mine = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
    mine.catch(() => undefined);
    let jobs: FrameJob[] | undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        let blob: Uint8Array;
        try {
          blob = await s.store.getChunk(s.digest);
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
            this.frames[k] = mine;
          }
        }
        try {
          if (blob.length !== s.offsets[s.offsets.length - 1]) throw new ChunkFormatError(`blob of ${blob.length} bytes, the manifest says ${s.offsets[s.offsets.length - 1]}`);
          if (jobs.length) await s.pool.decodeFramesInBackground(blob, this.buffer, s.lengthBytes, s.zeroBitmap, s.frameSizeBytes, jobs);
          break;
        } catch (err) {
          if (!(err instanceof ChunkFormatError)) throw err;
          if (attempt >= 2) throw corruptChunkError(err, s.store, s.digest, s.where);
        }
      }
      settle();
    } catch (err) {
      settle(err as Error);
      throw err;
    }
    await Promise.all(this.frames.filter((p): p is Promise<void> => p !== undefined));
    return this.buffer;
  }
}
