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
 * A source that fetches from far away (PageSource.prepareAhead) is told instead the pages of up to
 * PREFETCH_AHEAD_REGIONS distinct PREFETCH_REGION_BYTES regions of the snapshot ahead of the cursor
 * (a chunked source keeps a chunk of each: at most 64 MiB of 4 MiB chunks, of a 1 GiB default
 * cache), and never more than PREFETCH_AHEAD_MAX_BYTES of working-set pages.
 *
 * Measured (bench/remote.ts, S3 on Ceph RGW, working set + cold disk cache, 3 runs): with only the
 * 16 MiB of pages, the last chunks of the 128 MiB guest's working set were asked for ~300 ms into a
 * ~500 ms restore, and the restore waited for them; telling the source the whole working set took
 * 50-60 ms off at both links. Counted in regions, so a big, sparse working set does not name every
 * chunk at once. Not for a memory file: announcing that much at once delayed the first installs of a
 * warm-cache prefetch (bench suite fault-path, sparse-real: 74 -> 86 ms, 13 -> 21 faults).
 */
const PREFETCH_REGION_BYTES = 4 * 1024 * 1024;
const PREFETCH_AHEAD_REGIONS = 16;
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
  /** Pages up to here were announced to the source (prepare() or prepareAhead()). */
  private hintCursor = 0;
  /** Regions announced with prepareAhead() and not yet passed by the cursor: region index -> the last page index announced in it. */
  private readonly regionsAhead = new Map<number, number>();

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
   * further ahead with prepareAhead() (see PREFETCH_AHEAD_REGIONS).
   */
  private announce(): void {
    const { source, prefetchPages } = this.o;
    const ps = this.ps;
    this.hintCursor = Math.max(this.hintCursor, this.cursor);
    if (!source.prepareAhead) {
      const end = Math.min(prefetchPages.length, this.cursor + PREFETCH_LOOKAHEAD_BYTES / ps);
      this.hintCursor = this.announceRuns(this.hintCursor, end, (off, len) => source.prepare(off, len));
      return;
    }
    for (const [region, last] of this.regionsAhead) if (last < this.cursor) this.regionsAhead.delete(region);
    const end = Math.min(prefetchPages.length, this.cursor + PREFETCH_AHEAD_MAX_BYTES / ps);
    this.hintCursor = this.announceRuns(
      this.hintCursor,
      end,
      (off, len) => source.prepareAhead!(off, len),
      (offset, index) => {
        const region = Math.floor(offset / PREFETCH_REGION_BYTES);
        if (!this.regionsAhead.has(region) && this.regionsAhead.size >= PREFETCH_AHEAD_REGIONS) return false;
        this.regionsAhead.set(region, index);
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
