import type { FaultAround } from '../serve/fault-around.js';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { FcUffdError } from '../errors.js';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
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
import type { Listener, ListenOptions, Snapshot, VmHandle } from './types.js';

/**
 * Bytes installed per fault. 256 KiB is the knee of the curve measured on the real guest's restore
 * trace (the fault-around scenario, bench/results/adaptive.json): most of page-by-page's time saved
 * for a few percent more memory installed; 2 MiB saves a little more time for much more memory.
 */
export const DEFAULT_FAULT_AROUND_BYTES = 256 * 1024;
/** The fault-around a socket uses unless told otherwise (ListenOptions.faultAround, serve --fault-around). */
export const DEFAULT_FAULT_AROUND: FaultAround = DEFAULT_FAULT_AROUND_BYTES;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

/** Every ListenOptions field with its default, checked. */
export type ListenConfig = Required<Omit<ListenOptions, 'prefetch' | 'tag' | 'signal'>> & Pick<ListenOptions, 'prefetch' | 'tag'>;

/** Fills in defaults and checks every value (same checks and messages as `fc-uffd serve`); throws CONFIG_INVALID. */
export function listenConfig(o: ListenOptions): ListenConfig {
  const c: ListenConfig = {
    socketMode: 0o600,
    faultAround: DEFAULT_FAULT_AROUND,
    onFatal: 'kill',
    handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_MS,
    removedRangesPath: '',
    recordWorkingSetPath: '',
    tracePath: '',
    ...withoutUndefined(o),
  };
  if (typeof c.socketPath !== 'string' || c.socketPath === '')
    throw new FcUffdError('CONFIG_INVALID', 'socketPath must be a non-empty path');
  validateSocketPath(c.socketPath);
  validateSocketMode(c.socketMode);
  validateFaultAround(c.faultAround);
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
      this.traces = new TraceFiles(
        {
          snapshot: s.identity,
          snapshotSizeBytes: s.sizeBytes,
          faultAroundBytes: config.faultAround === 'adaptive' ? 0 : config.faultAround,
          prefetchPages: config.prefetch?.pages.length ?? 0,
        },
        logger,
      );
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
