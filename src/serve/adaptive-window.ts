import { FcUffdError } from '../errors.js';
import type { FaultAroundPolicy } from './fault-around-policy.js';

// Tunables. Chosen with the offline simulator (bench/fault-around-sim.ts) on the real restore
// trace, a random 5 % of 512 MiB and a dense sequential 128 MiB walk; bench/README.md has the table.

/**
 * Largest window. 2 MiB: on a dense walk a larger window saves too few faults to matter (64 per
 * 128 MiB at 2 MiB) while one install of it already delays the faulting vCPU's neighbours by ~1 ms;
 * it is also the span a source is ever asked for in one piece (SPAN_BOUNDARY_BYTES), so a capped
 * window aligned to it is one UFFDIO_COPY per data run.
 */
export const ADAPTIVE_MAX_BYTES = 2 * 1024 * 1024;
/**
 * Window of a fault that continues no stream: the faulting page only. Random access is exactly the
 * case where every fault starts a new stream, and any neighbour installed then is memory the guest
 * did not ask for (a random 5 % guest installed 19x its working set with a fixed 256 KiB window).
 */
export const ADAPTIVE_INITIAL_PAGES = 1;
/**
 * Windows grow 4x while below this, 2x above (the kernel's readahead does the same): a new stream
 * reaches 64 KiB in three faults, where the real trace's clusters mostly end, and the cap in seven.
 */
export const ADAPTIVE_FAST_GROWTH_BELOW_BYTES = 128 * 1024;
/**
 * Streams remembered per VM (least recently continued evicted first). Faults carry no vCPU id, so
 * streams are told apart by address: each vCPU walking memory, plus the kernel's own allocations,
 * is one stream. On the real trace 16 streams take 104-125 faults where 8 take 111-129 (simulator);
 * the table is scanned per fault, so it stays small.
 */
export const ADAPTIVE_STREAMS = 16;
/**
 * A fault at most this many pages beyond a stream's window (either direction) still continues it:
 * guests skip a page now and then (a page already present from an earlier window, a hole in a
 * buffer). Small, so that random faults almost never pass for a stream (at a random 5 % of 512 MiB,
 * 16 streams x 4 pages catch 0.05 % of faults).
 */
export const ADAPTIVE_SKIP_PAGES = 4;
/**
 * New streams remembered for whether they went on (were continued at least once). A guest whose
 * recent streams often go on (a restoring kernel walking its memory in clusters) starts new ones
 * with a bigger window; one whose streams die at their first fault (random access) keeps one page.
 * 16: short enough to follow a guest's phase change within a few ms of faults, long enough that
 * chance continuations of random faults (~0.1 % of them) never make a quarter.
 */
export const ADAPTIVE_HISTORY = 16;
/**
 * Share of remembered new streams that went on from which new streams start at
 * ADAPTIVE_SEQ_INITIAL_PAGES. On the real trace 1/4 takes 125 faults, 1/2 takes 397 (most of its new
 * streams are short clusters that a 256 KiB start covers whole, so they never "go on").
 */
export const ADAPTIVE_SEQ_SHARE = 0.25;
/**
 * Window of a new stream in a guest whose streams go on: an aligned 256 KiB block, the measured
 * knee of the fixed window on the real trace (fewer faults than 64 KiB there: 125 vs 150-220).
 */
export const ADAPTIVE_SEQ_INITIAL_PAGES = 64;

export interface AdaptiveFaultAroundOptions {
  pageSizeBytes: number;
  /**
   * True when every page of [offset, offset + len) is zero in the snapshot. Zero pages are
   * installed with UFFDIO_ZEROPAGE (no copy, no guest memory until written), so they do not use
   * up a growing window: a window of N bytes holds N bytes of snapshot data, plus the zero pages
   * between them, up to maxBytes in all.
   */
  isZero?: (offset: number, lenBytes: number) => boolean;
  /** Overrides of the tunables above (the simulator sweeps them); powers of two in bytes. */
  maxBytes?: number;
  initialPages?: number;
  fastGrowthBelowBytes?: number;
  streams?: number;
  skipPages?: number;
  history?: number;
  seqShare?: number;
  seqInitialPages?: number;
}

/** A window as policies hand it out (see FaultAroundPolicy: valid until the policy's next call). */
interface MutableWindow {
  startOffset: number;
  lenBytes: number;
}

/**
 * Fault-around that sizes each window by what the guest did before, in the spirit of the kernel's
 * readahead: a fault that continues a recent window (lands just past its end, or just before its
 * start for a downward walk) gets a window 2-4x larger, up to the cap; a fault anywhere else
 * starts a new stream with a one-page window, or with an aligned 256 KiB block while a quarter of
 * the recent new streams went on (a clustered guest). Per VM: one instance per FaultLoop.
 *
 * Per fault it scans the stream table once (finding the stream continued, or the least recently
 * used one to replace) and allocates nothing: streams are columns of typed arrays, and the window
 * returned is one object reused for every call.
 */
