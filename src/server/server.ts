import { once } from 'node:events';
import fs from 'node:fs';
import { MessageChannel, Worker } from 'node:worker_threads';
import pino, { type Logger } from 'pino';
import { LoopThreadPool } from '../serve/loop-pool.js';
import type { SharedLoopPool, VmLoops } from '../serve/shared-loop-pool.js';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { SIGKILL } from '../kernel/constants.js';
import { writeFileNoClobber } from '../atomic-write.js';
import { FcUffdError } from '../errors.js';
import type { VmChannel } from '../memory/snapshot.js';
import type { LoopThreadMessage, PeerCredentials, VmErrorInfo, VmInit } from '../serve/protocol.js';
import { VmStats } from '../serve/stats.js';
import { encodeWorkingSet } from '../serve/working-set.js';
import { validateLoopThreads } from '../serve/validate-options.js';
import type { AcceptorControl, AcceptorInit, AcceptorMessage } from '../firecracker/acceptor-worker.js';
import { TypedEventEmitter } from './typed-emitter.js';
import { listenConfig, listenSocket, SocketListener } from './listener.js';
import type { Listener, ListenOptions, StopVmOptions, VmHandle, VmInfo } from './types.js';
import { Vm } from './vm-handle.js';
import { stopOnProcessExit } from '../serve/process-exit.js';

export { DEFAULT_FAULT_AROUND, DEFAULT_FAULT_AROUND_BYTES, DEFAULT_HANDSHAKE_TIMEOUT_MS } from './listener.js';
export type { VmInfo, VmState } from './types.js';

/** What the whole server shares: its fault-loop threads, its logger, how VMs are named. */
export interface UffdServerOptions {
  /** Fault-loop threads, each serving many VMs of every socket (default: the CPU count, at most 4). */
  loopThreads?: number;
  /**
   * Names a VM at accept time, from its VMM's credentials (before any byte is read): the answer
   * becomes `vm.tag`. Undefined keeps the socket's `tag`. A throw is logged and ignored.
   */
  identify?: (peer: PeerCredentials, listener: Listener) => string | undefined;
  /** A pino logger (createLogger() makes one); default: silent. */
  logger?: Logger;
  /** Cancels create()/start() while they run (rejects with code ABORTED). */
  signal?: AbortSignal;
}

/** @internal The daemon's restores share fault-loop threads across servers; `loopThreads` is then unused. */
export interface InternalServerOptions extends UffdServerOptions {
  sharedLoops?: SharedLoopPool;
}

/** `UffdServer.start()`: a server with one socket. */
export interface ServerOptions extends InternalServerOptions, ListenOptions {
  signal?: AbortSignal;
}

/**
 * The server's events. Every VM gets 'vm-connected' then exactly one 'vm-ended'; between them
 * 'vm-handshake' (accepted: now served) or 'vm-refused' (its handshake failed: it never was).
 */
export interface UffdServerEvents {
  /** A VMM connected (peer credentials known, nothing read yet). */
  'vm-connected': [vm: VmHandle];
  /** Its handshake was accepted: guest memory is being served. */
  'vm-handshake': [vm: VmHandle];
  /** Its handshake was refused (or it timed out, or it hung up first); 'vm-ended' follows. */
  'vm-refused': [vm: VmHandle, error: FcUffdError];
  /** Its service ended, for any reason; `info` is final (also `await vm.ended`). */
  'vm-ended': [vm: VmHandle, info: VmInfo];
}

export interface ServerHealth {
  status: 'ok' | 'stopping' | 'stopped';
  listening: Array<{ socketPath: string; snapshot: string; tag?: string; vmsLive: number }>;
  vms: { handshake: number; serving: number };
  loopThreads: { configured: number; alive: number };
  /** The thread that accepts connections on every socket is running. */
  acceptorAlive: boolean;
}

/** Ended VMs kept for vms() after they end; older ones live on only in the folded totals of metrics. */
export const ENDED_VM_HISTORY = 64;

