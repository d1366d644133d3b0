import { errnoName } from '../kernel/errors.js';
import { decodeUffdMsg, type UffdEvent } from '../kernel/msg.js';
import { classifyErrno } from '../kernel/policy.js';
import type { UffdOps } from '../kernel/uffd.js';
import { FcUffdError } from '../errors.js';
import { IntervalSet } from '../memory/intervals.js';
import type { GuestMemory, GuestRegion } from '../memory/regions.js';
import { SPAN_BOUNDARY_BYTES, type PageSource } from '../memory/source.js';
import type { VmStats } from './stats.js';

/** The VMM's address space is gone (ESRCH): it exited. Not an error of ours; stop quietly. */
export class VmGoneError extends FcUffdError {
  constructor(readonly op: string) {
    super('VM_GONE', `the VMM's address space is gone (${op} returned ESRCH)`, { op });
  }
}

export interface FaultLoopOptions {
  memory: GuestMemory;
  source: PageSource;
  uffd: UffdOps;
  stats: VmStats;
  /** Bytes installed around each fault, a power of two >= the page size (the page size: none). */
  faultAroundBytes: number;
  /** Milliseconds, monotonic. */
  now?: () => number;
  /** Record the first touch of each page (for a working-set file). */
  recordWorkingSet?: boolean;
  /** Pages (snapshot page indices) to install ahead of the guest, in this order. */
  prefetchPages?: Uint32Array;
}

/** What one VM touched, in first-touch order (see working-set.ts). */
export interface RecordedTouches {
  pages: Uint32Array;
  timesMs: Uint32Array;
}

/** Bytes a prefetch step installs before the loop looks at the uffd again: ~150 µs of copying. */
const PREFETCH_STEP_BYTES = 256 * 1024;
/** How far ahead of the prefetch cursor a fetching source is told what comes next. */
const PREFETCH_LOOKAHEAD_BYTES = 16 * 1024 * 1024;

interface Deferred {
  address: number;
  readAtMs: number;
  /** When it was first put off (EAGAIN, or its bytes still being fetched). */
  deferredAtMs?: number;
}

/** How a page is installed: snapshot bytes, a zero page, or a zero page because the balloon removed it. */
const DATA = 0;
const ZERO = 1;
const REMOVED = 2;
type Kind = typeof DATA | typeof ZERO | typeof REMOVED;

/** EAGAIN retries back off from 50 µs to at most 5 ms: short enough that a deferred vCPU is never parked long. */
const BACKOFF_MIN_US = 50;
const BACKOFF_MAX_US = 5000;
const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

/**
 * 'exists': the faulting page was mapped already, so nobody woke its waiter. 'failed': a
 * speculative install (a page nobody faulted on) was refused for a reason that would be fatal for
 * a faulted page, such as ENOENT when the VMM unmapped memory while we filled around a fault: stop
 * speculating, the VM is not harmed.
 */
type InstallResult = 'installed' | 'exists' | 'retry' | 'failed' | 'wait';

/**
 * One VM's fault-serving policy: which pages to install for a fault, from where, and what to do
 * with each answer of the kernel. It does no waiting itself (the worker's loop feeds it batches of
 * uffd_msg records) and reaches the kernel only through `UffdOps`, so tests can drive it with a
 * fake uffd.
 *
 * Ordering rules it implements (see docs/protocol notes in README):
 * - every REMOVE in a batch is applied before any fault of that batch is served, because the
 *   kernel can hand us a fault before the REMOVE that logically precedes it;
 * - a page whose snapshot content was removed by the balloon is served as zeros, forever after;
 * - EAGAIN defers the fault; it is retried after more events were read, with a capped backoff.
 */
export class FaultLoop {
  readonly memory: GuestMemory;
  private readonly source: PageSource;
  private readonly uffd: UffdOps;
  private readonly stats: VmStats;
  private readonly pageSize: number;
  private readonly faultAround: number;
  private readonly now: () => number;
  /** One bit per snapshot page: installed by us (cleared again by REMOVE). */
  private readonly present: Uint8Array;
  /** Snapshot ranges whose content the balloon discarded: served as zeros from then on. */
  private readonly dead = new IntervalSet();
  /** Removed and not installed since: what the next snapshot need not store. */
  private readonly removedUntouched = new IntervalSet();
  private deferred: Deferred[] = [];
  /** Faults on bytes the source is still fetching, retried by sourceReady(). */
  private waiting: Deferred[] = [];
  private backoffUs = BACKOFF_MIN_US;
  private zeroHugePage: Uint8Array | undefined;
  private readonly startMs: number;
  /** First-touch recording: one bit per page seen, and the pages/times in order. */
  private readonly touched: Uint8Array | undefined;
  private touchPages: number[] = [];
  private touchTimes: number[] = [];
  private readonly prefetchPages: Uint32Array;
  private prefetchCursor = 0;
  /** End of the last fault's block: a fault whose block starts there continues a sequential stream. */
  private lastBlockEnd = -1;
  /** Prefetch waits for the source (bytes being fetched) until sourceReady(). */
  private prefetchBlocked = false;
  /** Prefetch hit EAGAIN: it resumes after the next wait (events read, backoff passed). */
  private prefetchPaused = false;
  /** Pages up to here were announced to the source with prepare(). */
  private hintCursor = 0;

