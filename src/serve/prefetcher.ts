import type { UffdOps } from '../kernel/uffd.js';
import type { GuestMemory } from '../memory/regions.js';
import type { PageSource } from '../memory/source.js';
import type { Installer } from './installer.js';
import type { PageState } from './page-state.js';
import type { VmStats } from './stats.js';
import { ioctlFailure } from './vm-errors.js';

/** Bytes a prefetch step installs before the loop looks at the uffd again: ~150 µs of copying. */
const PREFETCH_STEP_BYTES = 256 * 1024;
/** How far ahead of the prefetch cursor a source is told what comes next (prepare()). */
const PREFETCH_LOOKAHEAD_BYTES = 16 * 1024 * 1024;
/**
 * A source that fetches from far away (PageSource.fetchAhead) is told instead the pages of as many
 * of its fetch units (chunks) ahead of the cursor as it says it may hold (FetchAhead.units: the
 * chunked source allows 16 chunks of 4 MiB with the default cache, fewer for bigger chunks or a
 * smaller cache), and never more than PREFETCH_AHEAD_MAX_BYTES of working-set pages.
 *
 * Measured (bench/remote.ts, S3 on Ceph RGW, working set + cold disk cache, 3 runs): with only the
 * 16 MiB of pages, the last chunks of the 128 MiB guest's working set were asked for ~300 ms into a
 * ~500 ms restore, and the restore waited for them; telling the source the whole working set took
 * 50-60 ms off at both links. Counted in units, so a big, sparse working set does not name every
 * chunk at once (a fixed 16 regions of 4 MiB could name 16 chunks of 64 MiB). Not for a memory
 * file: announcing that much at once delayed the first installs of a warm-cache prefetch (bench
 * suite fault-path, sparse-real: 74 -> 86 ms, 13 -> 21 faults).
 */
const PREFETCH_AHEAD_MAX_BYTES = 256 * 1024 * 1024;

export interface PrefetcherOptions {
  memory: GuestMemory;
  source: PageSource;
  uffd: UffdOps;
  pages: PageState;
  installer: Installer;
  stats: VmStats;
  /** Snapshot page indices to install ahead of the guest, in this order. */
  prefetchPages: Uint32Array;
}

/**
 * Installs a working set ahead of the guest, in steps of about PREFETCH_STEP_BYTES between which
 * the loop serves every pending fault, so prefetch never delays an on-demand fault by more than one
 * step. Its installs are speculative (a refusal skips the run, never ends the VM) and do not wake;
 * one wake per step covers a vCPU that faulted on one of them meanwhile.
 */
export class Prefetcher {
  private readonly o: PrefetcherOptions;
  private readonly ps: number;
  private cursor = 0;
  /** Waits for the source (bytes being fetched) until sourceReady(). */
  private blocked = false;
  /** Hit EAGAIN: resumes after the next wait (events read, backoff passed). */
  private pausedFlag = false;
  /** Pages up to here were announced to the source (prepare() or fetchAhead.prepare()). */
  private hintCursor = 0;
  /** Fetch units announced with fetchAhead and not yet passed by the cursor: unit index -> the last page index announced in it. */
  private readonly unitsAhead = new Map<number, number>();

  constructor(o: PrefetcherOptions) {
    this.o = o;
    this.ps = o.memory.pageSizeBytes;
  }

  /** True when a step can run now: pages remain and nothing it waits for is missing. */
  get ready(): boolean {
    return this.cursor < this.o.prefetchPages.length && !this.blocked && !this.pausedFlag;
  }

  /** Paused after EAGAIN: the loop waits no longer than its backoff. */
  get paused(): boolean {
    return this.pausedFlag;
  }

  /** The source has more data. */
  sourceReady(): void {
    this.blocked = false;
  }

  /** A wait ended (events read or the backoff passed): an EAGAIN-paused prefetch may go on. */
  resume(): void {
    this.pausedFlag = false;
  }

