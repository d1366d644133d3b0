import { EventEmitter, once } from 'node:events';
import fs from 'node:fs';
import { MessageChannel, Worker } from 'node:worker_threads';
import { LoopThreadPool } from '../serve/loop-pool.js';
import type { SharedLoopPool, VmLoops } from '../serve/shared-loop-pool.js';
import type { Logger } from 'pino';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { SIGKILL } from '../kernel/constants.js';
import { writeFileNoClobber } from '../atomic-write.js';
import { FcUffdError } from '../errors.js';
import type { GuestRegion } from '../memory/regions.js';
import type { ServedSnapshot, VmChannel } from '../memory/snapshot.js';
import type { LoopThreadMessage, OnFatal, PeerCredentials, VmEndReason, VmErrorInfo, VmInit } from '../serve/protocol.js';
import { VmStats, type StatsSnapshot } from '../serve/stats.js';
import type { HandshakeGeneration } from '../firecracker/handshake.js';
import { checkWorkingSetFits, encodeWorkingSet, type WorkingSet } from '../serve/working-set.js';
import { validateServerOptions } from '../serve/validate-options.js';
import type { FaultAround } from '../serve/fault-around.js';
import type { AcceptorInit, AcceptorMessage } from '../firecracker/acceptor-worker.js';
import { TraceFiles } from '../trace/files.js';

export interface ServerOptions {
  /** Unix socket Firecracker's `mem_backend.backend_path` points at. */
  socketPath: string;
  /** What to serve: a snapshot opened with ServedMemoryFile.open() or another ServedSnapshot. */
  snapshot: ServedSnapshot;
  /** Mode of the socket file; 0o600 lets only this user's VMMs connect. */
  socketMode?: number;
  /**
   * What to install around each fault: bytes of an aligned block (the page size disables
   * fault-around), or 'adaptive' (one page for scattered faults, a growing window for streams).
   */
  faultAround?: FaultAround;
  onFatal?: OnFatal;
  handshakeTimeoutMs?: number;
  /**
   * Where to write each VM's balloon-removed ranges when it ends (lines `<start> <end>`, snapshot
   * file offsets, end exclusive), for `fc-uffd pack --removed`. `{vm}` and `{pid}` are replaced
   * by the VM's id and its VMM's pid; empty: not written.
   */
  removedRangesPath?: string;
  /**
   * Record each VM's first touches into a working-set file here when it ends ({vm}, {pid} replaced).
   * Like removedRangesPath, an existing file is never replaced: a taken name gets the VM's id added
   * (`ws.vm-2.ws`), so a path without {vm} keeps every VM's recording.
   */
  recordWorkingSetPath?: string;
  /** Record each VM's restore timeline into a trace file here ({vm}, {pid} replaced); see src/trace/format.ts. */
  tracePath?: string;
  /** Install this working set ahead of every VM's guest (refused if recorded against another snapshot). */
  prefetch?: WorkingSet;
  /** Fault-loop threads, each serving many VMs (default: the CPU count, at most 4). */
  loopThreads?: number;
  /** Fault-loop threads shared with other servers (a daemon's restores); `loopThreads` is then unused. */
  sharedLoops?: SharedLoopPool;
  logger: Logger;
}

/**
 * Bytes installed per fault. The curve on the real 128 MiB guest's restore trace (bench/README.md,
 * fault-around scenario): 4k 663 ms, 16k 201, 64k 76, 256k 53, 2m 49 ms to done, installing 50, 52,
 * 54, 56 and 67 MB for a 50 MB working set. 256 KiB is the knee: most of the time saved for 4 %
 * more memory; 2 MiB saves a little more time for a third more memory.
 */
export const DEFAULT_FAULT_AROUND_BYTES = 256 * 1024;
/** The fault-around a server uses unless told otherwise (ServerOptions.faultAround, serve --fault-around). */
export const DEFAULT_FAULT_AROUND: FaultAround = DEFAULT_FAULT_AROUND_BYTES;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