const ACCEPTOR_URL = new URL('../firecracker/acceptor-worker.js', import.meta.url);

/**
 * The handler process's front: listens on any number of sockets (each with its own snapshot and
 * options), hands every connection (one VM) to a shared pool of fault-loop threads, and keeps each
 * VM's state and stats. One VM's failure ends that VM only; 'error' is never emitted for a VM.
 *
 * Threads: one acceptor thread blocks in accept on every socket; the main thread then names the VM,
 * opens its pidfd and hands it to a fault-loop thread, so a blocked main event loop delays new VMs'
 * handshakes (and, for chunked snapshots, chunk fetches): keep it free of synchronous work.
 */
export class UffdServer extends TypedEventEmitter<UffdServerEvents> {
  /** Live VMs (handshake or serving); an ended VM moves to endedVms, so a long-running handler does not grow. */
  private readonly vmsById = new Map<string, Vm>();
  /** The last ENDED_VM_HISTORY ended VMs, oldest first. */
  private readonly endedVms: VmInfo[] = [];
  private readonly bySocketId = new Map<number, SocketListener>();
  private readonly removed = new Map<number, () => void>();
  private readonly pool: VmLoops;
  private readonly acceptor: Worker;
  private readonly acceptorControl: MessageChannel['port1'];
  private readonly acceptorControlFd: number;
  private readonly acceptorExited: Promise<unknown>;
  private acceptorAlive = true;
  private readonly logger: Logger;
  private nextId = 1;
  private nextSocketId = 1;
  private stopping: Promise<void> | undefined;
  private stoppedFully = false;
  private firstSocketPath: string | undefined;
  /** Unregisters the acceptor's stop on process exit (process-exit.ts). */
  private readonly forgetOnExit: () => void;

  private constructor(private readonly options: InternalServerOptions & { loopThreads: number }) {
    super();
    this.logger = options.logger ?? pino({ level: 'silent' });
    const onThreadDied = (vmIds: string[], err: Error | undefined): void => {
      for (const id of vmIds) this.onThreadDied(id, err);
    };
    this.pool = options.sharedLoops
      ? options.sharedLoops.lease({ onMessage: (m) => this.onThreadMessage(m), onThreadDied })
      : new LoopThreadPool(options.loopThreads, (m) => this.onThreadMessage(m), onThreadDied);
    this.acceptorControlFd = native.eventfdCreate();
    const { port1, port2 } = new MessageChannel();
    this.acceptorControl = port1;
    const init: AcceptorInit = { controlFd: this.acceptorControlFd, control: port2 };
    this.acceptor = new Worker(ACCEPTOR_URL, { workerData: init, transferList: [port2] });
    // An idle server with no socket must not keep the process alive; listening sockets ref it.
    this.acceptor.unref();
    this.acceptorExited = once(this.acceptor, 'exit').then(() => (this.acceptorAlive = false));
    port1.on('message', (m: AcceptorMessage) => this.onAcceptorMessage(m));
    port1.unref();
    this.acceptor.on('error', (err) => this.logger.error({ err: err.stack }, 'acceptor crashed'));
    this.forgetOnExit = stopOnProcessExit(() => this.sendAcceptor({ type: 'stop' }));
  }

  /** A server with no socket yet: add sockets with listen(). Rejects (CONFIG_INVALID) on a bad option. */
  // async without await on purpose: a refused option rejects the promise instead of throwing.
  // eslint-disable-next-line @typescript-eslint/require-await
  static async create(options: InternalServerOptions = {}): Promise<UffdServer> {
    throwIfAborted(options.signal);
    const loopThreads = options.loopThreads ?? LoopThreadPool.defaultThreads();
    validateLoopThreads(loopThreads);
    if (options.identify !== undefined && typeof options.identify !== 'function')
      throw new FcUffdError('CONFIG_INVALID', 'identify must be a function (peer, listener) => tag');
    return new UffdServer({ ...options, loopThreads });
  }

