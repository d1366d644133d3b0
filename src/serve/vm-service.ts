import { O_NONBLOCK, SIGKILL, UFFD_MSG_SIZE } from '../kernel/constants.js';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { Uffd } from '../kernel/uffd.js';
import { FcUffdError } from '../errors.js';
import { parseHandshake } from '../firecracker/handshake.js';
import { HandshakeReceiver } from '../firecracker/receive.js';
import type { PageSource } from '../memory/source.js';
import { FaultLoop, VmGoneError } from './fault-loop.js';
import { faultAroundPolicyFor } from './fault-around.js';
import { openPageSource } from '../memory/snapshot.js';
// Registers every snapshot kind's PageSource factory in this thread.
import '../snapshot/kinds.js';
import { VmStats } from './stats.js';
import { TraceRecorder } from '../trace/recorder.js';
import type { LoopThreadMessage, VmEndReason, VmErrorInfo, VmInit } from './protocol.js';

/** uffd_msg records read per wake-up: 256 covers a burst of faults from every vCPU at once. */
const EVENT_BUFFER_RECORDS = 256;

/** The fds of a VM a fault-loop thread waits on, by role. */
export const FD_CONN = 0;
export const FD_UFFD = 1;
export const FD_PIDFD = 2;
export const FD_SOURCE = 3;
export type FdRole = typeof FD_CONN | typeof FD_UFFD | typeof FD_PIDFD | typeof FD_SOURCE;

/** How a fault-loop thread watches a VM's fds (an epoll set, in practice). */
export interface FdWatcher {
  watch(fd: number, role: FdRole): void;
  unwatch(fd: number): void;
}

export function errorInfo(err: unknown): VmErrorInfo {
  if (err instanceof FcUffdError) return { code: err.code, message: err.message, details: { ...err.details } };
  const e = err as Error;
  return { code: 'INTERNAL', message: e.stack ?? String(e) };
}

/**
 * One VM inside a fault-loop thread: the handshake, then its fault loop, then the end (VMM gone,
 * told to stop, or fatal). It never blocks: the thread's wait tells it which of its fds is ready,
 * and every handler returns quickly, so one thread serves many VMs. Any error thrown while handling
 * one VM ends that VM only (and, when it cannot be served correctly, kills its VMM).
 */
export class VmService {
  readonly stats: VmStats;
  private readonly receiver: HandshakeReceiver;
  private readonly deadlineMs: number;
  private connFd: number;
  /** The VMM's pidfd, owned by the main thread (it kills through it too when this thread dies); -1: unknown. */
  private readonly pidfd: number;
  private uffd: Uffd | undefined;
  private source: PageSource | undefined;
  private loop: FaultLoop | undefined;
  private trace: TraceRecorder | undefined;
  /** Up to v1.11 Firecracker closes the socket right after sending; since v1.12 a hang-up means it exited. */
  private hangupMeansExit = false;
  private readonly view: DataView;
  private ended = false;

  constructor(
    readonly init: VmInit,
    private readonly watcher: FdWatcher,
    private readonly post: (m: LoopThreadMessage) => void,
    private readonly buf: Buffer,
    nowMs: number,
  ) {
    this.stats = new VmStats(init.statsBuffer);
    this.connFd = init.connFd;
    this.receiver = new HandshakeReceiver(init.connFd);
    this.deadlineMs = nowMs + init.handshakeTimeoutMs;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pidfd = init.pidfd;
    watcher.watch(this.connFd, FD_CONN);
    if (this.pidfd >= 0) watcher.watch(this.pidfd, FD_PIDFD);
  }

  static eventBuffer(): Buffer {
    return Buffer.alloc(EVENT_BUFFER_RECORDS * UFFD_MSG_SIZE);
  }

