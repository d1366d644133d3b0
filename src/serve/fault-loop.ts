import { decodeUffdMsg } from '../kernel/msg.js';
import type { UffdOps } from '../kernel/uffd.js';
import type { GuestMemory } from '../memory/regions.js';
import type { PageSource } from '../memory/source.js';
import type { FaultAroundPolicy } from './fault-around.js';
import { FaultServer } from './fault-server.js';
import { Installer } from './installer.js';
import { PageState } from './page-state.js';
import { PendingFaults, type PendingFault } from './pending-faults.js';
import { Prefetcher } from './prefetcher.js';
import { TouchRecorder, type RecordedTouches } from './recorder.js';
import type { VmStats } from './stats.js';
import type { TraceRecorder } from '../trace/recorder.js';
import { BalloonRemoves } from './balloon.js';
import { ExistsStreaks } from './exists-streak.js';
import { unexpectedEvent } from './vm-errors.js';

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
 * One VM's fault serving: reads batches of uffd_msg records, applies the balloon's REMOVEs
 * (balloon.ts), serves each fault (fault-server.ts: window, plan, installs), defers what cannot be
 * served yet (pending-faults.ts), and runs the working-set prefetch (prefetcher.ts) and recording
 * (recorder.ts). It never waits itself (the thread's loop feeds it) and reaches the kernel only
 * through `UffdOps`, so tests drive it with a fake uffd.
 *
 * Ordering rules (docs/architecture.md, "One fault, end to end"):
 * - every REMOVE in a batch is applied before any fault of that batch is served, because the
 *   kernel can hand us a fault before the REMOVE that logically precedes it;
 * - a page whose snapshot content was removed by the balloon is served as zeros, forever after;
 * - EAGAIN defers the fault; it is retried after more events were read, with a capped backoff.
 */
export class FaultLoop {
  readonly memory: GuestMemory;
  private readonly stats: VmStats;
  private readonly now: () => number;
  private readonly pages: PageState;
  private readonly faultServer: FaultServer;
  private readonly prefetcher: Prefetcher;
  private readonly recorder: TouchRecorder | undefined;
  private readonly pending = new PendingFaults();
  private readonly trace: TraceRecorder | undefined;
  /** The fault addresses of the batch being handled (reused: no allocation per batch). */
  private readonly batch: number[] = [];
  private readonly balloon: BalloonRemoves;

  constructor(options: FaultLoopOptions) {
    const { memory, source, uffd, stats } = options;
    const pageSize = memory.pageSizeBytes;
    this.memory = memory;
    this.stats = stats;
    this.now = options.now ?? (() => performance.now());
    this.trace = options.trace;
    this.pages = new PageState(source, pageSize);
    const existsStreak = new ExistsStreaks(pageSize);
    this.balloon = new BalloonRemoves(memory, this.pages, existsStreak, stats, this.trace);
    if (options.recordWorkingSet) this.recorder = new TouchRecorder(source.sizeBytes, pageSize, this.now);
    const installer = new Installer({
      uffd,
      source,
      pages: this.pages,
      stats,
      pageSizeBytes: pageSize,
      recorder: this.recorder,
      trace: this.trace,
    });
    this.faultServer = new FaultServer({
      memory,
      source,
      uffd,
      stats,
      faultAround: options.faultAround,
      pages: this.pages,
      installer,
      existsStreak,
      now: this.now,
      trace: this.trace,
    });
    const prefetchPages = options.prefetchPages ?? new Uint32Array(0);
    this.prefetcher = new Prefetcher({ memory, source, uffd, pages: this.pages, installer, stats, prefetchPages });
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
    const outcome = this.faultServer.serve(address, readAtMs, d?.window);
    if (outcome === 'served') {
      if (d?.deferredAtMs !== undefined) this.stats.max('maxDeferralUs', (this.now() - d.deferredAtMs) * 1000);
      return;
    }
    if (d === undefined) {
      // The policy's window is valid until its next call: keep a copy for the retries.
      d = { address, readAtMs, deferredAtMs: this.now(), window: this.faultServer.lastWindowCopy() };
      if (outcome === 'retry') this.stats.add('deferrals');
      this.trace?.deferred(address, outcome === 'wait');
    }
    if (outcome === 'retry') this.pending.defer(d);
    else this.pending.wait(d);
  }
}