export class AdaptiveFaultAround implements FaultAroundPolicy {
  private readonly ps: number;
  private readonly isZero: ((offset: number, lenBytes: number) => boolean) | undefined;
  private readonly maxBytes: number;
  private readonly initialBytes: number;
  private readonly seqInitialBytes: number;
  private readonly seqShare: number;
  /** Ring of the last new streams: 1 = went on. */
  private readonly wentOn: Uint8Array;
  /** Which stream generation owns each ring slot (a slot is reused after history.length new streams). */
  private readonly slotOwner: Uint32Array;
  private historyNext = 0;
  private wentOnCount = 0;
  private generation = 0;
  private readonly fastBelowBytes: number;
  private readonly skipBytes: number;
  private readonly maxStreams: number;
  private tick = 0;
  private readonly out: MutableWindow = { startOffset: 0, lenBytes: 0 };
  // The stream table, one column per field, `streamCount` rows in use.
  private streamCount = 0;
  private readonly sRegion: Float64Array;
  /** The window last installed for the stream: [lo, hi), snapshot offsets. */
  private readonly sLo: Float64Array;
  private readonly sHi: Float64Array;
  /** Data bytes its next window may hold (grows while the stream continues). */
  private readonly sSize: Float64Array;
  /** +1 walking up, -1 walking down, 0 not known yet (one fault so far). */
  private readonly sDir: Int8Array;
  private readonly sUsedAt: Float64Array;
  /** Its slot in the history of new streams (-1: it went on already, or the slot was reused). */
  private readonly sSlot: Int32Array;
  private readonly sSlotGen: Uint32Array;

  constructor(o: AdaptiveFaultAroundOptions) {
    this.ps = o.pageSizeBytes;
    this.isZero = o.isZero;
    this.maxBytes = Math.max(this.ps, o.maxBytes ?? ADAPTIVE_MAX_BYTES);
    this.initialBytes = Math.min(this.maxBytes, this.ps * Math.max(1, o.initialPages ?? ADAPTIVE_INITIAL_PAGES));
    this.fastBelowBytes = o.fastGrowthBelowBytes ?? ADAPTIVE_FAST_GROWTH_BELOW_BYTES;
    this.skipBytes = this.ps * (o.skipPages ?? ADAPTIVE_SKIP_PAGES);
    this.maxStreams = Math.max(1, o.streams ?? ADAPTIVE_STREAMS);
    this.seqInitialBytes = Math.min(this.maxBytes, this.ps * Math.max(1, o.seqInitialPages ?? ADAPTIVE_SEQ_INITIAL_PAGES));
    this.seqShare = o.seqShare ?? ADAPTIVE_SEQ_SHARE;
    const history = Math.max(1, o.history ?? ADAPTIVE_HISTORY);
    this.wentOn = new Uint8Array(history);
    this.slotOwner = new Uint32Array(history);
    const n = this.maxStreams;
    this.sRegion = new Float64Array(n);
    this.sLo = new Float64Array(n);
    this.sHi = new Float64Array(n);
    this.sSize = new Float64Array(n);
    this.sDir = new Int8Array(n);
    this.sUsedAt = new Float64Array(n);
    this.sSlot = new Int32Array(n);
    this.sSlotGen = new Uint32Array(n);
    for (const [what, v] of [
      ['page size', this.ps],
      ['largest window', this.maxBytes],
      ['initial window', this.initialBytes],
      ['sequential initial window', this.seqInitialBytes],
    ] as const)
      if (!Number.isInteger(v) || v <= 0 || (v & (v - 1)) !== 0)
        throw new FcUffdError('CONFIG', `adaptive fault-around: the ${what} must be a power of two in bytes, got ${v}`);
  }