  constructor(options: FaultLoopOptions) {
    this.memory = options.memory;
    this.source = options.source;
    this.uffd = options.uffd;
    this.stats = options.stats;
    this.pageSize = options.memory.pageSizeBytes;
    this.faultAround = Math.max(options.faultAroundBytes, this.pageSize);
    if ((this.faultAround & (this.faultAround - 1)) !== 0)
      throw new FcUffdError('CONFIG', `fault-around must be a power of two, got ${options.faultAroundBytes}`);
    this.now = options.now ?? (() => performance.now());
    this.present = new Uint8Array(Math.ceil(this.source.sizeBytes / this.pageSize / 8));
    this.startMs = this.now();
    if (options.recordWorkingSet) this.touched = new Uint8Array(this.present.length);
    this.prefetchPages = options.prefetchPages ?? new Uint32Array(0);
  }

  /** Handles `count` uffd_msg records read at `readAtMs`. Throws FcUffdError (fatal) or VmGoneError. */
  handleBatch(view: DataView, count: number, readAtMs: number): void {
    const faults: number[] = [];
    for (let i = 0; i < count; i++) {
      const event = decodeUffdMsg(view, i);
      if (event.type === 'remove') this.applyRemove(event.start, event.end);
      else if (event.type === 'pagefault') faults.push(event.address);
      else this.unexpected(event);
    }
    if (this.deferred.length > 0) this.retryDeferred();
    for (const address of faults) {
      this.stats.add('faults');
      this.serve({ address, readAtMs });
    }
  }

  private serve(d: Deferred): void {
    const outcome = this.serveFault(d.address, d.readAtMs);
    if (outcome === 'served') {
      if (d.deferredAtMs !== undefined) this.stats.max('maxDeferralUs', (this.now() - d.deferredAtMs) * 1000);
      return;
    }
    if (d.deferredAtMs === undefined) {
      d.deferredAtMs = this.now();
      if (outcome === 'retry') this.stats.add('deferrals');
    }
    if (outcome === 'retry') this.deferred.push(d);
    else this.waiting.push(d);
  }

  /**
   * Records pages installed for a fault: the faulting page and its fault-around neighbours. The
   * neighbours count because the guest reads an installed page without faulting, so only what was
   * installed on demand tells what a prefetch must cover to spare the same faults.
   */
  private recordInstall(fileOffset: number, len: number): void {
    const t = Math.max(0, Math.round(this.now() - this.startMs));
    for (let page = fileOffset / this.pageSize, end = (fileOffset + len) / this.pageSize; page < end; page++) {
      const bit = 1 << (page & 7);
      if (this.touched![page >>> 3]! & bit) continue;
      this.touched![page >>> 3]! |= bit;
      this.touchPages.push(page);
      this.touchTimes.push(t);
    }
  }

  /** The pages installed on demand so far, in first-install order (empty unless recording). */
  recordedTouches(): RecordedTouches {
    return { pages: Uint32Array.from(this.touchPages), timesMs: Uint32Array.from(this.touchTimes) };
  }

  /** True when a prefetch step can run now: pages remain and nothing it waits for is missing. */
  get prefetchReady(): boolean {
    return this.prefetchCursor < this.prefetchPages.length && !this.prefetchBlocked && !this.prefetchPaused;
  }

