import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { ChunkFormatError, DEFAULT_ZSTD_LEVEL, type FrameJob } from './chunk-format.js';

export type CodecRequest =
  | { id: number; op: 'known'; digests: string[] }
  | { id: number; op: 'ping' }
  /** frameBytes 0: a version 1 blob (one frame); otherwise a version 2 blob of frames of that size. */
  | { id: number; op: 'encode'; buffer: ArrayBuffer; length: number; level: number; frameBytes: number }
  | { id: number; op: 'decode'; blob: Uint8Array; digest: string; out: SharedArrayBuffer; length: number }
  | {
      id: number;
      op: 'frames';
      src: Uint8Array;
      out: SharedArrayBuffer;
      length: number;
      zeroBitmap: Uint8Array;
      frameBytes: number;
      jobs: FrameJob[];
    };

export type CodecResponse =
  | { id: number; op: 'known' }
  | { id: number; op: 'ping' }
  | { id: number; op: 'encode'; allZero: true; buffer: ArrayBuffer }
  | {
      id: number;
      op: 'encode';
      allZero: false;
      digest: string;
      zeroBitmap: Uint8Array;
      zeroPages: number;
      /** Absent when the digest was among the known ones (no need to compress). */
      blob: Uint8Array | undefined;
      /** With the blob of a version 2 encode. */
      frames: { frameBytes: number[]; frameSha256: string[] } | undefined;
      buffer: ArrayBuffer;
    }
  | { id: number; op: 'decode' }
  | { id: number; op: 'frames' }
  | { id: number; op: 'error'; corrupt: boolean; message: string };

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export type EncodeResult = Extract<CodecResponse, { op: 'encode' }>;

interface Slot {
  worker: Worker;
  /** Tasks posted to the thread and not answered yet (it runs them one at a time, in order). */
  busy: number;
  /** Background tasks given to the thread (reserved when chosen, before they are posted) and not answered yet. */
  background: number;
}

/**
 * Background tasks queued on the background thread at most. The thread then goes from one frame
 * to the next without waiting for the main thread, which posts each next frame between the store
 * bodies it takes in: with one frame at a time, the background thread idled two thirds of a cold
 * remote restore (a chunk's 16 frames took ~30 ms to decode, of which ~10 ms of decoding). A fault
 * never queues behind them: it goes to the least busy thread, and another thread is kept idle.
 */
const BACKGROUND_DEPTH = 4;

/** `bytes` itself when it is a view of shared memory, else a copy in shared memory. */
export function inSharedMemory(bytes: Uint8Array): Uint8Array {
  if (bytes.buffer instanceof SharedArrayBuffer) return bytes;
  const out = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  out.set(bytes);
  return out;
}

const WORKER_URL = new URL('./chunk-worker.js', import.meta.url);

/** Where decoded frames go: the chunk's buffer, its length, its zero pages and its frame size. */
export interface FrameTarget {
  out: SharedArrayBuffer;
  length: number;
  zeroBitmap: Uint8Array;
  frameBytes: number;
}

/**
 * A few threads that hash, compress, decompress and verify chunks. Tasks go to the least busy
 * thread; each thread does one at a time. Threads keep the process alive only while they work.
 */
