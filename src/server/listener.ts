import fs from 'node:fs';
import type { Logger } from 'pino';
import { FcUffdError } from '../errors.js';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import type { ServedMemoryFile } from '../snapshot/memfile.js';
import type { ServedChunkedSnapshot } from '../snapshot/chunked-source.js';
import type { OnFatal } from '../serve/protocol.js';
import type { WorkingSet } from '../serve/working-set.js';
import { checkWorkingSetFits } from '../serve/working-set.js';
import {
  validateFaultAround,
  validateHandshakeTimeout,
  validateOnFatal,
  validateOutputTemplate,
  validateSocketMode,
  validateSocketPath,
} from '../serve/validate-options.js';
import { TraceFiles } from '../trace/files.js';
import type { VmHandle } from './vm-handle.js';

/**
 * Bytes installed per fault. The curve on the real 128 MiB guest's restore trace (bench/README.md,
 * fault-around scenario): 4k 663 ms, 16k 201, 64k 76, 256k 53, 2m 49 ms to done, installing 50, 52,
 * 54, 56 and 67 MB for a 50 MB working set. 256 KiB is the knee: most of the time saved for 4 %
 * more memory; 2 MiB saves a little more time for a third more memory.
 */
export const DEFAULT_FAULT_AROUND_BYTES = 256 * 1024;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

/**
 * A snapshot a server can serve. Only these two kinds: each has a page source on the fault-loop
 * threads, so the interface they share (ServedSnapshot) is not for users to implement.
 */
export type Snapshot = ServedMemoryFile | ServedChunkedSnapshot;

/** One socket Firecracker connects to, the snapshot it serves, and how its VMs are served. */
export interface ListenOptions {
  /** Unix socket Firecracker's `mem_backend.backend_path` points at (its directory must exist). */
  socketPath: string;
  /**
   * What to serve: `ServedMemoryFile.open()` or `await ServedChunkedSnapshot.open()`. The caller
   * owns it: close it after the listener (or the server) is closed. Many sockets may share one.
   */
  snapshot: Snapshot;
  /** Given to every VM of this socket as `vm.tag`, unless the server's `identify` names it. */
  tag?: string;
  /** Mode of the socket file; 0o600 (default) lets only this user's VMMs connect. */
  socketMode?: number;
  /** Bytes installed per fault (aligned block around it); 4096 disables fault-around. Default 256 KiB. */
  faultAroundBytes?: number;
  /** A VM that cannot be served correctly: 'kill' (default) SIGKILLs its VMM, 'hang' leaves it (debugging). */
  onFatal?: OnFatal;
  /** A VMM that connects but sends no handshake within this is refused (default 5000). */
  handshakeTimeoutMs?: number;
  /**
   * Where to write each VM's balloon-removed ranges when it ends (lines `<start> <end>`, snapshot
   * file offsets, end exclusive), for `fc-uffd pack --removed`. `{vm}` and `{pid}` are replaced
   * by the VM's id and its VMM's pid. An existing file is never replaced (the VM's id is added).
   */
  removedRangesPath?: string;
  /** Record each VM's first touches into a working-set file here when it ends ({vm}, {pid} replaced). */
  recordWorkingSetPath?: string;
  /** Record each VM's restore timeline into a trace file here ({vm}, {pid} replaced); see `fc-uffd report`. */
  tracePath?: string;
  /** Install this working set ahead of every VM's guest (refused if recorded against another snapshot). */
  prefetch?: WorkingSet;
  /** Cancels listen() while it runs (rejects with code ABORTED; nothing is left behind). */
  signal?: AbortSignal;
}

/** A socket being listened on; close it to stop accepting new VMs there. */
export interface Listener {
  readonly socketPath: string;
  readonly snapshot: Snapshot;
  readonly tag: string | undefined;
  readonly closed: boolean;
  /** Live VMs that came in on this socket. */
  vms(): VmHandle[];
  /**
   * Stops accepting (the socket file is removed at once, so Firecracker finds none). Its live VMs
   * are served on unless `stopVms`, which stops them and resolves once they ended.
   */
  close(options?: { stopVms?: boolean }): Promise<void>;
}

/** Every ListenOptions field with its default, checked. */
export type ListenConfig = Required<Omit<ListenOptions, 'prefetch' | 'tag' | 'signal'>> & Pick<ListenOptions, 'prefetch' | 'tag'>;

/** Fills in defaults and checks every value (same checks and messages as `fc-uffd serve`); throws CONFIG_INVALID. */
export function listenConfig(o: ListenOptions): ListenConfig {
  const c: ListenConfig = {
    socketMode: 0o600,
    faultAroundBytes: DEFAULT_FAULT_AROUND_BYTES,
    onFatal: 'kill',
    handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_MS,
    removedRangesPath: '',
    recordWorkingSetPath: '',
    tracePath: '',
    ...withoutUndefined(o),
  };
  if (typeof c.socketPath !== 'string' || c.socketPath === '') throw new FcUffdError('CONFIG_INVALID', 'socketPath must be a non-empty path');
  validateSocketPath(c.socketPath);
  validateSocketMode(c.socketMode);
  validateFaultAround(c.faultAroundBytes);
  validateHandshakeTimeout(c.handshakeTimeoutMs);
  validateOnFatal(c.onFatal);
  if (c.removedRangesPath) validateOutputTemplate('--removed-out', c.removedRangesPath);
  if (c.recordWorkingSetPath) validateOutputTemplate('--record-ws', c.recordWorkingSetPath);
  if (c.tracePath) validateOutputTemplate('--trace', c.tracePath);
  if (c.prefetch) checkWorkingSetFits(c.prefetch, c.snapshot.identity);
  return c;
}

function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && k !== 'signal')) as T;
}

/** Server side of a Listener. */
export class SocketListener implements Listener {
  closed = false;
  readonly traces: TraceFiles | undefined;
  readonly live = new Set<VmHandle>();
  /** Resolves once the acceptor let go of the fd (it may then be closed). */
  released: Promise<void> | undefined;

  constructor(
    readonly socketId: number,
    readonly config: ListenConfig,
    readonly listenFd: number,
    private readonly closer: (l: SocketListener, stopVms: boolean) => Promise<void>,
    logger: Logger,
  ) {
    const s = config.snapshot;
    if (config.tracePath)
      this.traces = new TraceFiles({ snapshot: s.identity, snapshotSizeBytes: s.sizeBytes, faultAroundBytes: config.faultAroundBytes, prefetchPages: config.prefetch?.pages.length ?? 0 }, logger);
  }

  get socketPath(): string {
    return this.config.socketPath;
  }

  get snapshot(): Snapshot {
    return this.config.snapshot;
  }

  get tag(): string | undefined {
    return this.config.tag;
  }

  vms(): VmHandle[] {
    return [...this.live];
  }

  close(options: { stopVms?: boolean } = {}): Promise<void> {
    return this.closer(this, options.stopVms ?? false);
  }
}

/** Creates the listening socket; removes a socket file left by a handler that died, never a live one. */
export function listenSocket(socketPath: string, mode: number): number {
  removeStaleSocket(socketPath);
  const fd = native.listenUnix(socketPath, mode, 64);
  if (fd < 0) throw new FcUffdError('CONFIG', `cannot listen on ${socketPath}: ${errnoName(-fd)}`);
  return fd;
}

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