  /**
   * Tells the source which bytes the prefetch needs next, PREFETCH_LOOKAHEAD_BYTES ahead, as runs of
   * consecutive data pages (one hint per run: a syscall or a chunk request, not one per page).
   */
  private announcePrefetch(): void {
    const ps = this.pageSize;
    const end = Math.min(this.prefetchPages.length, this.prefetchCursor + PREFETCH_LOOKAHEAD_BYTES / ps);
    if (this.hintCursor < this.prefetchCursor) this.hintCursor = this.prefetchCursor;
    let runStart = -1;
    let runEnd = -1;
    for (; this.hintCursor < end; this.hintCursor++) {
      const fileOffset = this.prefetchPages[this.hintCursor]! * ps;
      if (this.isPresent(fileOffset) || this.source.isZero(fileOffset, ps)) continue;
      if (fileOffset === runEnd) {
        runEnd += ps;
        continue;
      }
      if (runStart >= 0) this.source.prepare(runStart, runEnd - runStart);
      runStart = fileOffset;
      runEnd = fileOffset + ps;
    }
    if (runStart >= 0) this.source.prepare(runStart, runEnd - runStart);
  }

  /**
   * Installs the next prefetch pages, about PREFETCH_STEP_BYTES, as coalesced ranged installs
   * without waking anyone, then one wake over the step's span (a vCPU that faulted on one of them
   * meanwhile resumes; a spurious wake only makes a thread re-check its page). Pages already
   * installed, removed by the balloon, or not held by the source yet are skipped. The caller
   * serves pending faults between steps, so prefetch never delays an on-demand fault by more
   * than one step.
   */
  prefetchStep(): void {
    const ps = this.pageSize;
    this.announcePrefetch();
    let budget = PREFETCH_STEP_BYTES;
    let lo = Infinity;
    let hi = -Infinity;
    while (budget > 0 && this.prefetchCursor < this.prefetchPages.length) {
      const runIndex = this.prefetchCursor;
      const runFirst = this.prefetchPages[this.prefetchCursor++]!;
      let first = runFirst;
      let count = 1;
      // Coalesce a run of consecutive page indices (recorded order is mostly ascending runs).
      while (this.prefetchCursor < this.prefetchPages.length && this.prefetchPages[this.prefetchCursor] === first + count && count * ps < budget) {
        count++;
        this.prefetchCursor++;
      }
      budget -= count * ps;
      while (count > 0) {
        const fileOffset = first * ps;
        const ri = this.memory.regionIndexOfFileOffset(fileOffset);
        if (ri < 0 || this.isPresent(fileOffset) || (this.dead.rangeCount > 0 && this.dead.has(fileOffset))) {
          first++;
          count--;
          continue;
        }
        const region = this.memory.regions[ri]!;
        const kind = this.kindOf(fileOffset);
        let n = 1;
        const regionEnd = region.fileOffset + region.sizeBytes;
        while (n < count && fileOffset + n * ps < regionEnd && !this.isPresent(fileOffset + n * ps) && this.kindOf(fileOffset + n * ps) === kind) n++;
        const result = this.install(region, fileOffset, n * ps, kind, -1, false);
        if (result === 'retry' || result === 'wait') {
          // The address space is changing (balloon), or the source is still fetching these bytes:
          // resume from this page after the next wait.
          this.prefetchCursor = runIndex + (first - runFirst);
          if (result === 'retry') this.prefetchPaused = true;
          else this.prefetchBlocked = true;
          budget = 0;
          break;
        }
        if (result === 'installed') {
          const host = fileOffset - region.fileOffset + region.hostAddr;
          lo = Math.min(lo, host);
          hi = Math.max(hi, host + n * ps);
          this.stats.add('prefetchedPages', n);
        }
        first += n;
        count -= n;
      }
    }
    if (hi > lo) {
      const rc = this.uffd.wake(lo, hi - lo);
      if (rc < 0) this.fatalOrGone('UFFDIO_WAKE', lo, hi - lo, -rc);
    }
  }

  /** The source has more data: retry the faults that waited for it. */
  sourceReady(): void {
    this.prefetchBlocked = false;
    const pending = this.waiting;
    this.waiting = [];
    for (const d of pending) this.serve(d);
  }

  /**
   * Microseconds the caller may block waiting for events: 0 while a prefetch step can run (only
   * peek, faults first), the EAGAIN backoff while faults or the prefetch are deferred, else -1
   * (forever: a fetching source wakes the loop through its wakeFd).
   */
  waitBudgetUs(): number {
    if (this.prefetchReady) return 0;
    return this.deferred.length > 0 || this.prefetchPaused ? this.backoffUs : -1;
  }

  /** Retries deferred faults; call when a wait ends, whatever woke it. */
  retryDeferred(): void {
    this.prefetchPaused = false;
    if (this.deferred.length === 0) return;
    const pending = this.deferred;
    this.deferred = [];
    for (const d of pending) this.serve(d);
    // Progress means the address space settled: retry the rest soon. No progress: back off.
    const progressed = this.deferred.length < pending.length;
    this.backoffUs = progressed || this.deferred.length === 0 ? BACKOFF_MIN_US : Math.min(this.backoffUs * 2, BACKOFF_MAX_US);
  }