export type VmState = 'handshake' | 'serving' | 'ended';

/** One VM as the library API shows it. */
export interface VmInfo {
  id: string;
  peer: PeerCredentials;
  state: VmState;
  startedAtMs: number;
  generation?: HandshakeGeneration;
  pageSizeBytes?: number;
  regions?: GuestRegion[];
  endReason?: VmEndReason;
  error?: VmErrorInfo;
  /** The VMM was sent SIGKILL because the VM could not be served correctly. */
  killed?: boolean;
  /** Snapshot ranges the balloon removed that were not installed again (file offsets, end exclusive). */
  removedRanges?: Array<[number, number]>;
  stats: StatsSnapshot;
}

interface VmEntry {
  info: Omit<VmInfo, 'stats'>;
  stats: VmStats;
  log: Logger;
  channel: VmChannel;
  /** The VMM's pidfd (-1: none), shared with the fault-loop thread; closed when the VM ends. */
  pidfd: number;
  ended: Promise<void>;
  resolveEnded: () => void;
}

/** Ended VMs kept for vms() after they end; older ones live on only in the folded totals of metrics. */
export const ENDED_VM_HISTORY = 64;

const ACCEPTOR_URL = new URL('../firecracker/acceptor-worker.js', import.meta.url);

/**
 * The handler process's front: listens where Firecracker connects, hands every connection (one VM)
 * to a fault-loop thread, and keeps each VM's state and stats for the library API. One VM's
 * failure ends that VM only.
 *
 * Events: 'vm-handshake' (VmInfo), 'vm-end' (VmInfo); 'error' is never emitted for a VM.
 */
export class UffdServer extends EventEmitter {
  /** Live VMs (handshake or serving); an ended VM moves to endedVms, so a long-running handler does not grow. */
  private readonly vmsById = new Map<string, VmEntry>();
  /** The last ENDED_VM_HISTORY ended VMs, oldest first. */
  private readonly endedVms: VmInfo[] = [];
  private readonly pool: VmLoops;
  private acceptorExited: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  private stopping = false;
  private readonly traces: TraceFiles | undefined;

  private constructor(
    private readonly options: Required<Omit<ServerOptions, 'logger' | 'prefetch' | 'sharedLoops'>> & Pick<ServerOptions, 'logger' | 'prefetch' | 'sharedLoops'>,
    private readonly snapshot: ServedSnapshot,
    private readonly listenFd: number,
    private readonly acceptorStopFd: number,
  ) {
    super();
    if (options.tracePath) this.traces = new TraceFiles({ snapshot: snapshot.identity, snapshotSizeBytes: snapshot.sizeBytes, faultAroundBytes: options.faultAround === 'adaptive' ? 0 : options.faultAround, prefetchPages: options.prefetch?.pages.length ?? 0 }, options.logger);
    const onThreadDied = (vmIds: string[], err: Error | undefined): void => {
      for (const id of vmIds) this.onThreadDied(id, err);
    };
    this.pool = options.sharedLoops
      ? options.sharedLoops.lease({ onMessage: (m) => this.onThreadMessage(m), onThreadDied })
      : new LoopThreadPool(options.loopThreads, (m) => this.onThreadMessage(m), onThreadDied);
  }

