import { classifyErrno } from '../kernel/policy.js';
import type { UffdOps } from '../kernel/uffd.js';
import type { GuestRegion } from '../memory/regions.js';
import { SPAN_BOUNDARY_BYTES, type PageSource } from '../memory/source.js';
import type { InstallRun } from './install-plan.js';
import type { PageState } from './page-state.js';
import type { TouchRecorder } from './recorder.js';
import type { VmStats } from './stats.js';
import { TRACE_KIND } from '../trace/format.js';
import type { TraceRecorder } from '../trace/recorder.js';
import { ioctlFailure, VmGoneError } from './vm-errors.js';

/**
 * How installing a run ended.
 * - done: every page of the run is mapped (by this install, or it was already: EEXIST);
 * - stopped: a speculative page was refused for a reason that would be fatal for a faulted one (such
 *   as ENOENT when the VMM unmapped memory while we filled around a fault); the pages before it are
 *   installed, the rest not: stop speculating, the VM is not harmed;
 * - retry: EAGAIN, the address space is changing (a REMOVE is pending): try the run again later;
 * - wait: the source does not hold the bytes yet (a chunk being fetched).
 * `faultPageExisted`: the faulting page of a 'fault' run was mapped already, so nobody woke its waiter.
 */
export type InstallOutcome = { status: 'done' | 'stopped'; faultPageExisted: boolean } | { status: 'retry' } | { status: 'wait' };

const DONE: InstallOutcome = { status: 'done', faultPageExisted: false };
const DONE_EXISTED: InstallOutcome = { status: 'done', faultPageExisted: true };
const STOPPED: InstallOutcome = { status: 'stopped', faultPageExisted: false };
const STOPPED_EXISTED: InstallOutcome = { status: 'stopped', faultPageExisted: true };
const RETRY: InstallOutcome = { status: 'retry' };
const WAIT: InstallOutcome = { status: 'wait' };

const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

export interface InstallerOptions {
  uffd: UffdOps;
  source: PageSource;
  pages: PageState;
  stats: VmStats;
  pageSizeBytes: number;
  /** Set when recording a working set: on-demand installs are recorded. */
  recorder?: TouchRecorder | undefined;
  /** Records the restore timeline (serve --trace). */
  trace?: TraceRecorder | undefined;
}

/**
 * Installs runs with UFFDIO_COPY / UFFDIO_ZEROPAGE, resuming after partial progress and stepping
 * over pages that exist. Each errno is classified once (src/kernel/policy.ts). Only the faulting
 * page of a 'fault' run can end the VM: a refusal anywhere else stops speculating.
 */
export class Installer {
  private readonly uffd: UffdOps;
  private readonly source: PageSource;
  private readonly pages: PageState;
  private readonly stats: VmStats;
  private readonly ps: number;
  private readonly recorder: TouchRecorder | undefined;
  private readonly trace: TraceRecorder | undefined;
  private zeroHugePage: Uint8Array | undefined;

  constructor(o: InstallerOptions) {
    this.uffd = o.uffd;
    this.source = o.source;
    this.pages = o.pages;
    this.stats = o.stats;
    this.ps = o.pageSizeBytes;
    this.recorder = o.recorder;
    this.trace = o.trace;
  }

  /** Installs `run` of `region`. Throws VmGoneError (ESRCH) or VM_IOCTL when the faulting page cannot be installed. */
  install(region: GuestRegion, run: InstallRun): InstallOutcome {
    const ps = this.ps;
    const hostBase = region.hostAddr - region.fileOffset;
    const wake = run.origin !== 'prefetch';
    const len = run.lenBytes;
    let faultPageExisted = false;
    let done = 0;
    while (done < len) {
      const off = run.startOffset + done;
      const dst = hostBase + off;
      let rc: number;
      let op: string;
      if (run.kind === 'data') {
        const n = Math.min(len - done, SPAN_BOUNDARY_BYTES - (off % SPAN_BOUNDARY_BYTES));
        const span = this.source.span(off, n);
        if (span === undefined) return WAIT;
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
      if (run.origin !== 'prefetch') this.stats.add('faultIoctls');
      if (rc > 0) {
        this.installed(off, rc, run);
        done += rc;
        continue;
      }
      const errno = -rc;
      const isFaultPage = !run.speculative && off === run.startOffset;
      switch (classifyErrno(errno)) {
        case 'exists':
          this.stats.add('eexist');
          this.pages.markInstalled(off, off + ps);
          if (isFaultPage) faultPageExisted = true;
          done += ps;
          break;
        case 'retry':
          this.stats.add('eagain');
          return RETRY;
        case 'gone':
          throw new VmGoneError(op);
        case 'fatal':
          if (isFaultPage) throw ioctlFailure(op, dst, len - done, errno);
          this.stats.add('speculativeErrors');
          return faultPageExisted ? STOPPED_EXISTED : STOPPED;
      }
    }
    return faultPageExisted ? DONE_EXISTED : DONE;
  }

  private installed(offset: number, lenBytes: number, run: InstallRun): void {
    this.pages.markInstalled(offset, offset + lenBytes);
    const pages = lenBytes / this.ps;
    if (run.kind === 'data') {
      this.stats.add('pagesCopied', pages);
      this.stats.add('bytesCopied', lenBytes);
    } else {
      this.stats.add('pagesZeroed', pages);
      if (run.kind === 'removed') this.stats.add('zeroPagesForRemoved', pages);
    }
    if (run.origin !== 'prefetch') {
      this.stats.add('faultPagesInstalled', pages);
      this.recorder?.record(offset, lenBytes);
    }
    this.trace?.install(offset, lenBytes, TRACE_KIND[run.kind], run.origin === 'fault', run.origin !== 'prefetch');
  }
}
