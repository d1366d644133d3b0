import {
  DEFER_RETRY,
  DEFER_WAIT,
  FLAG_FAULTED,
  FLAG_PREFETCH,
  FLAG_PREFETCH_LATE,
  FLAG_WRITE,
  RecordBuffer,
  RECORD_BYTES,
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
 * Records per block: 8192 (256 KiB). The main thread writes the file, and every block posted to
 * it wakes it: a wake-up costs it ~0.1-0.2 ms of CPU whatever the message holds (measured on the
 * bench host), more than the write. Large blocks keep that under 0.1 µs per traced fault (a
 * page-by-page restore writes 3 records per fault: a block every ~2,700 faults).
 */
export const BLOCK_RECORDS = 8192;
/**
 * Blocks per recorder: one being filled while the main thread writes the other. Should it fall a
 * whole block behind, records are dropped (counted, never waited for: the guest comes first).
 */
export const RING_BLOCKS = 2;
/** A VM that faults rarely still reaches its file within about this long (checked between waits). */
const FLUSH_INTERVAL_MS = 500;
/** The ring's first bytes: one Int32 busy flag per block, padded to 8 bytes (the records hold f64). */
const RING_HEADER_BYTES = 8 * Math.ceil((RING_BLOCKS * 4) / 8);

/**
 * One VM's restore timeline, recorded on its fault-loop thread. Every method writes one fixed-size
 * record into a block of a SharedArrayBuffer ring (numbers into typed arrays: no allocation); a
 * full block, and tick() every FLUSH_INTERVAL_MS, is handed to `sink` (postMessage to the main
 * thread, which writes the file and releases the block: format.ts releaseBlock). Nothing is copied
 * on the fault path. Times are µs since the recorder was created, at the handshake.
 */
export class TraceRecorder {
  readonly startEpochMs: number;
  private readonly startMs: number;
  private readonly ring: SharedArrayBuffer;
  private readonly busy: Int32Array;
  private readonly blocks: RecordBuffer[] = [];
  /** The block being filled; undefined while every block waits for the reader (records dropped). */
  private buf: RecordBuffer | undefined;
  private next = 0;
  private dropped = 0;
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
    this.startMs = performance.now();
    this.startEpochMs = performance.timeOrigin + this.startMs;
    this.lastFlushMs = this.startMs;
    this.lastMs = this.startMs;
    this.pageSizeBytes = pageSizeBytes;
    this.ring = new SharedArrayBuffer(RING_HEADER_BYTES + RING_BLOCKS * blockRecords * RECORD_BYTES);
    this.busy = new Int32Array(this.ring, 0, RING_BLOCKS);
    for (let i = 0; i < RING_BLOCKS; i++) this.blocks.push(new RecordBuffer(blockRecords, this.ring, RING_HEADER_BYTES + i * blockRecords * RECORD_BYTES));
    this.buf = this.blocks[0];
    if (prefetchPages && prefetchPages.length > 0) {
      let max = 0;
      for (const p of prefetchPages) if (p > max) max = p;
      this.prefetchSet = new Uint8Array((max >>> 3) + 1);
      for (const p of prefetchPages) this.prefetchSet[p >>> 3]! |= 1 << (p & 7);
    }
  }

  /** The latest time a record was stamped with (ms, this thread's performance.now()). */
  private lastMs: number;

  /** Records lost because the reader was a whole ring behind. */
  get droppedRecords(): number {
    return this.dropped;
  }

  private put(type: number, kind: number, flags: number, word1: number, a: number, b: number, nowMs: number): void {
    if (nowMs > this.lastMs) this.lastMs = nowMs;
    const buf = this.buf ?? this.takeBlock();
    if (buf === undefined) {
      this.dropped++;
      return;
    }
    buf.put(type, kind, flags, word1, (nowMs - this.startMs) * 1000, a, b);
    if (buf.count === buf.capacity) this.flush(nowMs);
  }

  /** The next block if the reader released it, else undefined. */
  private takeBlock(): RecordBuffer | undefined {
    if (Atomics.load(this.busy, this.next) !== 0) return undefined;
    this.buf = this.blocks[this.next]!;
    this.buf.count = 0;
    return this.buf;
  }

  /** A page fault read from the uffd at `readAtMs` (performance.now() of this thread). */
  fault(address: number, write: boolean, readAtMs: number): void {
    this.put(T_FAULT, 0, write ? FLAG_WRITE : 0, 0, address, 0, readAtMs);
  }

  /**
   * The faulting page at `address` (snapshot `fileOffset`) is installed at `nowMs`; `kind` as
   * installed. Times come from the fault loop's own clock reads: on some hosts a clock read costs
   * more than the rest of a record (measured 230 ns, bench/trace-record.ts).
   */
  served(address: number, fileOffset: number, kind: number, readAtMs: number, nowMs: number): void {
    const page = fileOffset / this.pageSizeBytes;
    const late = this.prefetchSet !== undefined && (page >>> 3) < this.prefetchSet.length && (this.prefetchSet[page >>> 3]! & (1 << (page & 7))) !== 0;
    this.put(T_SERVED, kind, late ? FLAG_PREFETCH_LATE : 0, Math.max(0, Math.round((nowMs - readAtMs) * 1000)), address, fileOffset, nowMs);
  }

  /**
   * A range installed: for the fault (`faulted`), around it, or by the prefetcher (`!wake`). An
   * on-demand install is stamped with the time of its fault's read (no clock read on the fault
   * path); a prefetch install reads the clock.
   */
  install(fileOffset: number, len: number, kind: number, faulted: boolean, wake: boolean): void {
    this.put(T_INSTALL, kind, (faulted ? FLAG_FAULTED : 0) | (wake ? 0 : FLAG_PREFETCH), 0, fileOffset, len, wake ? this.lastMs : performance.now());
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
    if (nowMs - this.lastFlushMs >= FLUSH_INTERVAL_MS && this.buf !== undefined && this.buf.count > 0) this.flush(nowMs);
  }

  /** Hands the filled part of the current block to the sink and moves on to the next block. */
  flush(nowMs = this.lastMs): void {
    this.lastFlushMs = nowMs;
    const buf = this.buf;
    if (buf === undefined || buf.count === 0) return;
    const index = this.next;
    Atomics.store(this.busy, index, 1);
    this.sink({ startEpochMs: this.startEpochMs, records: this.ring, offsetBytes: buf.byteOffset, count: buf.count, releaseIndex: index });
    this.next = (index + 1) % RING_BLOCKS;
    this.buf = undefined;
    this.takeBlock();
  }
}
