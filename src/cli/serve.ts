import { UffdServer, type VmInfo } from '../server/server.js';
import { createLogger } from '../log.js';
import type { OnFatal } from '../serve/protocol.js';
import { formatVmSummary } from './format.js';
import { ServedMemoryFile } from '../snapshot/memfile.js';
import type { ServedSnapshot } from '../memory/snapshot.js';
import { FcUffdError } from '../errors.js';
import { DirStore } from '../store/dir.js';
import { ResilientStore } from '../store/resilient.js';
import { ChunkCache } from '../snapshot/chunk-cache.js';
import { ServedChunkedSnapshot } from '../snapshot/chunked-source.js';
import { readWorkingSet } from '../serve/working-set.js';
import { createMetrics, serveMetrics } from '../server/metrics.js';

export interface ServeFlags {
  socket: string;
  mem?: string;
  snapshot?: string;
  store?: string;
  cacheSize: number;
  prefetchChunks: number;
  faultAround: number;
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
  const logger = createLogger(flags.logLevel);
  const snapshot = await openSnapshot(flags, logger);
  const server = await UffdServer.start({
    socketPath: flags.socket,
    snapshot,
    faultAroundBytes: flags.faultAround,
    onFatal: flags.onFatal,
    handshakeTimeoutMs: flags.handshakeTimeoutMs,
    socketMode: flags.socketMode,
    ...(flags.removedOut ? { removedRangesPath: flags.removedOut } : {}),
    ...(flags.recordWs ? { recordWorkingSetPath: flags.recordWs } : {}),
    ...(flags.trace ? { tracePath: flags.trace } : {}),
    ...(flags.prefetch ? { prefetch: readWorkingSet(flags.prefetch) } : {}),
    ...(flags.loopThreads !== undefined ? { loopThreads: flags.loopThreads } : {}),
    logger,
  });
  server.on('vm-end', (vm: VmInfo) => process.stdout.write(`${formatVmSummary(vm)}\n`));
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  if (flags.metricsListen) {
    const m = /^(.*):(\d+)$/.exec(flags.metricsListen);
    if (!m) throw new FcUffdError('CONFIG', `--metrics-listen wants HOST:PORT, got ${flags.metricsListen}`);
    metrics = await serveMetrics(createMetrics(server), m[1]!, Number(m[2]));
    logger.info({ metrics: `http://${metrics.address.address}:${metrics.address.port}/metrics` }, 'serving Prometheus metrics');
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
}

/** Exactly one of --mem FILE or --snapshot MANIFEST --store DIR. */
async function openSnapshot(flags: ServeFlags, logger: ReturnType<typeof createLogger>): Promise<ServedSnapshot> {
  if ((flags.mem === undefined) === (flags.snapshot === undefined)) throw new FcUffdError('CONFIG', 'serve needs exactly one of --mem FILE or --snapshot MANIFEST --store DIR');
  if (flags.mem !== undefined) {
    if (flags.store !== undefined) throw new FcUffdError('CONFIG', '--store goes with --snapshot, not --mem');
    return ServedMemoryFile.open(flags.mem);
  }
  if (flags.store === undefined) throw new FcUffdError('CONFIG', '--snapshot needs --store DIR');
  const snapshot = await ServedChunkedSnapshot.open({
    manifest: flags.snapshot!,
    store: new ResilientStore(DirStore.open(flags.store)),
    cache: new ChunkCache(flags.cacheSize),
    prefetchChunks: flags.prefetchChunks,
    logger,
  });
  if (flags.faultAround > snapshot.manifest.chunkSizeBytes)
    throw new FcUffdError('CONFIG', `--fault-around ${flags.faultAround} exceeds the snapshot's chunk size ${snapshot.manifest.chunkSizeBytes}`);
  return snapshot;
}