  // async without await on purpose: a refused option rejects the promise instead of throwing.
  // eslint-disable-next-line @typescript-eslint/require-await
  static async start(options: ServerOptions): Promise<UffdServer> {
    const full = {
      socketMode: 0o600,
      faultAround: DEFAULT_FAULT_AROUND,
      onFatal: 'kill' as OnFatal,
      handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_MS,
      removedRangesPath: '',
      recordWorkingSetPath: '',
      tracePath: '',
      loopThreads: LoopThreadPool.defaultThreads(),
      ...options,
    };
    const snapshot = full.snapshot;
    if (full.prefetch) checkWorkingSetFits(full.prefetch, snapshot.identity);
    validateServerOptions(full);
    removeStaleSocket(full.socketPath);
    const listenFd = native.listenUnix(full.socketPath, full.socketMode, 64);
    if (listenFd < 0) throw new FcUffdError('CONFIG', `cannot listen on ${full.socketPath}: ${errnoName(-listenFd)}`);
    const stopFd = native.eventfdCreate();
    const server = new UffdServer(full, snapshot, listenFd, stopFd);
    server.startAcceptor();
    void snapshot.ready().catch((err: unknown) => full.logger.warn({ err: (err as Error).message }, 'snapshot preparation stopped'));
    full.logger.info({ socket: full.socketPath, snapshot: snapshot.description, sizeBytes: snapshot.sizeBytes, loopThreads: full.loopThreads }, 'listening for Firecracker');
    return server;
  }

  get socketPath(): string {
    return this.options.socketPath;
  }

  /** The VMs being served, and the last ENDED_VM_HISTORY that ended (oldest first). */
  vms(): VmInfo[] {
    return [...this.endedVms, ...[...this.vmsById.values()].map((e) => ({ ...e.info, stats: e.stats.snapshot() }))];
  }

  /** Live VMs only: what metrics scrapes walk. */
  liveVms(): VmInfo[] {
    return [...this.vmsById.values()].map((e) => ({ ...e.info, stats: e.stats.snapshot() }));
  }

  vm(id: string): VmInfo | undefined {
    const e = this.vmsById.get(id);
    return e ? { ...e.info, stats: e.stats.snapshot() } : this.endedVms.find((v) => v.id === id);
  }

  /** Resolves once the snapshot's background preparation (zero-page scan, ...) is complete. */
  snapshotReady(): Promise<void> {
    return this.snapshot.ready();
  }

  private startAcceptor(): void {
    const init: AcceptorInit = { listenFd: this.listenFd, stopFd: this.acceptorStopFd };
    const acceptor = new Worker(ACCEPTOR_URL, { workerData: init });
    this.acceptorExited = once(acceptor, 'exit');
    acceptor.on('message', (m: AcceptorMessage) => {
      if (m.type === 'connection') this.onConnection(m.fd, { pid: m.pid, uid: m.uid, gid: m.gid });
      else this.options.logger.error(m.message);
    });
    acceptor.on('error', (err) => this.options.logger.error({ err: err.stack }, 'acceptor crashed'));
  }

  private onConnection(fd: number, peer: PeerCredentials): void {
    if (this.stopping) {
      native.close(fd);
      return;
    }
    const id = `vm-${this.nextId++}`;
    const log = this.options.logger.child({ vm: id, pid: peer.pid });
    const stats = new VmStats();
    const { port1, port2 } = new MessageChannel();
    const channel: VmChannel = { port: port1, wakeFd: native.eventfdCreate() };
    const pidfd = peer.pid > 0 ? native.pidfdOpen(peer.pid) : -1;
    if (pidfd < 0 && peer.pid > 0) log.warn(`pidfd_open(${peer.pid}) failed: ${errnoName(-pidfd)}; VMM exit is detected by hang-up only, and it cannot be killed`);
    const init: VmInit = {
      vmId: id,
      connFd: fd,
      peer,
      pidfd: Math.max(pidfd, -1),
      snapshot: this.snapshot.attachVm(channel),
      port: port2,
      sourceWakeFd: channel.wakeFd,
      recordWorkingSet: this.options.recordWorkingSetPath !== '',
      trace: this.traces !== undefined,
      ...(this.options.prefetch ? { prefetch: { pages: this.options.prefetch.pages, pageSizeBytes: this.options.prefetch.pageSizeBytes } } : {}),
      faultAround: this.options.faultAround,
      onFatal: this.options.onFatal,
      handshakeTimeoutMs: this.options.handshakeTimeoutMs,
      statsBuffer: stats.buffer,
    };
    let resolveEnded = (): void => {};
    const ended = new Promise<void>((resolve) => (resolveEnded = resolve));
    this.vmsById.set(id, { info: { id, peer, state: 'handshake', startedAtMs: Date.now() }, stats, log, channel, pidfd: Math.max(pidfd, -1), ended, resolveEnded });
    log.info({ uid: peer.uid }, 'VMM connected');
    this.pool.start(init, [port2]);
  }