  get id(): string {
    return this.init.vmId;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** An fd of this VM is ready: do what it asks. */
  onReady(role: FdRole, nowMs: number): void {
    if (this.ended) return;
    try {
      switch (role) {
        case FD_CONN:
          if (this.loop) this.onHangup();
          else this.onHandshakeBytes();
          break;
        case FD_UFFD:
          this.onUffd(nowMs);
          break;
        case FD_PIDFD:
          this.end('vmm-exited');
          break;
        case FD_SOURCE:
          native.eventfdDrain(this.source!.wakeFd);
          this.source!.onWake();
          this.loop!.sourceReady();
          break;
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** Between waits: handshake deadline, deferred faults, a prefetch step when one can run. */
  tick(nowMs: number): void {
    if (this.ended) return;
    try {
      if (!this.loop) {
        if (nowMs >= this.deadlineMs) this.receiver.expire(this.init.handshakeTimeoutMs);
        return;
      }
      if (this.loop.pendingCount > 0) this.loop.retryDeferred();
      if (this.loop.prefetchReady) this.loop.prefetchStep();
      this.trace?.tick(nowMs);
    } catch (err) {
      this.fail(err);
    }
  }

  /** Microseconds this VM lets its thread sleep: 0 = it has work now, -1 = until one of its fds is ready. */
  waitBudgetUs(nowMs: number): number {
    if (this.ended) return -1;
    if (!this.loop) return Math.max(0, Math.ceil((this.deadlineMs - nowMs) * 1000));
    return this.loop.waitBudgetUs();
  }

  private onHandshakeBytes(): void {
    const received = this.receiver.onReadable();
    if (!received) return;
    this.uffd = new Uffd(received.uffdFd);
    // The kernel answers poll on a blocking uffd with EPOLLERR, and a read of it can block: such a
    // uffd cannot share a thread with other VMs. Firecracker always creates it O_NONBLOCK, and the
    // flag lives on the file it shares with us, so it is not ours to change.
    const flags = native.fdFlags(received.uffdFd);
    if (flags >= 0 && (flags & O_NONBLOCK) === 0)
      throw new FcUffdError(
        'HANDSHAKE_UFFD_BLOCKING',
        'the userfaultfd was not created O_NONBLOCK (Firecracker always creates it so): it cannot be polled',
      );
    const handshake = parseHandshake(received.payload, this.init.snapshot.sizeBytes);
    this.hangupMeansExit = handshake.generation === 'v1.12+';
    this.post({
      type: 'handshake',
      vmId: this.id,
      generation: handshake.generation,
      pageSizeBytes: handshake.memory.pageSizeBytes,
      regions: handshake.memory.regions.map((r) => ({ ...r })),
      warnings: [...handshake.warnings],
    });
    let prefetchPages: Uint32Array | undefined;
    const prefetch = this.init.prefetch;
    if (prefetch) {
      if (prefetch.pageSizeBytes === handshake.memory.pageSizeBytes) prefetchPages = prefetch.pages;
      else
        this.log(
          'warn',
          `not prefetching: the working set has ${prefetch.pageSizeBytes}-byte pages, this VM ${handshake.memory.pageSizeBytes}`,
        );
    }
    if (this.init.trace)
      this.trace = new TraceRecorder(
        (b) => this.post({ type: 'trace', vmId: this.id, ...b }),
        handshake.memory.pageSizeBytes,
        prefetchPages,
      );
    this.source = openPageSource(this.init.snapshot, { port: this.init.port, wakeFd: this.init.sourceWakeFd }, this.trace);
    this.loop = new FaultLoop({
      memory: handshake.memory,
      source: this.source,
      uffd: this.uffd,
      stats: this.stats,
      faultAround: faultAroundPolicyFor(this.init, handshake.memory.pageSizeBytes),
      recordWorkingSet: this.init.recordWorkingSet,
      ...(this.trace ? { trace: this.trace } : {}),
      ...(prefetchPages ? { prefetchPages } : {}),
    });
    this.watcher.watch(this.uffd.fd, FD_UFFD);
    if (this.source.wakeFd >= 0) this.watcher.watch(this.source.wakeFd, FD_SOURCE);
  }

  private onUffd(nowMs: number): void {
    const n = this.uffd!.readEvents(this.buf);
    if (n === undefined) return;
    if (n < 0) throw new FcUffdError('VM_READ', `reading the userfaultfd failed: ${errnoName(-n)}`, { errno: -n });
    this.loop!.handleBatch(this.view, n / UFFD_MSG_SIZE, nowMs);
  }

  /** Nothing is expected on the socket after the handshake: readable means the VMM closed its end. */
  private onHangup(): void {
    this.watcher.unwatch(this.connFd);
    native.close(this.connFd);
    this.connFd = -1;
    if (this.hangupMeansExit) this.end('vmm-exited');
  }

  private fail(err: unknown): void {
    if (err instanceof VmGoneError) {
      this.end('vmm-exited');
      return;
    }
    // The guest must not run on with memory we cannot serve, nor hang silently. A peer that never
    // handed over a userfaultfd has no guest of ours: it is only disconnected.
    const killed = this.receiver.receivedUffd ? this.stopVmm() : false;
    this.end('fatal', errorInfo(err), killed);
  }

  private stopVmm(): boolean {
    if (this.init.onFatal !== 'kill') return false;
    if (this.pidfd < 0) {
      this.log('error', 'cannot stop the VMM: its pid is unknown (SO_PEERCRED gave none)');
      return false;
    }
    const rc = native.pidfdSendSignal(this.pidfd, SIGKILL);
    if (rc < 0 && rc !== -ERRNO.ESRCH) this.log('error', `SIGKILL to the VMM (pid ${this.init.peer.pid}) failed: ${errnoName(-rc)}`);
    return rc === 0;
  }

  /** Ends this VM's service: reports, then releases every fd and mapping it holds. */
  end(reason: VmEndReason, error?: VmErrorInfo, killed = false): void {
    if (this.ended) return;
    this.ended = true;
    const loop = this.loop;
    const touches =
      this.init.recordWorkingSet && loop ? { ...loop.recordedTouches(), pageSizeBytes: loop.memory.pageSizeBytes } : undefined;
    // A VM that ends with faults unserved had vCPUs waiting on us (a VMM killed mid-fault, or a
    // hang): say which, so its VMM's report can be matched against ours.
    if (loop && loop.pendingCount > 0)
      this.log('warn', `ended with ${loop.pendingCount} fault(s) unserved: ${loop.describePending(performance.now()).join('; ')}`);
    for (const fd of [this.connFd, this.pidfd, this.uffd?.fd ?? -1, this.source?.wakeFd ?? -1]) if (fd >= 0) this.watcher.unwatch(fd);
    this.receiver.abandon();
    this.source?.close();
    this.uffd?.close();
    if (this.connFd >= 0) native.close(this.connFd);
    this.init.port.close();
    this.trace?.flush();
    this.post({
      type: 'end',
      vmId: this.id,
      reason,
      killed,
      removedRanges: loop?.removedRanges() ?? [],
      ...(touches ? { touches } : {}),
      ...(error ? { error } : {}),
    });
  }

  private log(level: 'info' | 'warn' | 'error', msg: string): void {
    this.post({ type: 'log', vmId: this.id, level, msg });
  }
}