  window(faultOffset: number, regionStartOffset: number, regionEndOffset: number): { startOffset: number; lenBytes: number } {
    const ps = this.ps;
    const f = faultOffset;
    const tick = ++this.tick;
    // One pass: the stream this fault continues (just past a window in its direction, or inside
    // one), else the least recently used row, which a new stream takes once the table is full.
    let s = -1;
    let lru = 0;
    const skip = this.skipBytes;
    for (let i = 0; i < this.streamCount; i++) {
      if (this.sUsedAt[i]! < this.sUsedAt[lru]!) lru = i;
      if (this.sRegion[i] !== regionStartOffset) continue;
      const lo = this.sLo[i]!;
      const hi = this.sHi[i]!;
      const dir = this.sDir[i]!;
      if ((f >= lo && f < hi) || (dir >= 0 && f >= hi && f < hi + skip) || (dir <= 0 && f < lo && f >= lo - skip)) {
        s = i;
        break;
      }
    }
    let lo: number;
    let hi: number;
    if (s < 0) {
      s = this.streamCount < this.maxStreams ? this.streamCount++ : lru;
      const size = this.newStream(s, regionStartOffset);
      // An aligned block of the initial size, like a fixed window of that size.
      lo = f - ((f - regionStartOffset) % size);
      hi = lo + size;
    } else if (f >= this.sHi[s]! || (f >= this.sLo[s]! && this.sDir[s]! >= 0)) {
      this.wentOnOnce(s);
      // Upwards (or inside a window that was not installed in full: go on from the fault).
      const size = (this.sSize[s] = this.grow(this.sSize[s]!, f >= this.sHi[s]!));
      this.sDir[s] = 1;
      lo = f;
      hi = this.extendUp(f, size, Math.min(regionEndOffset, f + this.maxBytes));
    } else {
      this.wentOnOnce(s);
      const size = (this.sSize[s] = this.grow(this.sSize[s]!, f < this.sLo[s]!));
      this.sDir[s] = -1;
      hi = f + ps;
      lo = this.extendDown(hi, size, Math.max(regionStartOffset, hi - this.maxBytes));
    }
    lo = Math.max(lo, regionStartOffset);
    hi = Math.min(hi, regionEndOffset);
    this.sLo[s] = lo;
    this.sHi[s] = hi;
    this.sUsedAt[s] = tick;
    const out = this.out;
    out.startOffset = lo;
    out.lenBytes = hi - lo;
    return out;
  }

  /** Marks stream `s` as one that went on, the first time it is continued. */
  private wentOnOnce(s: number): void {
    const slot = this.sSlot[s]!;
    if (slot < 0) return;
    if (this.slotOwner[slot] === this.sSlotGen[s] && this.wentOn[slot] === 0) {
      this.wentOn[slot] = 1;
      this.wentOnCount++;
    }
    this.sSlot[s] = -1;
  }

  /** Starts a new stream in row `s` (a free row, or the least recently used one); returns its window size. */
  private newStream(s: number, regionStartOffset: number): number {
    const goesOn = this.wentOnCount >= this.seqShare * this.wentOn.length;
    const slot = this.historyNext;
    this.historyNext = (slot + 1) % this.wentOn.length;
    this.wentOnCount -= this.wentOn[slot]!;
    this.wentOn[slot] = 0;
    this.generation = (this.generation + 1) >>> 0;
    this.slotOwner[slot] = this.generation;
    const sizeBytes = goesOn ? Math.max(this.initialBytes, this.seqInitialBytes) : this.initialBytes;
    this.sRegion[s] = regionStartOffset;
    this.sSize[s] = sizeBytes;
    this.sDir[s] = 0;
    this.sSlot[s] = slot;
    this.sSlotGen[s] = this.generation;
    return sizeBytes;
  }

  private grow(sizeBytes: number, continued: boolean): number {
    if (!continued) return sizeBytes;
    return Math.min(this.maxBytes, sizeBytes * (sizeBytes < this.fastBelowBytes ? 4 : 2));
  }

  /**
   * End of an upward window from `lo` with `sizeBytes` of data: the multiple of sizeBytes nearest
   * lo + sizeBytes (so a stream's windows settle on aligned blocks: one copy per data run, never
   * split at a 2 MiB span boundary), then zero pages not counted, never past `limit`.
   */
  private extendUp(lo: number, sizeBytes: number, limit: number): number {
    const hi = Math.min(limit, alignUp(lo + sizeBytes / 2, sizeBytes));
    return this.isZero === undefined ? hi : this.skipZeros(lo, hi, sizeBytes, limit, 1);
  }

  /** Start of a downward window ending at `hi`: the mirror image of extendUp. */
  private extendDown(hi: number, sizeBytes: number, limit: number): number {
    const lo = Math.max(limit, hi - sizeBytes / 2 - ((hi - sizeBytes / 2) % sizeBytes));
    return this.isZero === undefined ? lo : this.skipZeros(lo, hi, sizeBytes, limit, -1);
  }

  /** Moves the window's far edge (hi going up, lo going down) until it holds sizeBytes of data pages, and past a run of zero pages there. */
  private skipZeros(lo: number, hi: number, sizeBytes: number, limit: number, dir: 1 | -1): number {
    const ps = this.ps;
    const zero = this.isZero!;
    let data = 0;
    for (let p = lo; p < hi; p += ps) if (!zero(p, ps)) data += ps;
    if (dir === 1) {
      while (hi < limit && (data < sizeBytes || zero(hi, ps))) {
        if (!zero(hi, ps)) data += ps;
        hi += ps;
      }
      return hi;
    }
    while (lo > limit && (data < sizeBytes || zero(lo - ps, ps))) {
      lo -= ps;
      if (!zero(lo, ps)) data += ps;
    }
    return lo;
  }
}

function alignUp(x: number, to: number): number {
  const r = x % to;
  return r === 0 ? x : x - r + to;
}