export class ChunkCodecPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<
    number,
    { resolve: (r: CodecResponse) => void; reject: (e: Error) => void; slot: Slot; background: boolean }
  >();
  private nextId = 1;
  private closed = false;
  /** Background tasks waiting for a thread (see takeBackgroundSlot), each handed the thread reserved for it. */
  private readonly backlog: Array<(slot: Slot) => void> = [];

  constructor(readonly threads = Math.max(1, Math.min(2, os.availableParallelism()))) {
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(WORKER_URL);
      const slot: Slot = { worker, busy: 0, background: 0 };
      worker.unref();
      worker.on('message', (res: CodecResponse) => this.settle(res));
      worker.on('error', (err) => this.failAll(slot, err));
      worker.on('exit', () => this.failAll(slot, new Error('chunk codec thread exited')));
      this.slots.push(slot);
    }
  }

  private settle(res: CodecResponse): void {
    const p = this.pending.get(res.id);
    if (!p) return;
    this.pending.delete(res.id);
    p.slot.busy--;
    if (p.background) p.slot.background--;
    for (let slot = this.backlog.length ? this.takeBackgroundSlot() : undefined; slot;) {
      this.backlog.shift()!(slot);
      slot = this.backlog.length ? this.takeBackgroundSlot() : undefined;
    }
    if (p.slot.busy === 0 && p.slot.background === 0) p.slot.worker.unref();
    if (res.op === 'error') p.reject(res.corrupt ? new ChunkFormatError(res.message) : new Error(res.message));
    else p.resolve(res);
  }

  /**
   * The thread a background task may go to now, reserved for it (undefined: none may take it yet).
   * One thread at a time does background work, up to BACKGROUND_DEPTH tasks; it starts on an idle
   * thread only while another stays idle. So with two threads or more one is kept for faults (a
   * fault's frame never waits behind a background frame), and background decoding leaves a core to
   * the main thread, which drives every read. With one thread, one background task at a time (a
   * fault waits behind one frame at most).
   */
  private takeBackgroundSlot(): Slot | undefined {
    const working = this.slots.find((s) => s.background > 0);
    let slot: Slot | undefined;
    if (working) {
      if (working.background < (this.slots.length > 1 ? BACKGROUND_DEPTH : 1)) slot = working;
    } else {
      const idle = this.slots.filter((s) => s.busy === 0);
      if (idle.length > (this.slots.length > 1 ? 1 : 0)) slot = idle[0];
    }
    if (slot) slot.background++;
    return slot;
  }

  private failAll(slot: Slot, err: Error): void {
    for (const [id, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(id);
      slot.busy--;
      if (p.background) slot.background--;
      p.reject(err);
    }
  }

  /**
   * Posts a task to `slot`, or else to the least busy thread. `background`: the task is background
   * work on the slot reserved for it (takeBackgroundSlot).
   */
  private run(req: DistributiveOmit<CodecRequest, 'id'>, transfer: ArrayBuffer[], slot?: Slot, background = false): Promise<CodecResponse> {
    if (this.closed) {
      if (background && slot) slot.background--;
      return Promise.reject(new Error('chunk codec pool is closed'));
    }
    const s = slot ?? this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, slot: s, background });
      if (s.busy++ === 0) s.worker.ref();
      s.worker.postMessage({ ...req, id }, transfer);
    });
  }

  /** Per thread: tasks posted and not answered yet, and how many of them are background work. */
  get load(): Array<{ tasks: number; background: number }> {
    return this.slots.map((s) => ({ tasks: s.busy, background: s.background }));
  }

  /** Digests whose blobs need not be built by encode() (chunks the store already has). */
  async setKnown(digests: Iterable<string>): Promise<void> {
    const list = [...new Set(digests)];
    await Promise.all(this.slots.map((slot) => this.run({ op: 'known', digests: list }, [], slot)));
  }

  /** Resolves once every thread has started and loaded its codec (a first chunk then pays no start-up). */
  async warm(): Promise<void> {
    await Promise.all(this.slots.map((slot) => this.run({ op: 'ping' }, [], slot)));
  }

  /** Analyses, hashes and (unless known) compresses a chunk. `buffer` is transferred and handed back in the result. */
  async encode(buffer: ArrayBuffer, length: number, level = DEFAULT_ZSTD_LEVEL, frameBytes = 0): Promise<EncodeResult> {
    return (await this.run({ op: 'encode', buffer, length, level, frameBytes }, [buffer])) as EncodeResult;
  }

  /**
   * Reconstructs and verifies a chunk into `out` (a new SharedArrayBuffer of at least `length`).
   * Rejects with ChunkFormatError when the blob is damaged or its content does not match `digest`.
   */
  async decode(blob: Uint8Array, digest: string, out: SharedArrayBuffer, length: number): Promise<void> {
    const transfer =
      blob.byteOffset === 0 && blob.byteLength === blob.buffer.byteLength && !(blob.buffer instanceof SharedArrayBuffer)
        ? [blob.buffer]
        : [];
    await this.run({ op: 'decode', blob, digest, out, length }, transfer);
  }

  /**
   * Decodes frames of a version 2 chunk from `src` (one frame's ranged read, or the whole blob) into
   * their places in `out` (the chunk's buffer; nothing outside those frames is written), verifying
   * each against its hash. Rejects with ChunkFormatError on a mismatch.
   */
  async decodeFrames(src: Uint8Array, into: FrameTarget, jobs: FrameJob[]): Promise<void> {
    await this.run({ op: 'frames', src, ...into, jobs }, []);
  }

  /**
   * decodeFrames as background work: each frame is its own task, given to the background thread
   * (see takeBackgroundSlot), so a fault's frame does not wait behind it.
   * `src` in shared memory (what the remote stores read bodies into) goes to the threads as it is;
   * another is copied into shared memory once (a view of an ArrayBuffer would clone all of it per frame).
   * `onFrame`: called as each frame is verified in place, so its waiters need not wait for the rest.
   */
  async decodeFramesInBackground(src: Uint8Array, into: FrameTarget, jobs: FrameJob[], onFrame?: (frame: number) => void): Promise<void> {
    const shared = inSharedMemory(src);
    // Every job ends before this settles, even after a failure: a retry must never race a decode
    // still writing the same frame.
    const results = await Promise.allSettled(
      jobs.map(async (job) => {
        const slot = this.takeBackgroundSlot() ?? (await new Promise<Slot>((resolve) => this.backlog.push(resolve)));
        await this.run({ op: 'frames', src: shared, ...into, jobs: [job] }, [], slot, true);
        onFrame?.(job.frame);
      }),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
