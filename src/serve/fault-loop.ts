import { decodeUffdMsg } from '../kernel/msg.js';
import type { UffdOps } from '../kernel/uffd.js';
import { FcUffdError } from '../errors.js';
import type { GuestMemory } from '../memory/regions.js';
import type { PageSource } from '../memory/source.js';
import type { FaultAroundPolicy } from './fault-around.js';
import { planFaultInstall } from './install-plan.js';
import { Installer } from './installer.js';
import { PageState } from './page-state.js';
import { PendingFaults, type PendingFault } from './pending-faults.js';
import { Prefetcher } from './prefetcher.js';
import { TouchRecorder, type RecordedTouches } from './recorder.js';
import type { VmStats } from './stats.js';
import { TRACE_KIND } from '../trace/format.js';
import type { TraceRecorder } from '../trace/recorder.js';
import { BalloonRemoves } from './balloon.js';
import { ExistsStreaks } from './exists-streak.js';
import { ReadAhead } from './read-ahead.js';
import { ioctlFailure, unexpectedEvent } from './vm-errors.js';

export { VmGoneError } from './vm-errors.js';

export type { RecordedTouches } from './recorder.js';

export interface FaultLoopOptions {
  memory: GuestMemory;
  source: PageSource;
  uffd: UffdOps;
  stats: VmStats;
  /** Which bytes to install around each fault (built per VM by faultAroundPolicyFor). */
  faultAround: FaultAroundPolicy;
  /** Milliseconds, monotonic. */
  now?: () => number;
  /** Record the first touch of each page (for a working-set file). */
  recordWorkingSet?: boolean;
  /** Pages (snapshot page indices) to install ahead of the guest, in this order. */
  prefetchPages?: Uint32Array;
  /** Records the restore timeline (serve --trace). */
  trace?: TraceRecorder | undefined;
}

