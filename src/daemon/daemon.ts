import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { FcUffdError } from '../errors.js';
import { UffdServer, type VmInfo } from '../server/server.js';
import { LoopThreadPool } from '../serve/loop-pool.js';
import { SharedLoopPool } from '../serve/shared-loop-pool.js';
import type { Snapshot } from '../server/types.js';
import { ServedMemoryFile } from '../snapshot/memfile.js';
import { readWorkingSet } from '../serve/working-set.js';
import { ChunkCache, DEFAULT_CACHE_BYTES } from '../snapshot/chunk-cache.js';
import { ChunkCodecPool } from '../snapshot/chunk-pool.js';
import { ServedChunkedSnapshot } from '../snapshot/chunked-source.js';
import type { HealthInfo, RestoreDetail, RestoreInfo, RestoreRequest, RestoreState, VmSummary } from './api-types.js';
import { checkName, socketPathFor } from './request.js';
import { StoreRegistry } from './stores.js';
import type { OpenStoreOptions } from '../store/open.js';
import type { ChunkStore } from '../store/types.js';

export interface DaemonOptions {
  /** Directory every restore's uffd socket is created in (must exist). */
  socketsDir: string;
  /** Decompressed chunks kept in memory, shared by every restore and VM. */
  cacheSizeBytes?: number;
  loopThreads?: number;
  /** How remote stores (s3://, http(s)://) named by restores are opened: endpoint, auth, disk cache, timeouts, retries. */
  storeOptions?: OpenStoreOptions;
  logger: Logger;
}

interface Restore {
  name: string;
  state: RestoreState;
  server: UffdServer;
  snapshot: Snapshot;
  kind: 'memfile' | 'chunked';
  createdAtMs: number;
  /** Resolves once the restore is gone (its server stopped, its snapshot closed). */
  gone?: Promise<void>;
}

/**
 * One handler per host: many restores (one UffdServer each, on its own uffd socket), all served by
 * one pool of fault-loop threads, one chunk cache, one set of codec threads and one client per
 * store. Events: 'vm-end' (restoreName, VmInfo), 'restore-gone' (restoreName).
 */
export class Daemon extends EventEmitter {
  readonly cache: ChunkCache;
  readonly socketsDir: string;
  private readonly loops: SharedLoopPool;
  private readonly codecs = new ChunkCodecPool();
  private readonly stores: StoreRegistry;
  private readonly restores = new Map<string, Restore>();
  /** Names being created: a second PUT of the same name meanwhile is a conflict. */
  private readonly pending = new Set<string>();
  private stopping = false;
  private stopDeadlineMs = 0;
  readonly loopThreads: number;

