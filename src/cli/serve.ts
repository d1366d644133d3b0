import { UffdServer } from '../firecracker/server.js';
import { createLogger } from '../log.js';
import type { OnFatal } from '../serve/protocol.js';
import { formatVmSummary } from './format.js';
import { ServedMemoryFile } from '../serve/snapshot-source.js';
import { readWorkingSet } from '../serve/working-set.js';

export interface ServeFlags {
  socket: string;
  mem: string;
  faultAround: number;
  onFatal: OnFatal;
  handshakeTimeoutMs: number;
  socketMode: number;
  logLevel: string;
  removedOut?: string;
  recordWs?: string;
  prefetch?: string;
}

export async function serveCommand(flags: ServeFlags): Promise<void> {
  const logger = createLogger(flags.logLevel);
  const snapshot = ServedMemoryFile.open(flags.mem);
  const server = await UffdServer.start({
    socketPath: flags.socket,
    snapshot,
    faultAroundBytes: flags.faultAround,
    onFatal: flags.onFatal,
    handshakeTimeoutMs: flags.handshakeTimeoutMs,
    socketMode: flags.socketMode,
    ...(flags.removedOut ? { removedRangesPath: flags.removedOut } : {}),
    ...(flags.recordWs ? { recordWorkingSetPath: flags.recordWs } : {}),
    ...(flags.prefetch ? { prefetch: readWorkingSet(flags.prefetch) } : {}),
    logger,
  });
  server.on('vm-end', (vm) => process.stdout.write(`${formatVmSummary(vm)}\n`));
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
  await server.stop();
  snapshot.close();
}