/**
 * One VM's fault serving: reads batches of uffd_msg records, plans each fault's installs
 * (install-plan.ts, with the VM's FaultAroundPolicy), installs them (installer.ts), keeps what it
 * knows of each page (page-state.ts), defers what cannot be served yet, and runs the working-set
 * prefetch (prefetcher.ts) and recording (recorder.ts). It never waits itself (the thread's loop
 * feeds it) and reaches the kernel only through `UffdOps`, so tests drive it with a fake uffd.
 *
 * Ordering rules (docs/architecture.md, "One fault, end to end"):
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
  private readonly faultAround: FaultAroundPolicy;
  private readonly now: () => number;
  private readonly pages: PageState;
  private readonly installer: Installer;
  private readonly prefetcher: Prefetcher;
  private readonly recorder: TouchRecorder | undefined;
  private readonly pending = new PendingFaults();
  private readonly trace: TraceRecorder | undefined;
  private readonly existsStreak: ExistsStreaks;
  /** The fault addresses of the batch being handled (reused: no allocation per batch). */
  private readonly batch: number[] = [];
  /** The window of the fault being served (the policy's object: valid until its next call). */
  private window: { startOffset: number; lenBytes: number } = { startOffset: 0, lenBytes: 0 };
  private readonly readAhead: ReadAhead;
  private readonly balloon: BalloonRemoves;

  constructor(options: FaultLoopOptions) {
    this.memory = options.memory;
    this.source = options.source;
    this.uffd = options.uffd;
    this.stats = options.stats;
    this.pageSize = options.memory.pageSizeBytes;
    this.faultAround = options.faultAround;
    this.now = options.now ?? (() => performance.now());
    this.trace = options.trace;
    this.pages = new PageState(this.source, this.pageSize);
    this.existsStreak = new ExistsStreaks(this.pageSize);
    this.readAhead = new ReadAhead(this.source, this.pages, this.pageSize);
    this.balloon = new BalloonRemoves(this.memory, this.pages, this.existsStreak, this.stats, this.trace);
    if (options.recordWorkingSet) this.recorder = new TouchRecorder(this.source.sizeBytes, this.pageSize, this.now);
    this.installer = new Installer({
      uffd: this.uffd,
      source: this.source,
      pages: this.pages,
      stats: this.stats,
      pageSizeBytes: this.pageSize,
      recorder: this.recorder,
      trace: this.trace,
    });
    const prefetchPages = options.prefetchPages ?? new Uint32Array(0);
    this.prefetcher = new Prefetcher({
      memory: this.memory,
      source: this.source,
      uffd: this.uffd,
      pages: this.pages,
      installer: this.installer,
      stats: this.stats,
      prefetchPages,
    });
  }

  /** Handles `count` uffd_msg records read at `readAtMs`. Throws FcUffdError (fatal) or VmGoneError. */
  handleBatch(view: DataView, count: number, readAtMs: number): void {
    const faults = this.batch;
    faults.length = 0;
    for (let i = 0; i < count; i++) {
      const event = decodeUffdMsg(view, i);
      if (event.type === 'remove') this.balloon.apply(event.start, event.end);
      else if (event.type === 'pagefault') {
        faults.push(event.address);
        this.trace?.fault(event.address, event.write, readAtMs);
      } else throw unexpectedEvent(event);
    }
    if (this.pending.hasDeferred) this.retryDeferred();
    for (const address of faults) {
      this.stats.add('faults');
      this.serve(address, readAtMs, undefined);
    }
  }

  /** The pages installed on demand so far, in first-install order (empty unless recording). */
  recordedTouches(): RecordedTouches {
    return this.recorder?.touches() ?? { pages: new Uint32Array(0), timesMs: new Uint32Array(0) };
  }

  /** True when a prefetch step can run now. */
  get prefetchReady(): boolean {
    return this.prefetcher.ready;
  }

  /** One prefetch step (see Prefetcher.step); the caller serves pending faults between steps. */
  prefetchStep(): void {
    this.prefetcher.step();
  }

  /** The source has more data: retry the faults and the prefetch that waited for it. */
  sourceReady(): void {
    this.prefetcher.sourceReady();
    this.pending.retryWaiting((f) => this.serve(f.address, f.readAtMs, f));
  }

  /**
   * Microseconds the caller may block waiting for events: 0 while a prefetch step can run (only
   * peek, faults first), the EAGAIN backoff while faults or the prefetch are deferred, else -1
   * (forever: a fetching source wakes the loop through its wakeFd).
   */
  waitBudgetUs(): number {
    if (this.prefetcher.ready) return 0;
    return this.pending.hasDeferred || this.prefetcher.paused ? this.pending.backoffUs : -1;
  }

  /** Retries deferred faults; call when a wait ends, whatever woke it. */
  retryDeferred(): void {
    this.prefetcher.resume();
    this.pending.retryDeferred((f) => this.serve(f.address, f.readAtMs, f));
  }

  /** Faults not served yet: deferred after EAGAIN or waiting for the source. */
  get pendingCount(): number {
    return this.pending.count;
  }

  /**
   * The faults not served yet, one line each (address, how long put off, why), for the log of a VM
   * that ends with faults unserved: with the VMM's own report this tells a hang in the handler (the
   * vCPU's address listed here) from one elsewhere (not listed).
   */
  describePending(nowMs: number): string[] {
    return this.pending.describe(nowMs);
  }

  /** Snapshot ranges (file offsets) the balloon removed and nothing installed since. */
  removedRanges(): Array<[start: number, end: number]> {
    return this.pages.removedRanges();
  }

  /**
   * Serves a fault read now (`d` undefined) or put off before (`d`, with the window it was given):
   * a PendingFault is made only when a fault is put off the first time.
   */
  private serve(address: number, readAtMs: number, d: PendingFault | undefined): void {
    const outcome = this.serveFault(address, readAtMs, d?.window);
    if (outcome === 'served') {
      if (d?.deferredAtMs !== undefined) this.stats.max('maxDeferralUs', (this.now() - d.deferredAtMs) * 1000);
      return;
    }
    if (d === undefined) {
      // The policy's window is valid until its next call: keep a copy for the retries.
      d = { address, readAtMs, deferredAtMs: this.now(), window: { startOffset: this.window.startOffset, lenBytes: this.window.lenBytes } };
      if (outcome === 'retry') this.stats.add('deferrals');
      this.trace?.deferred(address, outcome === 'wait');
    }
    if (outcome === 'retry') this.pending.defer(d);
    else this.pending.wait(d);
  }

  /** Serves one fault: 'retry' after EAGAIN, 'wait' when the source does not hold the bytes yet. */
  private serveFault(address: number, readAtMs: number, retryWindow: PendingFault['window']): 'served' | 'retry' | 'wait' {
    const ps = this.pageSize;
    const page = address - (address % ps);
    const ri = this.memory.regionIndexOf(page);
    if (ri < 0)
      throw new FcUffdError(
        'VM_FAULT_OUTSIDE_REGIONS',
        `page fault at 0x${address.toString(16)} lies outside every region the VMM registered`,
        { address },
      );
    const region = this.memory.regions[ri]!;
    const offset = page - region.hostAddr + region.fileOffset;
    const regionEnd = region.fileOffset + region.sizeBytes;
    const window = (this.window = retryWindow ?? this.faultAround.window(offset, region.fileOffset, regionEnd));
    const windowEnd = window.startOffset + window.lenBytes;
    const runs = planFaultInstall(offset, window, ps, this.pages);
    const faultRun = runs[0]!;
    this.readAhead.request(window.startOffset, window.lenBytes, faultRun.kind, regionEnd);

    const outcome = this.installer.install(region, faultRun);
    if (outcome.status === 'retry' || outcome.status === 'wait') return outcome.status;
    if (outcome.faultPageExisted) {
      // Already mapped (a racing fault, a prefetch, or an install we did without waking): the
      // faulting thread still sleeps until someone wakes its address.
      this.existsStreak.count(page);
      const rc = this.uffd.wake(page, ps);
      if (rc < 0) throw ioctlFailure('UFFDIO_WAKE', page, ps, -rc);
    } else if (this.existsStreak.size > 0) {
      this.existsStreak.end(page);
    }
    const servedAtMs = this.now();
    this.stats.recordLatency((servedAtMs - readAtMs) * 1000);
    this.stats.recordWindow(window.lenBytes);
    this.trace?.served(address, offset, TRACE_KIND[faultRun.kind], readAtMs, servedAtMs);

    // The rest of the window. Neighbours are installed with wake on too: a vCPU may already wait on
    // one, and a wake with no waiter costs the kernel one check. Any refusal stops speculating.
    if (outcome.status === 'done') {
      for (let i = 1; i < runs.length; i++) if (this.installer.install(region, runs[i]!).status !== 'done') break;
    }
    this.readAhead.served(windowEnd);
    return 'served';
  }
}