  /** Faults not served yet: deferred after EAGAIN or waiting for the source. */
  get pendingCount(): number {
    return this.deferred.length + this.waiting.length;
  }

  /** Snapshot ranges (file offsets) the balloon removed and nothing installed since. */
  removedRanges(): Array<[start: number, end: number]> {
    return this.removedUntouched.toArray();
  }

  private unexpected(event: UffdEvent): never {
    throw new FcUffdError(
      'VM_UNEXPECTED_EVENT',
      `unexpected userfaultfd event ${event.type}${event.type === 'unknown' ? ` (0x${event.code.toString(16)})` : ''}: Firecracker requests only page faults and REMOVE`,
      { event },
    );
  }

  private applyRemove(start: number, end: number): void {
    this.stats.add('removeEvents');
    for (const r of this.memory.regions) {
      const s = Math.max(start, r.hostAddr);
      const e = Math.min(end, r.hostAddr + r.sizeBytes);
      if (s >= e) continue;
      const fs = s - r.hostAddr + r.fileOffset;
      const fe = e - r.hostAddr + r.fileOffset;
      this.dead.add(fs, fe);
      this.removedUntouched.add(fs, fe);
      this.setPresent(fs, fe - fs, false);
      this.stats.add('bytesRemoved', fe - fs);
    }
  }

  private isPresent(fileOffset: number): boolean {
    const p = fileOffset / this.pageSize;
    return (this.present[p >>> 3]! & (1 << (p & 7))) !== 0;
  }

  private setPresent(fileOffset: number, len: number, on: boolean): void {
    const first = Math.floor(fileOffset / this.pageSize);
    const last = Math.ceil((fileOffset + len) / this.pageSize);
    for (let p = first; p < last; p++) {
      if (on) this.present[p >>> 3]! |= 1 << (p & 7);
      else this.present[p >>> 3]! &= ~(1 << (p & 7));
    }
  }

  private kindOf(fileOffset: number): Kind {
    if (this.dead.rangeCount > 0 && this.dead.has(fileOffset)) return REMOVED;
    return this.source.isZero(fileOffset, this.pageSize) ? ZERO : DATA;
  }

  /** Serves one fault: 'retry' after EAGAIN, 'wait' when the source does not hold the bytes yet. */
  private serveFault(address: number, readAtMs: number): 'served' | 'retry' | 'wait' {
    const ps = this.pageSize;
    const page = address - (address % ps);
    const ri = this.memory.regionIndexOf(page);
    if (ri < 0)
      throw new FcUffdError('VM_FAULT_OUTSIDE_REGIONS', `page fault at 0x${address.toString(16)} lies outside every region the VMM registered`, { address });
    const region = this.memory.regions[ri]!;
    const fileOffset = page - region.hostAddr + region.fileOffset;

    // The faulting page first, woken at once, together with the following pages of the
    // fault-around block that are of the same kind and not yet installed.
    const blockStart = Math.max(region.fileOffset, fileOffset - (fileOffset % this.faultAround));
    const blockEnd = Math.min(region.fileOffset + region.sizeBytes, blockStart + this.faultAround);
    const kind = this.kindOf(fileOffset);
    let runEnd = fileOffset + ps;
    while (runEnd < blockEnd && !this.isPresent(runEnd) && this.kindOf(runEnd) === kind) runEnd += ps;

    // One read-ahead request before the first copy: the block (on a cold page cache the copy would
    // otherwise fault the source in read-around windows, one synchronous read each) and, when this
    // fault continues a sequential stream, the next block too — 96 % of a real guest's restore
    // faults land within 64 KiB of the previous one. Scattered faults read no further ahead.
    const regionEnd = region.fileOffset + region.sizeBytes;
    const stream = blockStart === this.lastBlockEnd && blockEnd < regionEnd && !this.isPresent(blockEnd);
    const aheadStart = kind === DATA && blockEnd - blockStart > ps ? blockStart : blockEnd;
    const aheadEnd = stream ? Math.min(regionEnd, blockEnd + this.faultAround) : blockEnd;
    if (aheadEnd > aheadStart) this.source.prepare(aheadStart, aheadEnd - aheadStart);
    const result = this.install(region, fileOffset, runEnd - fileOffset, kind, fileOffset);
    if (result === 'retry' || result === 'wait') return result;
    if (result === 'exists') {
      // Already mapped (a racing fault, a prefetch, or an install we did without waking): the
      // faulting thread still sleeps until someone wakes its address.
      const rc = this.uffd.wake(page, ps);
      if (rc < 0) this.fatalOrGone('UFFDIO_WAKE', page, ps, -rc);
    }
    this.stats.recordLatency((this.now() - readAtMs) * 1000);

    // The rest of the block, page runs by kind, skipping what is installed. Neighbours are
    // installed with wake on too: a vCPU may already wait on one, and a wake with no waiter costs
    // the kernel one check.
    let p = blockStart;
    while (p < blockEnd) {
      if ((p >= fileOffset && p < runEnd) || this.isPresent(p)) {
        p += ps;
        continue;
      }
      const k = this.kindOf(p);
      let e = p + ps;
      while (e < blockEnd && !(e >= fileOffset && e < runEnd) && !this.isPresent(e) && this.kindOf(e) === k) e += ps;
      if (this.install(region, p, e - p, k, -1) !== 'installed') break;
      p = e;
    }
    this.lastBlockEnd = blockEnd;
    return 'served';
  }

