import type { UffdOps } from '../kernel/uffd.js';
import { FcUffdError } from '../errors.js';
import type { GuestMemory } from '../memory/regions.js';
import type { PageSource } from '../memory/source.js';
import { TRACE_KIND } from '../trace/format.js';
import type { TraceRecorder } from '../trace/recorder.js';
import type { ExistsStreaks } from './exists-streak.js';
import type { FaultAroundPolicy } from './fault-around.js';
import { planFaultInstall } from './install-plan.js';
import type { Installer } from './installer.js';
import type { PageState } from './page-state.js';
import { ReadAhead } from './read-ahead.js';
import type { VmStats } from './stats.js';
import { ioctlFailure } from './vm-errors.js';

/** A fault-around window: snapshot offset and length. */
export interface FaultWindow {
  startOffset: number;
  lenBytes: number;
}

export interface FaultServerOptions {
  memory: GuestMemory;
  source: PageSource;
  uffd: UffdOps;
  stats: VmStats;
  faultAround: FaultAroundPolicy;
  pages: PageState;
  installer: Installer;
  /** Shared with the balloon's REMOVEs, which end the streaks of the pages they remove. */
  existsStreak: ExistsStreaks;
  /** Milliseconds, monotonic. */
  now: () => number;
  trace?: TraceRecorder | undefined;
}

/**
 * Serves one page fault, once: page -> region -> snapshot offset, the window from the VM's
 * FaultAroundPolicy (asked once per fault: a retry passes the window of its first try), the installs
 * planned (install-plan.ts) with one read-ahead request before the first, the faulting run
 * installed first (installer.ts), a wake when the faulting page was mapped already (counted against
 * its EEXIST streak), then the served fault's latency, window and trace record, then the rest of the
 * window. It never queues anything: 'retry' and 'wait' go back to the FaultLoop, which defers.
 * On the per-fault path: nothing is allocated here beyond what the planner returns.
 */
export class FaultServer {
  private readonly memory: GuestMemory;
  private readonly uffd: UffdOps;
  private readonly stats: VmStats;
  private readonly pageSize: number;
  private readonly faultAround: FaultAroundPolicy;
  private readonly pages: PageState;
  private readonly installer: Installer;
  private readonly existsStreak: ExistsStreaks;
  private readonly readAhead: ReadAhead;
  private readonly now: () => number;
  private readonly trace: TraceRecorder | undefined;
  /** The window of the last fault tried (the policy's object: valid until its next call). */
  private lastWindow: FaultWindow = { startOffset: 0, lenBytes: 0 };

  constructor(o: FaultServerOptions) {
    this.memory = o.memory;
    this.uffd = o.uffd;
    this.stats = o.stats;
    this.pageSize = o.memory.pageSizeBytes;
    this.faultAround = o.faultAround;
    this.pages = o.pages;
    this.installer = o.installer;
    this.existsStreak = o.existsStreak;
    this.readAhead = new ReadAhead(o.source, o.pages, this.pageSize);
    this.now = o.now;
    this.trace = o.trace;
  }

  /**
   * The window the last serve() used, copied: what a fault put off keeps for its retries (the
   * policy's own object is reused by its next call).
   */
  lastWindowCopy(): FaultWindow {
    return { startOffset: this.lastWindow.startOffset, lenBytes: this.lastWindow.lenBytes };
  }

  /**
   * Serves the fault at host `address`, read at `readAtMs`: 'served', 'retry' after EAGAIN, 'wait'
   * when the source does not hold the bytes yet. `retryWindow`: the window of the fault's first try.
   * Throws FcUffdError (fatal for the VM) or VmGoneError.
   */
  serve(address: number, readAtMs: number, retryWindow: FaultWindow | undefined): 'served' | 'retry' | 'wait' {
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
    const window = (this.lastWindow = retryWindow ?? this.faultAround.window(offset, region.fileOffset, regionEnd));
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