  /**
   * Installs the next pages, about PREFETCH_STEP_BYTES, as coalesced ranged installs, then one wake
   * over the step's span. Pages already installed, removed by the balloon, outside every region or
   * not held by the source yet are skipped.
   */
  step(): void {
    const { memory, pages, installer, stats, prefetchPages } = this.o;
    const ps = this.ps;
    this.announce();
    let budget = PREFETCH_STEP_BYTES;
    let lo = Infinity;
    let hi = -Infinity;
    while (budget > 0 && this.cursor < prefetchPages.length) {
      const runIndex = this.cursor;
      const runFirst = prefetchPages[this.cursor++]!;
      let first = runFirst;
      let count = 1;
      // Coalesce a run of consecutive page indices (recorded order is mostly ascending runs).
      while (this.cursor < prefetchPages.length && prefetchPages[this.cursor] === first + count && count * ps < budget) {
        count++;
        this.cursor++;
      }
      budget -= count * ps;
      while (count > 0) {
        const offset = first * ps;
        const ri = memory.regionIndexOfFileOffset(offset);
        if (ri < 0 || pages.isInstalled(offset) || pages.isRemoved(offset)) {
          first++;
          count--;
          continue;
        }
        const region = memory.regions[ri]!;
        const kind = pages.kindOf(offset);
        const regionEnd = region.fileOffset + region.sizeBytes;
        let n = 1;
        while (n < count && offset + n * ps < regionEnd && !pages.isInstalled(offset + n * ps) && pages.kindOf(offset + n * ps) === kind)
          n++;
        const outcome = installer.install(region, { startOffset: offset, lenBytes: n * ps, kind, origin: 'prefetch', speculative: true });
        if (outcome.status === 'retry' || outcome.status === 'wait') {
          // The address space is changing (balloon), or the source is still fetching these bytes:
          // resume from this page after the next wait.
          this.cursor = runIndex + (first - runFirst);
          if (outcome.status === 'retry') this.pausedFlag = true;
          else this.blocked = true;
          budget = 0;
          break;
        }
        if (outcome.status === 'done') {
          const host = offset - region.fileOffset + region.hostAddr;
          lo = Math.min(lo, host);
          hi = Math.max(hi, host + n * ps);
          stats.add('prefetchedPages', n);
        }
        first += n;
        count -= n;
      }
    }
    if (hi > lo) {
      const rc = this.o.uffd.wake(lo, hi - lo);
      if (rc < 0) throw ioctlFailure('UFFDIO_WAKE', lo, hi - lo, -rc);
    }
  }

  /**
   * Tells the source which bytes the prefetch needs next, as runs of pages it does not hold yet:
   * PREFETCH_LOOKAHEAD_BYTES ahead with prepare(), or to a source that fetches from far away,
   * further ahead with fetchAhead.prepare() (see PREFETCH_AHEAD_MAX_BYTES).
   */
  private announce(): void {
    const { source, prefetchPages } = this.o;
    const ps = this.ps;
    this.hintCursor = Math.max(this.hintCursor, this.cursor);
    const ahead = source.fetchAhead;
    if (!ahead) {
      const end = Math.min(prefetchPages.length, this.cursor + PREFETCH_LOOKAHEAD_BYTES / ps);
      this.hintCursor = this.announceRuns(this.hintCursor, end, (off, len) => source.prepare(off, len));
      return;
    }
    for (const [unit, last] of this.unitsAhead) if (last < this.cursor) this.unitsAhead.delete(unit);
    const end = Math.min(prefetchPages.length, this.cursor + PREFETCH_AHEAD_MAX_BYTES / ps);
    this.hintCursor = this.announceRuns(
      this.hintCursor,
      end,
      (off, len) => ahead.prepare(off, len),
      (offset, index) => {
        const unit = Math.floor(offset / ahead.unitBytes);
        if (!this.unitsAhead.has(unit) && this.unitsAhead.size >= ahead.units) return false;
        this.unitsAhead.set(unit, index);
        return true;
      },
    );
  }

  /**
   * Hands `hint` the working-set pages [from, end) that are neither installed nor zero, as runs of
   * consecutive pages, stopping early at a page `admit` refuses. Returns where it stopped.
   */
  private announceRuns(
    from: number,
    end: number,
    hint: (fileOffset: number, len: number) => void,
    admit?: (fileOffset: number, index: number) => boolean,
  ): number {
    const { source, pages, prefetchPages } = this.o;
    const ps = this.ps;
    let runStart = -1;
    let runEnd = -1;
    let i = from;
    for (; i < end; i++) {
      const offset = prefetchPages[i]! * ps;
      if (pages.isInstalled(offset) || source.isZero(offset, ps)) continue;
      if (admit && !admit(offset, i)) break;
      if (offset === runEnd) {
        runEnd += ps;
        continue;
      }
      if (runStart >= 0) hint(runStart, runEnd - runStart);
      runStart = offset;
      runEnd = offset + ps;
    }
    if (runStart >= 0) hint(runStart, runEnd - runStart);
    return i;
  }
}
