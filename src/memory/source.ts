import type { CopySource } from '../kernel/native.js';

/** Where UFFDIO_COPY finds the snapshot bytes of a range. */
export interface SourceSpan {
  readonly src: CopySource;
  readonly srcOffset: number;
}

/**
 * What the fault loop reads snapshot memory from. Offsets are snapshot (memory file) offsets.
 * Implementations answer synchronously from what they hold; they never do I/O on the fault path.
 * A source that fetches (chunked snapshots) answers `undefined` for bytes it does not hold yet,
 * starts getting them, and signals `wakeFd` when more arrived: the loop then calls `onWake()` and
 * retries the faults that were waiting.
 */
export interface PageSource {
  readonly sizeBytes: number;
  /** True when every byte of [fileOffset, fileOffset + len) is known to be zero in the snapshot. */
  isZero(fileOffset: number, len: number): boolean;
  /**
   * The bytes of [fileOffset, fileOffset + len), or undefined when they are not here yet. Callers
   * never let a range cross a multiple of SPAN_BOUNDARY_BYTES, so a source that holds memory in
   * pieces (chunks, which are multiples of 2 MiB) can always answer with one buffer.
   */
  span(fileOffset: number, len: number): SourceSpan | undefined;
  /**
   * A hint: [fileOffset, fileOffset + len) will be wanted soon (prefetch, or the block after a
   * fault). A source starts getting those bytes without waiting: a chunked one requests the chunks,
   * a memory file reads them into the page cache.
   */
  prepare(fileOffset: number, len: number): void;
  /**
   * For a source that fetches from far away (a chunked store): how a prefetch tells it its working
   * set further ahead than prepare() is, so the bytes are asked for early enough to arrive in time.
   * A source that reads a local file leaves it out (its reads are quick, and hints that far ahead
   * cost syscalls on the fault loop's thread).
   */
  readonly fetchAhead?: FetchAhead;
  /** An fd that polls readable when data arrived; -1 for a source that holds everything. */
  readonly wakeFd: number;
  /** Takes in what arrived (called on the loop's thread after wakeFd polled readable). */
  onWake(): void;
  close(): void;
}

/** See PageSource.fetchAhead. */
export interface FetchAhead {
  /** Bytes the source fetches and holds at once (a chunk), at multiples of it. */
  readonly unitBytes: number;
  /**
   * Units the prefetch may name ahead of its cursor (>= 1): each named unit is fetched and held
   * until its pages are installed, so this bounds the memory a prefetch keeps in flight.
   */
  readonly units: number;
  /** prepare() for working-set pages that far ahead. */
  prepare(fileOffset: number, len: number): void;
}

/** No span() request crosses a multiple of this (see PageSource.span). */
export const SPAN_BOUNDARY_BYTES = 2 * 1024 * 1024;

/** Granule of a PageClassMap: the host base page, whatever page size a VM uses. */
export const CLASS_GRANULE_BYTES = 4096;
export const PAGE_UNKNOWN = 0;
export const PAGE_ZERO = 1;
export const PAGE_DATA = 2;

/**
 * What is known about each 4 KiB page of a snapshot: unknown, all zero, or data. Backed by a
 * SharedArrayBuffer so every VM worker serving the same snapshot shares one map (one byte per 4 KiB:
 * 256 KiB per GiB of snapshot) and sees a background scan's progress as it happens.
 */
export class PageClassMap {
  readonly bytes: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.bytes = new Uint8Array(buffer);
  }

  static forSize(sizeBytes: number): PageClassMap {
    return new PageClassMap(new SharedArrayBuffer(Math.ceil(sizeBytes / CLASS_GRANULE_BYTES)));
  }

  mark(fileOffset: number, len: number, cls: number): void {
    this.bytes.fill(cls, Math.floor(fileOffset / CLASS_GRANULE_BYTES), Math.ceil((fileOffset + len) / CLASS_GRANULE_BYTES));
  }

  isZero(fileOffset: number, len: number): boolean {
    const end = (fileOffset + len) / CLASS_GRANULE_BYTES;
    for (let i = fileOffset / CLASS_GRANULE_BYTES; i < end; i++) if (this.bytes[i] !== PAGE_ZERO) return false;
    return true;
  }

  count(cls: number): number {
    let n = 0;
    for (const b of this.bytes) if (b === cls) n++;
    return n;
  }
}
