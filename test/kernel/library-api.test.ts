// The library API an orchestrator uses: sockets with their own snapshots and options on one server,
// typed events with a handle per VM, per-VM stop, tags, health, option checks. Real kernel
// userfaultfd; the VMM is played in this process (test/helpers/vmm.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { FcUffdError, ServedMemoryFile, UffdServer, type VmHandle, type VmInfo } from '../../src/index.js';
import { native } from '../../src/kernel/native.js';
import { testNative } from '../../tools/test-native.js';
import { O_CLOEXEC } from '../../src/kernel/constants.js';
import { startInProcessVmm } from '../helpers/vmm.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { captureLogger } from '../helpers/logger.js';

const MiB = 1024 * 1024;

test('two sockets on one server serve their own snapshots; events carry VM handles with tags; stop() ends one VM', async () => {
  const dir = tempDir();
  const log = captureLogger();
  const a = patternedFile(path.join(dir, 'a.mem'), 4 * MiB, new Set(), 1);
  const b = patternedFile(path.join(dir, 'b.mem'), 4 * MiB, new Set(), 2);
  const snapA = ServedMemoryFile.open(path.join(dir, 'a.mem'));
  const snapB = ServedMemoryFile.open(path.join(dir, 'b.mem'));
  const seenPeers: number[] = [];
  const server = await UffdServer.create({
    loopThreads: 1,
    logger: log.logger,
    identify: (peer, listener) => {
      seenPeers.push(peer.pid);
      return listener.tag === 'b' ? `orchestrator-vm-${seenPeers.length}` : undefined;
    },
  });
  try {
    const la = await server.listen({ socketPath: path.join(dir, 'a.sock'), snapshot: snapA, tag: 'a', onFatal: 'hang' });
    const lb = await server.listen({
      socketPath: path.join(dir, 'b.sock'),
      snapshot: snapB,
      tag: 'b',
      onFatal: 'hang',
      faultAround: 4096,
    });
    assert.deepEqual(
      server.sockets().map((l) => l.tag),
      ['a', 'b'],
    );
    const connected: VmHandle[] = [];
    server.on('vm-connected', (vm) => connected.push(vm));

    const hsA = once(server, 'vm-handshake') as Promise<[VmHandle]>;
    const vmmA = startInProcessVmm(la.socketPath, [4 * MiB]);
    const [vmA] = await hsA;
    const hsB = once(server, 'vm-handshake') as Promise<[VmHandle]>;
    const vmmB = startInProcessVmm(lb.socketPath, [4 * MiB]);
    const [vmB] = await hsB;

    assert.deepEqual(
      connected.map((v) => v.id),
      [vmA.id, vmB.id],
    );
    assert.equal(vmA.tag, 'a', 'identify() answered undefined: the socket tag');
    assert.equal(vmB.tag, 'orchestrator-vm-2', 'identify() names the VM');
    assert.deepEqual(seenPeers, [process.pid, process.pid]);
    assert.equal(vmB.listener, lb);
    const page = Buffer.alloc(4096);
    testNative.readMemory(vmmA.regions[0]!.hostAddr + 7 * 4096, page);
    assert.ok(page.equals(a.subarray(7 * 4096, 8 * 4096)), 'socket a serves a.mem');
    testNative.readMemory(vmmB.regions[0]!.hostAddr + 7 * 4096, page);
    assert.ok(page.equals(b.subarray(7 * 4096, 8 * 4096)), 'socket b serves b.mem');
    assert.ok(vmB.stats().faults >= 1);
    assert.equal(vmB.info().state, 'serving');

    const health = server.health();
    assert.equal(health.status, 'ok');
    assert.deepEqual(health.vms, { handshake: 0, serving: 2 });
    assert.deepEqual(
      health.listening.map((l) => [l.tag, l.vmsLive]),
      [
        ['a', 1],
        ['b', 1],
      ],
    );
    assert.equal(health.loopThreads.alive, 1);
    assert.equal(health.acceptorAlive, true);

    // Stop A only: B serves on.
    const endedEvent = once(server, 'vm-ended') as Promise<[VmHandle, VmInfo]>;
    const infoA = await vmA.stop();
    assert.equal(infoA.endReason, 'stopped');
    assert.equal(infoA.killed, false);
    const [endedVm, endedInfo] = await endedEvent;
    assert.equal(endedVm, vmA);
    assert.equal(endedInfo, infoA);
    assert.equal(await vmA.ended, infoA);
    assert.equal(vmA.state, 'ended');
    testNative.readMemory(vmmB.regions[0]!.hostAddr + 9 * 4096, page);
    assert.ok(page.equals(b.subarray(9 * 4096, 10 * 4096)), 'B is still served');

    // Closing socket a: its file is gone at once, a VMM can no longer connect; b accepts on.
    await la.close();
    assert.equal(fs.existsSync(la.socketPath), false);
    assert.equal(native.connectUnix(la.socketPath) < 0, true);
    assert.deepEqual(
      server.sockets().map((l) => l.tag),
      ['b'],
    );

    const bEnded = vmB.ended;
    vmmB.close();
    assert.equal((await bEnded).endReason, 'vmm-exited');
    vmmA.close();
  } catch (err) {
    console.error(log.text());
    throw err;
  } finally {
    await server.stop();
    assert.equal(server.health().status, 'stopped');
    snapA.close();
    snapB.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a refused handshake emits vm-refused with an FcUffdError, then vm-ended with the same error', async () => {
  const dir = tempDir();
  const log = captureLogger();
  patternedFile(path.join(dir, 'm'), 4 * MiB);
  const snapshot = ServedMemoryFile.open(path.join(dir, 'm'));
  const server = await UffdServer.start({
    socketPath: path.join(dir, 'sock'),
    snapshot,
    onFatal: 'hang',
    loopThreads: 1,
    logger: log.logger,
  });
  try {
    const refused = once(server, 'vm-refused') as Promise<[VmHandle, FcUffdError]>;
    const ended = once(server, 'vm-ended') as Promise<[VmHandle, VmInfo]>;
    const blocking = startInProcessVmm(server.socketPath, [4 * MiB], 4096, O_CLOEXEC);
    const [vm, err] = await refused;
    assert.ok(err instanceof FcUffdError);
    assert.equal(err.code, 'HANDSHAKE_UFFD_BLOCKING');
    const [, info] = await ended;
    assert.equal(info.id, vm.id);
    assert.equal(info.error, err);
    assert.equal(info.endReason, 'fatal');
    blocking.close();
  } finally {
    await server.stop();
    snapshot.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('listen() and create() reject bad options (CONFIG_INVALID / CONFIG / ABORTED) and leave no socket', async () => {
  const dir = tempDir();
  const log = captureLogger();
  patternedFile(path.join(dir, 'm'), 1 * MiB);
  const snapshot = ServedMemoryFile.open(path.join(dir, 'm'));
  const server = await UffdServer.create({ loopThreads: 1, logger: log.logger });
  try {
    const socketPath = path.join(dir, 's.sock');
    const code = (c: string) => (err: unknown) => err instanceof FcUffdError && err.code === c;
    await assert.rejects(
      server.listen({ socketPath, snapshot, faultAround: 3000 }),
      (err: unknown) => code('CONFIG_INVALID')(err) && /--fault-around must be adaptive or a power of two/.test((err as Error).message),
    );
    await assert.rejects(server.listen({ socketPath, snapshot, onFatal: 'explode' as 'kill' }), code('CONFIG_INVALID'));
    await assert.rejects(server.listen({ socketPath, snapshot, tracePath: path.join(dir, 'nope', 't.trace') }), code('CONFIG_INVALID'));
    await assert.rejects(server.listen({ socketPath: path.join(dir, 'missing', 's.sock'), snapshot }), code('CONFIG_INVALID'));
    await assert.rejects(server.listen({ socketPath, snapshot, signal: AbortSignal.abort() }), code('ABORTED'));
    assert.equal(fs.existsSync(socketPath), false);
    await server.listen({ socketPath, snapshot });
    await assert.rejects(server.listen({ socketPath, snapshot }), code('CONFIG'));
    await assert.rejects(UffdServer.create({ loopThreads: 0 }), code('CONFIG_INVALID'));
    await assert.rejects(UffdServer.start({ socketPath: path.join(dir, 'x.sock'), snapshot, socketMode: 0o7777 }), code('CONFIG_INVALID'));
    assert.equal(fs.existsSync(path.join(dir, 'x.sock')), false);
  } finally {
    await server.stop();
    snapshot.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
