import { UffdServer } from '../server/server.js';
import { createLogger, logProcessWarnings } from '../log.js';
import type { OnFatal } from '../serve/protocol.js';
import { formatVmSummary } from './format.js';
import { ServedMemoryFile } from '../snapshot/memfile.js';
import type { Snapshot } from '../server/types.js';
import { FcUffdError } from '../errors.js';
import { openSnapshotStore } from '../snapshot/store-open.js';
import type { ChunkStore } from '../store/types.js';
import { storeOptionsFor, type StoreFlags } from './store-flags.js';
import { ChunkCache } from '../snapshot/chunk-cache.js';
import { ServedChunkedSnapshot } from '../snapshot/chunked-source.js';
import { readWorkingSet } from '../serve/working-set.js';
import { Registry } from 'prom-client';
import { createMetrics, registerStoreMetrics, serveMetrics } from '../server/metrics.js';
import { LoopThreadPool } from '../serve/loop-pool.js';
import { validateServerOptions } from '../serve/validate-options.js';
import type { FaultAround } from '../serve/fault-around.js';

export interface ServeFlags extends StoreFlags {
  socket: string;
  mem?: string;
  snapshot?: string;
  store?: string;
  cacheSize: number;
  prefetchChunks: number;
  faultAround: FaultAround;
  onFatal: OnFatal;
  handshakeTimeoutMs: number;
  socketMode: number;
  logLevel: string;
  removedOut?: string;
  recordWs?: string;
  trace?: string;
  prefetch?: string;
  metricsListen?: string;
  loopThreads?: number;
}

export async function serveCommand(flags: ServeFlags): Promise<void> {
  // Everything the operator asked for is checked before anything is opened: a bad value is one
  // message and exit 1, not a server that starts and then fails every VM.
  validateServerOptions({
    socketPath: flags.socket,
    socketMode: flags.socketMode,
    faultAround: flags.faultAround,
    handshakeTimeoutMs: flags.handshakeTimeoutMs,
    loopThreads: flags.loopThreads ?? LoopThreadPool.defaultThreads(),
    removedRangesPath: flags.removedOut ?? '',
    recordWorkingSetPath: flags.recordWs ?? '',
  });
  if (flags.cacheSize < 1024 * 1024)
    throw new FcUffdError('CONFIG_INVALID', `--cache-size must be at least 1m (one chunk needs room), got ${flags.cacheSize}`);
  const metricsAddress = flags.metricsListen !== undefined ? parseListenAddress(flags.metricsListen) : undefined;
  checkSnapshotFlags(flags);
  const storeOptions = flags.store !== undefined ? storeOptionsFor(flags.store, flags, false) : undefined;
  const logger = createLogger(flags.logLevel);
  logProcessWarnings(logger);
  let store: ChunkStore | undefined;
  let snapshot: Snapshot;
  try {
    if (flags.mem !== undefined) snapshot = ServedMemoryFile.open(flags.mem);
    else {
      store = await openSnapshotStore(flags.store!, storeOptions);
      snapshot = await ServedChunkedSnapshot.open({
        manifest: flags.snapshot!,
        store,
        cache: new ChunkCache(flags.cacheSize),
        prefetchChunks: flags.prefetchChunks,
        logger,
      });
    }
  } catch (err) {
    await store?.close();
    throw err;
  }
  let server: UffdServer | undefined;
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  try {
    // adaptive windows stop at 2 MiB, the smallest chunk size.
    if (
      snapshot instanceof ServedChunkedSnapshot &&
      flags.faultAround !== 'adaptive' &&
      flags.faultAround > snapshot.manifest.chunkSizeBytes
    )
      throw new FcUffdError(
        'CONFIG_INVALID',
        `--fault-around ${flags.faultAround} exceeds the snapshot's chunk size ${snapshot.manifest.chunkSizeBytes}; use at most that`,
      );
    const prefetch = flags.prefetch !== undefined ? readWorkingSet(flags.prefetch) : undefined;
    // The metrics port is bound before the socket: a busy port stops startup before any VMM can connect.
    const registry = new Registry();
    if (metricsAddress) metrics = await listenMetrics(registry, flags.metricsListen!, metricsAddress);
    server = await UffdServer.start({
      socketPath: flags.socket,
      snapshot,
      faultAround: flags.faultAround,
      onFatal: flags.onFatal,
      handshakeTimeoutMs: flags.handshakeTimeoutMs,
      socketMode: flags.socketMode,
      ...(flags.removedOut ? { removedRangesPath: flags.removedOut } : {}),
      ...(flags.recordWs ? { recordWorkingSetPath: flags.recordWs } : {}),
      ...(flags.trace ? { tracePath: flags.trace } : {}),
      ...(prefetch ? { prefetch } : {}),
      ...(flags.loopThreads !== undefined ? { loopThreads: flags.loopThreads } : {}),
      logger,
    });
    server.on('vm-ended', (_vm, info) => process.stdout.write(`${formatVmSummary(info)}\n`));
    if (metrics) {
      createMetrics(server, registry);
      const served = store;
      if (served) registerStoreMetrics(registry, () => [served]);
      logger.info({ metrics: `http://${metrics.address.address}:${metrics.address.port}/metrics` }, 'serving Prometheus metrics');
    }
  } catch (err) {
    // Leave nothing behind: no socket file, no thread keeping the process alive.
    metrics?.server.close();
    await server?.stop();
    snapshot.close();
    await store?.close();
    throw err;
  }
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
  metrics?.server.close();
  await server.stop();
  snapshot.close();
  await store?.close();
}

function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new FcUffdError('CONFIG_INVALID', `--metrics-listen wants HOST:PORT (e.g. 127.0.0.1:9100), got ${text}`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

async function listenMetrics(
  registry: Parameters<typeof serveMetrics>[0],
  text: string,
  a: { host: string; port: number },
): Promise<Awaited<ReturnType<typeof serveMetrics>>> {
  try {
    return await serveMetrics(registry, a.host, a.port);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? 'the port is in use by another process; pick another port'
        : code === 'EADDRNOTAVAIL'
          ? 'no interface of this host has that address'
          : code === 'EACCES'
            ? 'not allowed to listen there (ports below 1024 need privileges)'
            : code === 'ENOTFOUND'
              ? 'the host name does not resolve'
              : (err as Error).message;
    throw new FcUffdError('CONFIG_INVALID', `--metrics-listen ${text}: cannot listen: ${why}`);
  }
}

/** Exactly one of --mem FILE or --snapshot MANIFEST --store STORE. */
function checkSnapshotFlags(flags: ServeFlags): void {
  if ((flags.mem === undefined) === (flags.snapshot === undefined))
    throw new FcUffdError('CONFIG', 'serve needs exactly one of --mem FILE or --snapshot MANIFEST --store STORE');
  if (flags.mem !== undefined && flags.store !== undefined) throw new FcUffdError('CONFIG', '--store goes with --snapshot, not --mem');
  if (flags.snapshot !== undefined && flags.store === undefined)
    throw new FcUffdError('CONFIG', '--snapshot needs --store (a directory, s3://BUCKET/PREFIX or http(s)://HOST/PREFIX)');
}