  private onThreadMessage(m: LoopThreadMessage): void {
    const e = this.vmsById.get(m.vmId);
    if (!e) return;
    const { info, log } = e;
    switch (m.type) {
      case 'handshake':
        Object.assign(info, { state: 'serving', generation: m.generation, pageSizeBytes: m.pageSizeBytes, regions: m.regions });
        for (const w of m.warnings) log.warn(w);
        log.info({ generation: m.generation, pageSizeBytes: m.pageSizeBytes, regions: m.regions.length }, 'handshake accepted, serving');
        this.emit('vm-handshake', this.vm(m.vmId));
        break;
      case 'log':
        log[m.level](m.msg);
        break;
      case 'trace':
        this.traces?.block(this.vmPath(this.options.tracePath, info), { vmId: info.id, pid: info.peer.pid, pageSizeBytes: info.pageSizeBytes ?? 0, regions: info.regions ?? [] }, m);
        break;
      case 'end':
        Object.assign(info, { endReason: m.reason, killed: m.killed, removedRanges: m.removedRanges });
        if (m.error) info.error = m.error;
        if (this.options.removedRangesPath) this.writeRemovedRanges(log, info);
        if (this.options.recordWorkingSetPath && m.touches) this.writeWorkingSet(log, info, m.touches);
        this.traces?.end(info.id);
        this.finish(e);
        break;
    }
  }

  /** A fault-loop thread crashed while serving this VM: nobody serves it now, so it must not run on. */
  private onThreadDied(id: string, err: Error | undefined): void {
    const e = this.vmsById.get(id);
    if (!e || e.info.state === 'ended') return;
    // Only a VM past its handshake handed us a userfaultfd: anything earlier may be a probe, not a VMM.
    if (this.stopping || e.info.state !== 'serving') {
      e.info.endReason = this.stopping ? 'stopped' : 'fatal';
      if (!this.stopping) e.info.error = { code: 'INTERNAL', message: `the fault-loop thread serving this VM died during its handshake: ${err?.stack ?? 'no error reported'}` };
    } else {
      e.info.endReason = 'fatal';
      e.info.error = { code: 'INTERNAL', message: `the fault-loop thread serving this VM died: ${err?.stack ?? 'no error reported'}` };
      if (this.options.onFatal === 'kill') {
        const rc = e.pidfd >= 0 ? native.pidfdSendSignal(e.pidfd, SIGKILL) : -ERRNO.ESRCH;
        e.info.killed = rc === 0;
        if (rc < 0 && e.pidfd >= 0) e.log.error(`SIGKILL to the VMM through its pidfd failed: ${errnoName(-rc)}`);
      }
    }
    this.finish(e);
  }

  private finish(e: VmEntry): void {
    e.info.state = 'ended';
    this.pool.ended(e.info.id);
    this.snapshot.detachVm(e.channel);
    e.channel.port.close();
    native.close(e.channel.wakeFd);
    if (e.pidfd >= 0) native.close(e.pidfd);
    this.logEnd(e.log, e.info, e.stats);
    const ended = { ...e.info, stats: e.stats.snapshot() };
    this.vmsById.delete(e.info.id);
    this.endedVms.push(ended);
    if (this.endedVms.length > ENDED_VM_HISTORY) this.endedVms.shift();
    this.emit('vm-end', ended);
    e.resolveEnded();
  }

  private vmPath(template: string, info: VmEntry['info']): string {
    return template.replaceAll('{vm}', info.id).replaceAll('{pid}', String(info.peer.pid));
  }

