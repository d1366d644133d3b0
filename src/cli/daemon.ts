import { spawn } from 'node:child_process';
import path from 'node:path';
import { Daemon } from '../daemon/daemon.js';
import { ControlServer } from '../daemon/http.js';
import { createDaemonMetrics } from '../daemon/metrics.js';
import { FcUffdError } from '../errors.js';
import type { VmInfo } from '../server/server.js';
import { createLogger, logProcessWarnings } from '../log.js';
import { serveMetrics } from '../server/metrics.js';
import { formatVmSummary } from './format.js';
import { remoteStoreOptions, type StoreFlags } from './store-flags.js';

export interface DaemonFlags extends StoreFlags {
  control: string;
  socketsDir?: string;
  cacheSize: number;
  metricsListen?: string;
  loopThreads?: number;
  allowUid?: number[];
  allowGid?: number[];
  stopTimeoutMs: number;
  logLevel: string;
}

/** Tells systemd (Type=notify) the control socket is up; needs NotifyAccess=all, as the helper is our child. */
function notifyReady(logger: ReturnType<typeof createLogger>): void {
  if (!process.env.NOTIFY_SOCKET) return;
  const child = spawn('systemd-notify', ['--ready', `--pid=${process.pid}`], { stdio: 'ignore' });
  child.on('error', (err) =>
    logger.warn({ err: err.message }, 'NOTIFY_SOCKET is set but systemd-notify could not be run: systemd will not see this daemon ready'),
  );
  child.on('exit', (code) => code !== 0 && logger.warn({ code }, 'systemd-notify --ready failed'));
}

export async function daemonCommand(flags: DaemonFlags): Promise<void> {
  const storeOptions = remoteStoreOptions(flags);
  const logger = createLogger(flags.logLevel);
  logProcessWarnings(logger);
  let metricsAddr: { host: string; port: number } | undefined;
  if (flags.metricsListen) {
    const m = /^(.*):(\d+)$/.exec(flags.metricsListen);
    if (!m) throw new FcUffdError('CONFIG', `--metrics-listen wants HOST:PORT, got ${flags.metricsListen}`);
    metricsAddr = { host: m[1]!, port: Number(m[2]) };
  }
  const control = path.resolve(flags.control);
  const daemon = new Daemon({
    socketsDir: flags.socketsDir ?? path.dirname(control),
    cacheSizeBytes: flags.cacheSize,
    storeOptions,
    ...(flags.loopThreads !== undefined ? { loopThreads: flags.loopThreads } : {}),
    logger,
  });
  daemon.on('vm-end', (restore: string, vm: VmInfo) => process.stdout.write(`[${restore}] ${formatVmSummary(vm)}\n`));
  const registry = createDaemonMetrics(daemon);
  let server: ControlServer;
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  try {
    server = await ControlServer.listen({
      path: control,
      daemon,
      registry,
      allowUids: flags.allowUid ?? [],
      allowGids: flags.allowGid ?? [],
      logger,
    });
    if (metricsAddr) metrics = await serveMetrics(registry, metricsAddr.host, metricsAddr.port);
  } catch (err) {
    await daemon.stop(0);
    throw err;
  }
  logger.info(
    {
      control,
      socketsDir: daemon.socketsDir,
      loopThreads: daemon.loopThreads,
      cacheSizeBytes: flags.cacheSize,
      ...(metrics ? { metrics: `http://${metrics.address.address}:${metrics.address.port}/metrics` } : {}),
    },
    'daemon listening',
  );
  notifyReady(logger);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  logger.info(
    { signal, stopTimeoutMs: flags.stopTimeoutMs, liveVms: daemon.health().vms_live },
    'stopping: no new restores or VMs; waiting for live VMs',
  );
  // A second signal stops at once.
  const again = (): void => {
    logger.warn('second signal: stopping now');
    daemon.hurry();
  };
  process.once('SIGINT', again);
  process.once('SIGTERM', again);
  const left = await daemon.stop(flags.stopTimeoutMs);
  if (left.length > 0) logger.warn({ left }, `stopped with ${left.length} VM(s) still live: their next page faults will not be answered`);
  else logger.info('stopped: no VM was left');
  metrics?.server.close();
  await server.close();
}
