import {
  DEFER_RETRY,
  DEFER_WAIT,
  FLAG_FAULTED,
  FLAG_PREFETCH,
  FLAG_PREFETCH_LATE,
  FLAG_WRITE,
  RecordBuffer,
  T_DEFER,
  T_FAULT,
  T_FETCH_DONE,
  T_FETCH_WANT,
  T_INSTALL,
  T_REMOVE,
  T_SERVED,
  type TraceBlock,
} from './format.js';

/**
 * Records per block: 8192 (256 KiB). Each block posted wakes the main thread, which writes the
 * file: a wake-up costs it ~0.1-0.2 ms of CPU whatever the message holds (measured on the bench
 * host), more than the write. With 2048-record blocks that was ~1 µs of main-thread CPU per traced
 * 4 KiB fault (3 records each); 8192 make it a quarter. The flush's copy (structured clone of 256
 * KiB, ~30-60 µs) comes every ~2,700 such faults.
 */
const BLOCK_RECORDS = 8192;
/** A VM that faults rarely still reaches its file within about this long (checked between waits). */
const FLUSH_INTERVAL_MS = 500;

/**
 * One VM's restore timeline, recorded on its fault-loop thread. Every method writes one fixed-size
 * record into a preallocated buffer (numbers into typed arrays: no allocation); a full buffer, and
 * tick() every FLUSH_INTERVAL_MS, hand a copy to `sink` (postMessage to the main thread, which
 * writes the file). Times are µs since the recorder was created, at the handshake.
 */
export class TraceRecorder {
  readonly startEpochMs: number;
  private readonly startMs: number;
  private readonly buf: RecordBuffer;
  private lastFlushMs: number;
  /** One bit per snapshot page of the prefetch set: a fault there means prefetch came too late. */
  private readonly prefetchSet: Uint8Array | undefined;
  private readonly pageSizeBytes: number;

  constructor(
    private readonly sink: (block: TraceBlock) => void,
    pageSizeBytes: number,
    prefetchPages?: Uint32Array,
    blockRecords = BLOCK_RECORDS,
  ) {
    this.buf = new RecordBuffer(blockRecords);
    this.startMs = performance.now();
    this.startEpochMs = performance.timeOrigin + this.startMs;
    this.lastFlushMs = this.startMs;
    this.lastMs = this.startMs;
    this.pageSizeBytes = pageSizeBytes;
    if (prefetchPages && prefetchPages.length > 0) {
      let max = 0;
      for (const p of prefetchPages) if (p > max) max = p;
      this.prefetchSet = new Uint8Array((max >>> 3) + 1);
      for (const p of prefetchPages) this.prefetchSet[p >>> 3]! |= 1 << (p & 7);
    }
  }

  /** The latest time a record was stamped with (ms, this thread's performance.now()). */
  private lastMs: number;

  private put(type: number, kind: number, flags: number, word1: number, a: number, b: number, nowMs: number): void {
    if (nowMs > this.lastMs) this.lastMs = nowMs;
    this.buf.put(type, kind, flags, word1, (nowMs - this.startMs) * 1000, a, b);
    if (this.buf.count === this.buf.capacity) this.flush(nowMs);
  }

  /** A page fault read from the uffd at `readAtMs` (performance.now() of this thread). */
  fault(address: number, write: boolean, readAtMs: number): void {
    this.put(T_FAULT, 0, write ? FLAG_WRITE : 0, 0, address, 0, readAtMs);
  }

  /**
   * The faulting page at `address` (snapshot `fileOffset`) is installed at `nowMs`; `kind` as
   * installed. Times come from the fault loop's own clock reads: on some hosts a clock read costs
   * more than the rest of a record (bench/fault-loop-cost.ts, its `recorder` line in
   * bench/results/fault-loop-cost.md).
   */
  served(address: number, fileOffset: number, kind: number, readAtMs: number, nowMs: number): void {
    const page = fileOffset / this.pageSizeBytes;
    const late =
      this.prefetchSet !== undefined && page >>> 3 < this.prefetchSet.length && (this.prefetchSet[page >>> 3]! & (1 << (page & 7))) !== 0;
    this.put(T_SERVED, kind, late ? FLAG_PREFETCH_LATE : 0, Math.max(0, Math.round((nowMs - readAtMs) * 1000)), address, fileOffset, nowMs);
  }

  /**
   * A range installed: for the fault (`faulted`), around it, or by the prefetcher (`!wake`). An
   * on-demand install is stamped with the time of its fault's read (no clock read on the fault
   * path); a prefetch install reads the clock.
   */
  install(fileOffset: number, len: number, kind: number, faulted: boolean, wake: boolean): void {
    this.put(
      T_INSTALL,
      kind,
      (faulted ? FLAG_FAULTED : 0) | (wake ? 0 : FLAG_PREFETCH),
      0,
      fileOffset,
      len,
      wake ? this.lastMs : performance.now(),
    );
  }

  remove(fileOffset: number, len: number): void {
    this.put(T_REMOVE, 0, 0, 0, fileOffset, len, performance.now());
  }

  /** A fault put off: `waiting` for its bytes to arrive, else EAGAIN. */
  deferred(address: number, waiting: boolean): void {
    this.put(T_DEFER, waiting ? DEFER_WAIT : DEFER_RETRY, 0, 0, address, 0, performance.now());
  }

  fetchWant(chunk: number): void {
    this.put(T_FETCH_WANT, 0, 0, chunk, 0, 0, performance.now());
  }

  fetchDone(chunk: number, bytes: number, source: number): void {
    this.put(T_FETCH_DONE, source, 0, chunk, bytes, 0, performance.now());
  }

  /** Between waits: flush what is buffered if the last flush is FLUSH_INTERVAL_MS old. */
  tick(nowMs: number): void {
    if (this.buf.count > 0 && nowMs - this.lastFlushMs >= FLUSH_INTERVAL_MS) this.flush(nowMs);
  }

  /** Hands the buffered records to the sink (which copies them) and starts the buffer over. */
  flush(nowMs = this.lastMs): void {
    this.lastFlushMs = nowMs;
    if (this.buf.count === 0) return;
    this.sink({ startEpochMs: this.startEpochMs, records: this.buf.buffer, count: this.buf.count });
    this.buf.count = 0;
  }
}