  /**
   * Installs [fileOffset, fileOffset + len) of `region` with COPY or ZEROPAGE, resuming after
   * partial progress and stepping over pages that already exist. `faultFileOffset` is the faulted
   * page when the range holds it, -1 for a speculative install.
   */
  private install(region: GuestRegion, fileOffset: number, len: number, kind: Kind, faultFileOffset: number, wake = true): InstallResult {
    const ps = this.pageSize;
    const hostBase = region.hostAddr - region.fileOffset;
    let result: InstallResult = 'installed';
    let done = 0;
    while (done < len) {
      const off = fileOffset + done;
      const dst = hostBase + off;
      let rc: number;
      let op: string;
      if (kind === DATA) {
        const n = Math.min(len - done, SPAN_BOUNDARY_BYTES - (off % SPAN_BOUNDARY_BYTES));
        const span = this.source.span(off, n);
        if (span === undefined) return 'wait';
        op = 'UFFDIO_COPY';
        rc = this.uffd.copy(dst, span.src, span.srcOffset, n, wake);
      } else if (ps === HUGE_PAGE_BYTES) {
        // hugetlbfs has no UFFDIO_ZEROPAGE: copy a zero huge page.
        this.zeroHugePage ??= new Uint8Array(HUGE_PAGE_BYTES);
        op = 'UFFDIO_COPY';
        rc = this.uffd.copy(dst, this.zeroHugePage, 0, ps, wake);
      } else {
        op = 'UFFDIO_ZEROPAGE';
        rc = this.uffd.zeropage(dst, len - done, wake);
      }
      this.stats.add('installIoctls');
      if (rc > 0) {
        this.installed(off, rc, kind);
        if (this.touched && wake) this.recordInstall(off, rc);
        done += rc;
        continue;
      }
      const errno = -rc;
      switch (classifyErrno(errno)) {
        case 'exists':
          this.stats.add('eexist');
          this.setPresent(off, ps, true);
          if (off === faultFileOffset) result = 'exists';
          done += ps;
          break;
        case 'retry':
          this.stats.add('eagain');
          return 'retry';
        default:
          if (faultFileOffset < 0 && classifyErrno(errno) === 'fatal') {
            this.stats.add('speculativeErrors');
            return 'failed';
          }
          this.fatalOrGone(op, dst, len - done, errno);
      }
    }
    return result;
  }

  private installed(fileOffset: number, len: number, kind: Kind): void {
    this.setPresent(fileOffset, len, true);
    if (this.removedUntouched.rangeCount > 0 && this.removedUntouched.intersects(fileOffset, fileOffset + len))
      this.removedUntouched.delete(fileOffset, fileOffset + len);
    const pages = len / this.pageSize;
    if (kind === DATA) {
      this.stats.add('pagesCopied', pages);
      this.stats.add('bytesCopied', len);
    } else {
      this.stats.add('pagesZeroed', pages);
      if (kind === REMOVED) this.stats.add('zeroPagesForRemoved', pages);
    }
  }

  private fatalOrGone(op: string, addr: number, len: number, errno: number): never {
    if (classifyErrno(errno) === 'gone') throw new VmGoneError(op);
    throw new FcUffdError('VM_IOCTL', `${op} of ${len} bytes at 0x${addr.toString(16)} failed: ${errnoName(errno)} (errno ${errno})`, {
      op,
      address: addr,
      len,
      errno,
    });
  }
}
