// The benchmark's server: a chunked snapshot from any store (directory, http://, s3://) through
// openSnapshotStore, as `fc-uffd serve` opens it (in-flight de-duplication, retries, optional disk
// cache with the chunk checks), served on a socket. Prints one JSON line per VM that ended (its
// summary and the frame fetch times). A library server because the CLI's store URLs and cache
// flags are wired in parallel (see bench/remote.ts).
//   node dist/bench/lib/remote-serve.js '<json RemoteServeConfig>'
import { openSnapshotStore } from '../../src/snapshot/store-open.js';
import { ChunkCache } from '../../src/snapshot/chunk-cache.js';
import { ServedChunkedSnapshot } from '../../src/snapshot/chunked-source.js';
import { UffdServer } from '../../src/server/server.js';
import { readWorkingSet } from '../../src/serve/working-set.js';
import { createLogger } from '../../src/log.js';
import { threadSchedNs } from './trial.js';

export interface RemoteServeConfig {
  socket: string;
  store: string;
  manifest: string;
  s3Endpoint?: string;
  cacheDir?: string;
  prefetch?: string;
  recordWs?: string;
}

const c = JSON.parse(process.argv[2]!) as RemoteServeConfig;
const logger = createLogger('warn');
const store = await openSnapshotStore(c.store, {
  checkBucket: false,
  ...(c.s3Endpoint ? { s3: { endpoint: c.s3Endpoint } } : {}),
  ...(c.cacheDir ? { cache: { dir: c.cacheDir, maxBytes: 1 << 30 } } : {}),
});
const snapshot = await ServedChunkedSnapshot.open({ manifest: c.manifest, store, cache: new ChunkCache(), logger });
await snapshot.ready();
const server = await UffdServer.start({
  socketPath: c.socket,
  snapshot,
  logger,
  ...(c.prefetch ? { prefetch: readWorkingSet(c.prefetch) } : {}),
  ...(c.recordWs ? { recordWorkingSetPath: c.recordWs } : {}),
});
// CPU of every thread of this process from ready to the VM's end: what serving this restore cost the
// host; and of the main thread, which takes in every store body, with its time waiting for a CPU.
const cpuAtReady = process.cpuUsage();
const mainAtReady = threadSchedNs(process.pid, process.pid);
server.on('vm-ended', (_vm, info) => {
  const cpu = process.cpuUsage(cpuAtReady);
  const main = threadSchedNs(process.pid, process.pid);
  process.stdout.write(
    `${JSON.stringify({
      vmEnded: info,
      frameFetchMs: snapshot.frameFetchMs,
      frameTimings: snapshot.frameTimings,
      stats: snapshot.stats,
      cpuMs: (cpu.user + cpu.system) / 1000,
      mainCpuMs: (main.cpuNs - mainAtReady.cpuNs) / 1e6,
      mainWaitMs: (main.waitNs - mainAtReady.waitNs) / 1e6,
    })}\n`,
  );
});
process.stdout.write('ready\n');
await new Promise<void>((resolve) => process.once('SIGTERM', resolve));
await server.stop();
snapshot.close();
await store.close();