  constructor(private readonly options: DaemonOptions) {
    super();
    let st: fs.Stats;
    try {
      st = fs.statSync(options.socketsDir);
    } catch {
      throw new FcUffdError(
        'CONFIG',
        `sockets dir ${options.socketsDir} does not exist: create it (mode 0700) or pass another --sockets-dir`,
      );
    }
    if (!st.isDirectory()) throw new FcUffdError('CONFIG', `sockets dir ${options.socketsDir} is not a directory`);
    this.socketsDir = fs.realpathSync(options.socketsDir);
    this.stores = new StoreRegistry(options.storeOptions);
    this.cache = new ChunkCache(options.cacheSizeBytes ?? DEFAULT_CACHE_BYTES);
    this.loopThreads = options.loopThreads ?? LoopThreadPool.defaultThreads();
    this.loops = new SharedLoopPool(this.loopThreads);
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /** Opens the snapshot and starts serving it on its own socket; nothing is left behind on failure. */
  async create(name: string, req: RestoreRequest): Promise<RestoreInfo> {
    checkName(name);
    if (this.stopping) throw new FcUffdError('CONTROL_STOPPING', 'the daemon is stopping: no new restores');
    if (this.restores.has(name) || this.pending.has(name))
      throw new FcUffdError(
        'CONTROL_CONFLICT',
        `restore ${name} exists; DELETE it first (a draining restore keeps its name until its VMs end)`,
      );
    const socketPath = socketPathFor(this.socketsDir, name, req.socket);
    for (const r of this.restores.values())
      if (r.server.socketPath === socketPath)
        throw new FcUffdError('CONTROL_CONFLICT', `socket ${socketPath} is used by restore ${r.name}`);
    this.pending.add(name);
    let snapshot: Snapshot | undefined;
    try {
      const log = this.options.logger.child({ restore: name });
      snapshot = await this.openSnapshot(req, log);
      const server = await UffdServer.start({
        socketPath,
        snapshot,
        sharedLoops: this.loops,
        logger: log,
        ...(req.fault_around !== undefined ? { faultAround: req.fault_around } : {}),
        ...(req.on_fatal !== undefined ? { onFatal: req.on_fatal } : {}),
        ...(req.handshake_timeout_ms !== undefined ? { handshakeTimeoutMs: req.handshake_timeout_ms } : {}),
        ...(req.removed_out !== undefined ? { removedRangesPath: req.removed_out } : {}),
        ...(req.record_ws !== undefined ? { recordWorkingSetPath: req.record_ws } : {}),
        ...(req.prefetch !== undefined ? { prefetch: readWorkingSet(req.prefetch) } : {}),
      });
      // stop() may have begun while this restore was opening (the awaits above).
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      if (this.stopping) {
        await server.stop();
        throw new FcUffdError('CONTROL_STOPPING', 'the daemon began stopping while this restore was being created');
      }
      const restore: Restore = {
        name,
        state: 'serving',
        server,
        snapshot,
        kind: req.mem !== undefined ? 'memfile' : 'chunked',
        createdAtMs: Date.now(),
      };
      server.on('vm-ended', (_vm, info) => {
        this.emit('vm-end', name, info);
        if (restore.state === 'draining' && liveVms(server) === 0) void this.remove(restore);
      });
      this.restores.set(name, restore);
      log.info({ socket: socketPath, snapshot: snapshot.description }, 'restore created');
      return this.info(restore);
    } catch (err) {
      snapshot?.close();
      throw err;
    } finally {
      this.pending.delete(name);
    }
  }

  private async openSnapshot(req: RestoreRequest, log: Logger): Promise<Snapshot> {
    if (req.mem !== undefined) return ServedMemoryFile.open(req.mem);
    const chunked = await ServedChunkedSnapshot.open({
      manifest: req.snapshot!,
      store: await this.stores.open(req.store!),
      cache: this.cache,
      pool: this.codecs,
      ...(req.prefetch_chunks !== undefined ? { prefetchChunks: req.prefetch_chunks } : {}),
      logger: log,
    });
    if (typeof req.fault_around === 'number' && req.fault_around > chunked.manifest.chunkSizeBytes) {
      chunked.close();
      throw new FcUffdError('CONFIG', `fault_around ${req.fault_around} exceeds the snapshot's chunk size`);
    }
    return chunked;
  }

  list(): RestoreInfo[] {
    return [...this.restores.values()].map((r) => this.info(r));
  }

  get(name: string): RestoreDetail {
    const r = this.find(name);
    return { ...this.info(r), vms: r.server.vms().map(vmSummary) };
  }

  /**
   * Refuses new VMs at once (the socket file is removed) and lets live ones finish; the restore
   * is gone when the last one ends. `force`: stops serving its VMs now (their VMMs are not killed:
   * their next faults hang, as with any handler that stops).
   */
  async delete(name: string, force: boolean): Promise<RestoreInfo> {
    const r = this.find(name);
    this.drain(r);
    if (force || liveVms(r.server) === 0) await this.remove(r);
    return this.info(r);
  }

  health(): HealthInfo {
    const c = this.cache;
    return {
      status: this.stopping ? 'stopping' : 'ok',
      restores: this.restores.size,
      vms_live: [...this.restores.values()].reduce((n, r) => n + liveVms(r.server), 0),
      loop_threads: this.loopThreads,
      chunk_cache: {
        capacity_bytes: c.capacityBytes,
        size_bytes: c.sizeBytes,
        chunks: c.count,
        hits: c.stats.hits,
        misses: c.stats.misses,
        evictions: c.stats.evictions,
      },
    };
  }

  /** Every store a restore opened (one per store, shared by its restores), for metrics. */
  openStores(): ChunkStore[] {
    return this.stores.openStores();
  }

  /** Every restore's VMs, for metrics. */
  vmsByRestore(): Array<{ name: string; state: RestoreState; vms: VmInfo[] }> {
    return [...this.restores.values()].map((r) => ({ name: r.name, state: r.state, vms: r.server.vms() }));
  }

  /**
   * Graceful stop: no new restores or VMs, live VMs get up to `timeoutMs` to end, then every
   * restore is stopped. Resolves with the VMs that were still live at the deadline.
   */
  async stop(timeoutMs: number): Promise<Array<{ restore: string; vm: string; pid: number }>> {
    this.stopping = true;
    for (const r of this.restores.values()) {
      this.drain(r);
      if (liveVms(r.server) === 0) void this.remove(r);
    }
    this.stopDeadlineMs = Date.now() + timeoutMs;
    while (this.restores.size > 0 && Date.now() < this.stopDeadlineMs) await new Promise((resolve) => setTimeout(resolve, 50));
    const left = [...this.restores.values()].flatMap((r) =>
      r.server
        .vms()
        .filter((vm) => vm.state !== 'ended')
        .map((vm) => ({ restore: r.name, vm: vm.id, pid: vm.peer.pid })),
    );
    await Promise.all([...this.restores.values()].map((r) => this.remove(r)));
    await this.loops.shutdown();
    await this.codecs.close();
    await this.stores.closeAll();
    return left;
  }

  /** Cuts a graceful stop's wait short (a second signal). */
  hurry(): void {
    this.stopDeadlineMs = 0;
  }

  private find(name: string): Restore {
    checkName(name);
    const r = this.restores.get(name);
    if (!r) throw new FcUffdError('CONTROL_NOT_FOUND', `no restore named ${name}`);
    return r;
  }

  /** New VMs cannot connect: Firecracker finds no socket file. The name stays taken until the restore is gone. */
  private drain(r: Restore): void {
    if (r.state === 'draining') return;
    r.state = 'draining';
    fs.rmSync(r.server.socketPath, { force: true });
    this.options.logger.info({ restore: r.name, liveVms: liveVms(r.server) }, 'restore draining: no new VMs');
  }

  private remove(r: Restore): Promise<void> {
    r.gone ??= (async () => {
      await r.server.stop();
      r.snapshot.close();
      this.restores.delete(r.name);
      this.options.logger.info({ restore: r.name }, 'restore gone');
      this.emit('restore-gone', r.name);
    })();
    return r.gone;
  }

  private info(r: Restore): RestoreInfo {
    const vms = r.server.vms();
    return {
      name: r.name,
      state: r.state,
      socket: r.server.socketPath,
      snapshot: { kind: r.kind, description: r.snapshot.description, identity: r.snapshot.identity, size_bytes: r.snapshot.sizeBytes },
      created_at_ms: r.createdAtMs,
      vms_live: vms.filter((v) => v.state !== 'ended').length,
      vms_total: vms.length,
    };
  }
}

function liveVms(server: UffdServer): number {
  return server.vms().filter((v) => v.state !== 'ended').length;
}

function vmSummary(vm: VmInfo): VmSummary {
  const s = vm.stats;
  return {
    id: vm.id,
    state: vm.state,
    pid: vm.peer.pid,
    uid: vm.peer.uid,
    started_at_ms: vm.startedAtMs,
    ...(vm.endReason !== undefined ? { end_reason: vm.endReason } : {}),
    ...(vm.error !== undefined ? { error: { code: vm.error.code, message: vm.error.message } } : {}),
    stats: {
      faults: s.faults,
      pages_copied: s.pagesCopied,
      pages_zeroed: s.pagesZeroed,
      bytes_copied: s.bytesCopied,
      prefetched_pages: s.prefetchedPages,
      latency_p50_us: s.latency.p50Us,
      latency_p99_us: s.latency.p99Us,
    },
  };
}
