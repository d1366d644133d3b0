// Pins the public types: compiled by `tsc -p test/types` (npm run lint:types, part of npm test).
// Each @ts-expect-error line must stay an error: if the types loosen, this file stops compiling.
import { FcUffdError, UffdServer, type ErrorCode, type Listener, type ServerHealth, type VmHandle, type VmInfo } from '../../src/index.js';
import { emulatorPath, runEmulator, type EmulatorResult } from '../../src/testing/index.js';

declare const server: UffdServer;
declare function use(...values: unknown[]): void;

server.on('vm-connected', (vm: VmHandle) => {
  use(vm.peer.pid);
});
server.on('vm-handshake', (vm) => {
  use(vm.listener.socketPath);
});
server.on('vm-refused', (vm: VmHandle, error: FcUffdError) => {
  use([vm.id, error.code satisfies ErrorCode]);
});
server.on('vm-ended', (vm: VmHandle, info: VmInfo) => {
  use([vm.tag, info.endReason, info.error?.code]);
});
// @ts-expect-error a misspelled event name does not compile
server.on('vm-endd', (vm: VmHandle) => {
  use(vm);
});
// @ts-expect-error a listener of the wrong type does not compile
server.on('vm-ended', (vm: number) => {
  use(vm);
});
// @ts-expect-error the old untyped event is gone
server.on('vm-end', (info: VmInfo) => {
  use(info);
});
// @ts-expect-error emit is typed too
server.emit('vm-handshake', 42);

async function handles(vm: VmHandle): Promise<void> {
  const final: VmInfo = await vm.ended;
  const stopped: VmInfo = await vm.stop({ kill: true });
  // @ts-expect-error stop takes options, not a signal name
  await vm.stop('SIGKILL');
  const err: FcUffdError | undefined = final.error;
  use([stopped, err, vm.stats().faults, vm.info().state satisfies 'handshake' | 'serving' | 'ended']);
}

async function listeners(): Promise<void> {
  const l: Listener = await server.listen({
    socketPath: '/run/x.sock',
    snapshot: server.sockets()[0]!.snapshot,
    tag: 'web',
    faultAround: 65536,
  });
  await l.close({ stopVms: true });
  // @ts-expect-error a ServedSnapshot-shaped object is not a snapshot the server can serve
  await server.listen({ socketPath: '/run/y.sock', snapshot: { description: '', identity: '', sizeBytes: 0 } });
  const h: ServerHealth = server.health();
  use(h.loopThreads.alive);
}

async function testing(): Promise<void> {
  const bin: string = emulatorPath();
  const r: EmulatorResult = await runEmulator({ socket: '/run/x.sock', mem: '/m' });
  use([bin, r.report?.mismatches]);
}

use([handles, listeners, testing]);