  /** Shorthand: create() and listen() on one socket. Nothing is left behind when it rejects. */
  static async start(options: ServerOptions): Promise<UffdServer> {
    const server = await UffdServer.create(options);
    try {
      await server.listen(options);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /**
   * Starts accepting VMs on another socket, serving `snapshot` with these options, once the
   * fault-loop threads are up (the first call waits for them: a few hundred ms). Rejects
   * (CONFIG_INVALID, CONFIG) on a bad option or a socket that is taken; nothing is left behind.
   */
  async listen(options: ListenOptions): Promise<Listener> {
    throwIfAborted(options.signal);
    // A VMM may connect as soon as the socket exists: its first faults must meet running threads,
    // not wait for a thread to boot (measured: threads came up 300-450 ms after the socket).
    await this.pool.whenReady();
    throwIfAborted(options.signal);
    if (this.stopping) throw new FcUffdError('CONFIG', 'the server is stopping: no new sockets');
    const config = listenConfig(options);
    for (const l of this.bySocketId.values())
      if (l.socketPath === config.socketPath) throw new FcUffdError('CONFIG', `this server already listens on ${config.socketPath}`);
    const fd = listenSocket(config.socketPath, config.socketMode);
    const socketId = this.nextSocketId++;
    const listener = new SocketListener(socketId, config, fd, (l, stopVms) => this.closeListener(l, stopVms), this.logger);
    this.bySocketId.set(socketId, listener);
    this.firstSocketPath ??= config.socketPath;
    this.sendAcceptor({ type: 'add', socketId, listenFd: fd });
    this.acceptor.ref();
    const snapshot = config.snapshot;
    void snapshot.ready().then(
      () => this.logger.info({ snapshot: snapshot.description }, 'snapshot prepared'),
      (err: unknown) => this.logger.warn({ err: (err as Error).message }, 'snapshot preparation stopped'),
    );
    this.logger.info(
      {
        socket: config.socketPath,
        snapshot: snapshot.description,
        sizeBytes: snapshot.sizeBytes,
        loopThreads: this.pool.threadsConfigured,
        loopThreadNice: this.pool.threadNice,
      },
      'listening for Firecracker',
    );
    return listener;
  }

  /** The path of the first socket this server listened on (start()'s), open or closed since. */
  get socketPath(): string {
    if (this.firstSocketPath === undefined) throw new FcUffdError('CONFIG', 'this server never listened on a socket');
    return this.firstSocketPath;
  }

  /** Open sockets, in the order they were opened. */
  sockets(): Listener[] {
    return [...this.bySocketId.values()].filter((l) => !l.closed);
  }

  /** The VMs being served, and the last ENDED_VM_HISTORY that ended (oldest first). */
  vms(): VmInfo[] {
    return [...this.endedVms, ...this.liveVms()];
  }

  /** Live VMs only: what metrics scrapes walk. */
  liveVms(): VmInfo[] {
    return [...this.vmsById.values()].map((vm) => vm.info());
  }

  vm(id: string): VmInfo | undefined {
    return this.vmsById.get(id)?.info() ?? this.endedVms.find((v) => v.id === id);
  }

  /** The handle of a live VM. */
  handle(id: string): VmHandle | undefined {
    return this.vmsById.get(id);
  }

  /** Resolves once the first socket's snapshot finished its background preparation (zero-page scan, ...). */
  snapshotReady(): Promise<void> {
    return this.sockets()[0]?.snapshot.ready() ?? Promise.resolve();
  }

  /** What a health check needs, from memory (no socket is probed). */
  health(): ServerHealth {
    const live = [...this.vmsById.values()];
    return {
      status: this.stoppedFully ? 'stopped' : this.stopping ? 'stopping' : 'ok',
      listening: this.sockets().map((l) => ({
        socketPath: l.socketPath,
        snapshot: l.snapshot.description,
        ...(l.tag !== undefined ? { tag: l.tag } : {}),
        vmsLive: l.vms().length,
      })),
      vms: { handshake: live.filter((v) => v.state === 'handshake').length, serving: live.filter((v) => v.state === 'serving').length },
      loopThreads: { configured: this.pool.threadsConfigured, alive: this.pool.threadsAlive },
      acceptorAlive: this.acceptorAlive,
    };
  }

  private sendAcceptor(m: AcceptorControl): void {
    this.acceptorControl.postMessage(m);
    native.eventfdSignal(this.acceptorControlFd);
  }

  private onAcceptorMessage(m: AcceptorMessage): void {
    if (m.type === 'connection') this.onConnection(m.socketId, m.fd, { pid: m.pid, uid: m.uid, gid: m.gid });
    else if (m.type === 'removed') this.removed.get(m.socketId)?.();
    else this.logger.error({ socket: this.bySocketId.get(m.socketId)?.socketPath }, m.message);
  }

  private async closeListener(l: SocketListener, stopVms: boolean): Promise<void> {
    if (!l.closed) {
      l.closed = true;
      // Firecracker finds no socket file at once; the acceptor lets go of the fd before it is closed.
      fs.rmSync(l.socketPath, { force: true });
      l.released = this.acceptorAlive
        ? new Promise<void>((resolve) => {
            this.removed.set(l.socketId, resolve);
            this.sendAcceptor({ type: 'remove', socketId: l.socketId });
          })
        : Promise.resolve();
      void l.released.then(() => {
        this.removed.delete(l.socketId);
        native.close(l.listenFd);
        if (this.sockets().length === 0) this.acceptor.unref();
      });
    }
    await l.released;
    if (stopVms) await Promise.all(l.vms().map((vm) => vm.stop()));
    if (l.live.size === 0) this.bySocketId.delete(l.socketId);
  }

  private onConnection(socketId: number, fd: number, peer: PeerCredentials): void {
    const listener = this.bySocketId.get(socketId);
    if (this.stopping || !listener || listener.closed) {
      native.close(fd);
      return;
    }
    const config = listener.config;
    const id = `vm-${this.nextId++}`;
    const tag = this.identify(peer, listener) ?? config.tag;
    const log = this.logger.child({ vm: id, pid: peer.pid, ...(tag !== undefined ? { tag } : {}) });
    const stats = new VmStats();
    const { port1, port2 } = new MessageChannel();
    const channel: VmChannel = { port: port1, wakeFd: native.eventfdCreate() };
    const pidfd = peer.pid > 0 ? native.pidfdOpen(peer.pid) : -1;
    if (pidfd < 0 && peer.pid > 0)
      log.warn(`pidfd_open(${peer.pid}) failed: ${errnoName(-pidfd)}; VMM exit is detected by hang-up only, and it cannot be killed`);
    const init: VmInit = {
      vmId: id,
      connFd: fd,
      peer,
      pidfd: Math.max(pidfd, -1),
      snapshot: config.snapshot.attachVm(channel),
      port: port2,
      sourceWakeFd: channel.wakeFd,
      recordWorkingSet: config.recordWorkingSetPath !== '',
      trace: listener.traces !== undefined,
      ...(config.prefetch ? { prefetch: { pages: config.prefetch.pages, pageSizeBytes: config.prefetch.pageSizeBytes } } : {}),
      faultAround: config.faultAround,
      onFatal: config.onFatal,
      handshakeTimeoutMs: config.handshakeTimeoutMs,
      statsBuffer: stats.buffer,
    };
    const data = {
      id,
      ...(tag !== undefined ? { tag } : {}),
      socketPath: config.socketPath,
      peer,
      state: 'handshake' as const,
      startedAtMs: Date.now(),
    };
    const vm = new Vm(data, stats, listener, log, channel, Math.max(pidfd, -1), (v, o) => this.stopVm(v, o));
    this.vmsById.set(id, vm);
    listener.live.add(vm);
    log.info({ uid: peer.uid }, 'VMM connected');
    this.pool.start(init, [port2]);
    this.emit('vm-connected', vm);
  }

  private identify(peer: PeerCredentials, listener: Listener): string | undefined {
    if (!this.options.identify) return undefined;
    try {
      const tag = this.options.identify(peer, listener);
      return typeof tag === 'string' ? tag : undefined;
    } catch (err) {
      this.logger.error({ pid: peer.pid, err: (err as Error).message }, 'identify() threw; the VM keeps its socket tag');
      return undefined;
    }
  }

  private stopVm(vm: Vm, o: StopVmOptions): void {
    if (vm.state === 'ended') return;
    vm.stopRequested = true;
    if (o.kill && vm.pidfd >= 0 && !vm.killedByStop) {
      const rc = native.pidfdSendSignal(vm.pidfd, SIGKILL);
      vm.killedByStop = rc === 0;
      if (rc < 0) vm.log.error(`SIGKILL to the VMM through its pidfd failed: ${errnoName(-rc)}`);
    }
    vm.log.info({ kill: o.kill ?? false }, 'stopping VM');
    this.pool.stop(vm.id);
  }

  private onThreadMessage(m: LoopThreadMessage): void {
    const vm = this.vmsById.get(m.vmId);
    if (!vm) return;
    const { data: info, log } = vm;
    const config = vm.socket.config;
    switch (m.type) {
      case 'handshake':
        Object.assign(info, { state: 'serving', generation: m.generation, pageSizeBytes: m.pageSizeBytes, regions: m.regions });
        for (const w of m.warnings) log.warn(w);
        log.info({ generation: m.generation, pageSizeBytes: m.pageSizeBytes, regions: m.regions.length }, 'handshake accepted, serving');
        this.emit('vm-handshake', vm);
        break;
      case 'log':
        log[m.level](m.msg);
        break;
      case 'trace':
        vm.socket.traces?.block(
          this.vmPath(config.tracePath, info),
          { vmId: info.id, pid: info.peer.pid, pageSizeBytes: info.pageSizeBytes ?? 0, regions: info.regions ?? [] },
          m,
        );
        break;
      case 'end':
        Object.assign(info, {
          endReason: vm.stopRequested && m.reason === 'vmm-exited' ? 'stopped' : m.reason,
          killed: m.killed || vm.killedByStop,
          removedRanges: m.removedRanges,
        });
        if (m.error) info.error = toError(m.error);
        if (config.removedRangesPath) this.writeRemovedRanges(vm);
        if (config.recordWorkingSetPath && m.touches) this.writeWorkingSet(vm, m.touches);
        vm.socket.traces?.end(info.id);
        this.finish(vm);
        break;
    }
  }

  /** A fault-loop thread crashed while serving this VM: nobody serves it now, so it must not run on. */
  private onThreadDied(id: string, err: Error | undefined): void {
    const vm = this.vmsById.get(id);
    if (!vm || vm.state === 'ended') return;
    const e = vm.data;
    // Only a VM past its handshake handed us a userfaultfd: anything earlier may be a probe, not a VMM.
    if (this.stopping || e.state !== 'serving') {
      e.endReason = this.stopping ? 'stopped' : 'fatal';
      if (!this.stopping)
        e.error = new FcUffdError(
          'INTERNAL',
          `the fault-loop thread serving this VM died during its handshake: ${err?.stack ?? 'no error reported'}`,
        );
    } else {
      e.endReason = 'fatal';
      e.error = new FcUffdError('INTERNAL', `the fault-loop thread serving this VM died: ${err?.stack ?? 'no error reported'}`);
      if (vm.socket.config.onFatal === 'kill') {
        const rc = vm.pidfd >= 0 ? native.pidfdSendSignal(vm.pidfd, SIGKILL) : -ERRNO.ESRCH;
        e.killed = rc === 0;
        if (rc < 0 && vm.pidfd >= 0) vm.log.error(`SIGKILL to the VMM through its pidfd failed: ${errnoName(-rc)}`);
      }
    }
    this.finish(vm);
  }

  private finish(vm: Vm): void {
    const wasServing = vm.data.state === 'serving';
    vm.data.state = 'ended';
    const listener = vm.socket;
    this.pool.ended(vm.id);
    listener.snapshot.detachVm(vm.channel);
    vm.channel.port.close();
    native.close(vm.channel.wakeFd);
    if (vm.pidfd >= 0) native.close(vm.pidfd);
    this.logEnd(vm);
    this.vmsById.delete(vm.id);
    listener.live.delete(vm);
    if (listener.closed && listener.live.size === 0) this.bySocketId.delete(listener.socketId);
    const ended = vm.end();
    this.endedVms.push(ended);
    if (this.endedVms.length > ENDED_VM_HISTORY) this.endedVms.shift();
    if (!wasServing && ended.error) this.emit('vm-refused', vm, ended.error);
    this.emit('vm-ended', vm, ended);
  }

  private vmPath(template: string, info: Vm['data']): string {
    return template.replaceAll('{vm}', info.id).replaceAll('{pid}', String(info.peer.pid));
  }

  private writeWorkingSet(vm: Vm, touches: { pages: Uint32Array; timesMs: Uint32Array; pageSizeBytes: number }): void {
    const l = vm.socket;
    const template = this.vmPath(l.config.recordWorkingSetPath, vm.data);
    try {
      const file = writeFileNoClobber(template, encodeWorkingSet({ snapshot: l.snapshot.identity, runs: 1, ...touches }), vm.id);
      vm.log.info({ file, pages: touches.pages.length }, 'wrote working set');
    } catch (err) {
      vm.log.error({ file: template, err: (err as Error).message }, 'cannot write working set');
    }
  }

  private writeRemovedRanges(vm: Vm): void {
    const info = vm.data;
    const template = this.vmPath(vm.socket.config.removedRangesPath, info);
    const text = (info.removedRanges ?? []).map(([s, e]) => `${s} ${e}\n`).join('');
    try {
      const file = writeFileNoClobber(template, text, info.id);
      vm.log.info({ file, ranges: info.removedRanges?.length ?? 0 }, 'wrote balloon-removed ranges');
    } catch (err) {
      vm.log.error({ file: template, err: (err as Error).message }, 'cannot write balloon-removed ranges');
    }
  }

  private logEnd(vm: Vm): void {
    const info = vm.data;
    const s = vm.statsCounters.snapshot();
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
    const error = info.error ? { code: info.error.code, message: info.error.message, details: info.error.details } : undefined;
    if (info.endReason === 'fatal')
      vm.log.error({ ...summary, error, killedVmm: info.killed }, 'VM stopped: it cannot be served correctly');
    else vm.log.info(summary, 'VM ended');
  }

  /**
   * Closes every socket, stops every VM's loop (their VMMs are not killed: their next faults hang),
   * and resolves when the threads are gone. Close snapshots after this.
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    const live = [...this.vmsById.values()];
    // Firecracker keeps its own copy of each uffd: its VMs do not die with us, their next faults hang.
    if (live.length > 0)
      this.logger.warn(
        { vms: live.map((e) => e.id) },
        `stopping while ${live.length} VM(s) are served: their next page faults will not be answered`,
      );
    await Promise.all([...this.bySocketId.values()].map((l) => this.closeListener(l, false)));
    this.sendAcceptor({ type: 'stop' });
    this.acceptor.ref();
    await this.acceptorExited;
    this.forgetOnExit();
    this.acceptorControl.close();
    native.close(this.acceptorControlFd);
    await this.pool.shutdown();
    await Promise.all(live.map((vm) => vm.ended));
    this.bySocketId.clear();
    this.stoppedFully = true;
  }
}

function toError(e: VmErrorInfo): FcUffdError {
  return new FcUffdError(e.code, e.message, e.details ?? {});
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new FcUffdError('ABORTED', `aborted: ${String(signal.reason)}`);
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