  private writeWorkingSet(log: Logger, info: VmEntry['info'], touches: { pages: Uint32Array; timesMs: Uint32Array; pageSizeBytes: number }): void {
    const template = this.vmPath(this.options.recordWorkingSetPath, info);
    try {
      const file = writeFileNoClobber(template, encodeWorkingSet({ snapshot: this.snapshot.identity, runs: 1, ...touches }), info.id);
      log.info({ file, pages: touches.pages.length }, 'wrote working set');
    } catch (err) {
      log.error({ file: template, err: (err as Error).message }, 'cannot write working set');
    }
  }

  private writeRemovedRanges(log: Logger, info: VmEntry['info']): void {
    const template = this.vmPath(this.options.removedRangesPath, info);
    const text = (info.removedRanges ?? []).map(([s, e]) => `${s} ${e}\n`).join('');
    try {
      const file = writeFileNoClobber(template, text, info.id);
      log.info({ file, ranges: info.removedRanges?.length ?? 0 }, 'wrote balloon-removed ranges');
    } catch (err) {
      log.error({ file: template, err: (err as Error).message }, 'cannot write balloon-removed ranges');
    }
  }

  private logEnd(log: Logger, info: VmEntry['info'], stats: VmStats): void {
    const s = stats.snapshot();
    const summary = {
      reason: info.endReason,
      faults: s.faults,
      pagesCopied: s.pagesCopied,
      pagesZeroed: s.pagesZeroed,
      bytesCopied: s.bytesCopied,
      eexist: s.eexist,
      eagain: s.eagain,
      latencyP50Us: round(s.latency.p50Us),
      latencyP99Us: round(s.latency.p99Us),
      deferrals: s.deferrals,
      maxDeferralUs: round(s.maxDeferralUs),
      removeEvents: s.removeEvents,
      bytesRemoved: s.bytesRemoved,
      zeroPagesForRemoved: s.zeroPagesForRemoved,
      prefetchedPages: s.prefetchedPages,
      installIoctls: s.installIoctls,
      faultIoctls: s.faultIoctls,
      faultPagesInstalled: s.faultPagesInstalled,
      amplification: Number(s.faultAround.amplification.toFixed(2)),
      ioctlsPerFault: Number(s.faultAround.ioctlsPerFault.toFixed(2)),
      windowCounts: s.faultAround.windowCounts,
    };
    if (info.endReason === 'fatal') log.error({ ...summary, error: info.error, killedVmm: info.killed }, 'VM stopped: it cannot be served correctly');
    else log.info(summary, 'VM ended');
  }

  /** Stops every VM's loop, closes the socket, and resolves when all threads are gone. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const live = [...this.vmsById.values()].filter((e) => e.info.state !== 'ended');
    // Firecracker keeps its own copy of each uffd: its VMs do not die with us, their next faults hang.
    if (live.length > 0) this.options.logger.warn({ vms: live.map((e) => e.info.id) }, `stopping while ${live.length} VM(s) are served: their next page faults will not be answered`);
    native.eventfdSignal(this.acceptorStopFd);
    await this.acceptorExited;
    await this.pool.shutdown();
    await Promise.all([...this.vmsById.values()].map((e) => e.ended));
    native.close(this.acceptorStopFd);
    native.close(this.listenFd);
    fs.rmSync(this.options.socketPath, { force: true });
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Removes a socket file left by a handler that died; refuses to take over one that is live. */
function removeStaleSocket(socketPath: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new FcUffdError('CONFIG', `${socketPath} exists and is not a socket; refusing to replace it`);
  const fd = native.connectUnix(socketPath);
  if (fd >= 0) {
    native.close(fd);
    throw new FcUffdError('CONFIG', `another handler is listening on ${socketPath}`);
  }
  if (fd !== -ERRNO.ECONNREFUSED) throw new FcUffdError('CONFIG', `cannot check ${socketPath}: ${errnoName(-fd)}`);
  fs.unlinkSync(socketPath);
}
