// An orchestrator's use of the library: one server, one pool of fault-loop threads, two snapshots
// on two sockets with their own options; typed events, a handle per VM, VMs named by the
// orchestrator at accept time; one VM stopped (and its VMM killed), the other awaited.
//
// Run: node dist/examples/orchestrator.js [workdir]   (needs the emulator: npm run build:tools)
// In your project import from 'firecracker-uffd' and 'firecracker-uffd/testing' instead.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, FcUffdError, ServedMemoryFile, UffdServer, type VmHandle, type VmInfo } from '../src/index.js';
import { runEmulator } from '../src/testing/index.js';

const MiB = 1024 * 1024;

async function main(dir: string): Promise<void> {
  // Two "snapshots": memory files Firecracker would have written (random bytes; the emulator checks every byte it reads).
  const memPaths = { web: path.join(dir, 'web.mem'), db: path.join(dir, 'db.mem') };
  for (const p of Object.values(memPaths)) fs.writeFileSync(p, crypto.randomBytes(16 * MiB));
  const web = ServedMemoryFile.open(memPaths.web);
  const db = ServedMemoryFile.open(memPaths.db);

  // Our VM ids: the orchestrator knows which VMM process it started for which VM.
  const vmIdByPid = new Map<number, string>();
  const server = await UffdServer.create({
    loopThreads: 2,
    logger: createLogger('warn'),
    identify: (peer) => vmIdByPid.get(peer.pid),
  });
  const events: string[] = [];
  server.on('vm-connected', (vm) => events.push(`connected ${vm.id} tag=${vm.tag ?? '-'} pid=${vm.peer.pid}`));
  server.on('vm-handshake', (vm) => events.push(`serving ${vm.id} tag=${vm.tag ?? '-'} on ${path.basename(vm.listener.socketPath)}`));
  server.on('vm-refused', (vm, err: FcUffdError) => events.push(`refused ${vm.id}: ${err.code} ${err.message}`));
  server.on('vm-ended', (vm, info) =>
    events.push(`ended ${vm.id} tag=${vm.tag ?? '-'}: ${info.endReason ?? '?'}${info.killed ? ' (VMM killed)' : ''}`),
  );

  try {
    // One socket per snapshot, each with its own options; the socket's tag names VMs identify() does not.
    const webSocket = await server.listen({
      socketPath: path.join(dir, 'web.sock'),
      snapshot: web,
      tag: 'web',
      faultAround: 64 * 1024,
    });
    const dbSocket = await server.listen({ socketPath: path.join(dir, 'db.sock'), snapshot: db, tag: 'db', faultAround: 4096 });

    const serving = (socketTag: string): Promise<VmHandle> =>
      new Promise((resolve) => {
        const onHandshake = (vm: VmHandle): void => {
          if (vm.listener.tag !== socketTag) return;
          server.off('vm-handshake', onHandshake);
          resolve(vm);
        };
        server.on('vm-handshake', onHandshake);
      });

    // A long-lived web VM and a short db VM. (The emulator's pid is not known before it connects,
    // so these VMs keep their socket's tag; a real orchestrator maps the Firecracker pid it spawned.)
    const webServing = serving('web');
    const webRun = runEmulator({ socket: webSocket.socketPath, mem: memPaths.web, touchPages: 512, holdMs: 60_000, deadlineMs: 120_000 });
    const webVm = await webServing;
    const dbServing = serving('db');
    const dbRun = runEmulator({ socket: dbSocket.socketPath, mem: memPaths.db, touchPages: 1024, deadlineMs: 60_000 });
    const dbVm = await dbServing;

    // Stop the web VM now (and kill its VMM: it could not run on without its page server).
    const webInfo: VmInfo = await webVm.stop({ kill: true });
    const dbInfo: VmInfo = await dbVm.ended;
    const [webExit, dbExit] = await Promise.all([webRun, dbRun]);
    const health = server.health();

    // Stop accepting on both sockets, then stop the server; snapshots close last.
    await webSocket.close();
    await dbSocket.close();
    process.stdout.write(
      `${JSON.stringify({
        events,
        web: {
          id: webVm.id,
          tag: webVm.tag,
          endReason: webInfo.endReason,
          killed: webInfo.killed ?? false,
          faults: webInfo.stats.faults,
          emulatorSignal: webExit.signal,
        },
        db: {
          id: dbVm.id,
          tag: dbVm.tag,
          endReason: dbInfo.endReason,
          faults: dbInfo.stats.faults,
          pagesVerified: dbExit.report?.pagesVerified ?? 0,
          mismatches: dbExit.report?.mismatches ?? -1,
        },
        health,
      })}\n`,
    );
  } finally {
    await server.stop();
    web.close();
    db.close();
  }
}

const dir = process.argv[2] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-orchestrator-'));
main(dir).then(
  () => {
    if (process.argv[2] === undefined) fs.rmSync(dir, { recursive: true, force: true });
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof FcUffdError ? `${err.code}: ` : ''}${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
