// A handler that runs for days serves restore after restore: what it keeps per VM must not grow
// with the VMs it has served. 200 sequential restores on one server (the VMM played in-process,
// the real kernel userfaultfd); fds and threads are compared after a warm-up and at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { ServedMemoryFile, UffdServer, type VmInfo } from '../../src/index.js';
import { ENDED_VM_HISTORY } from '../../src/server/server.js';
import { testNative } from '../../tools/test-native.js';
import { startInProcessVmm } from '../helpers/vmm.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { captureLogger } from '../helpers/logger.js';

const RESTORES = 200;
const WARMUP = 20;

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function threads(): number {
  return Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
}

test(`${RESTORES} sequential restores: ended VMs are evicted (last ${ENDED_VM_HISTORY} kept), no fd or thread grows`, async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'mem');
  const expected = patternedFile(mem, 2 * 1024 * 1024);
  const log = captureLogger();
  const snapshot = ServedMemoryFile.open(mem);
  const server = await UffdServer.start({
    socketPath: path.join(dir, 'sock'),
    snapshot,
    onFatal: 'hang',
    loopThreads: 2,
    logger: log.logger,
  });
  const got = Buffer.alloc(4096);
  let baseline = { fds: 0, threads: 0 };
  try {
    await server.snapshotReady();
    for (let i = 1; i <= RESTORES; i++) {
      const handshake = once(server, 'vm-handshake');
      const vmm = startInProcessVmm(server.socketPath, [2 * 1024 * 1024]);
      await handshake;
      const page = i % 512;
      testNative.readMemory(vmm.regions[0]!.hostAddr + page * 4096, got);
      assert.ok(got.equals(expected.subarray(page * 4096, (page + 1) * 4096)), `restore ${i}: page ${page} differs`);
      const ended = once(server, 'vm-ended') as Promise<[unknown, VmInfo]>;
      vmm.close();
      const [, vm] = await ended;
      assert.equal(vm.endReason, 'vmm-exited', JSON.stringify(vm.error));
      if (i === WARMUP) baseline = { fds: openFds(), threads: threads() };
    }
    const vms = server.vms();
    assert.equal(vms.length, ENDED_VM_HISTORY, 'only the last ended VMs are kept');
    assert.equal(vms[vms.length - 1]!.id, `vm-${RESTORES}`);
    assert.equal(vms[0]!.id, `vm-${RESTORES - ENDED_VM_HISTORY + 1}`);
    assert.equal(server.vm('vm-1'), undefined, 'the oldest ended VMs are gone');
    assert.equal(server.liveVms().length, 0);
    assert.equal(openFds(), baseline.fds, 'open fds after the warm-up and at the end');
    assert.equal(threads(), baseline.threads, 'threads after the warm-up and at the end');
  } catch (err) {
    console.error(log.text().slice(-4000));
    throw err;
  } finally {
    await server.stop();
    snapshot.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
