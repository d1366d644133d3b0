// Tier 2: the real kernel userfaultfd, the VMM played inside the test process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import path from 'node:path';
import fs from 'node:fs';
import { ServedMemoryFile, UffdServer, type VmHandle, type VmInfo } from '../../src/index.js';
import { testNative } from '../../tools/test-native.js';
import { O_CLOEXEC } from '../../src/kernel/constants.js';
import { startInProcessVmm } from '../helpers/vmm.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { captureLogger } from '../helpers/logger.js';

test('faults on registered memory are served with the memory file bytes, zero pages as zeros', async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'mem');
  const zero = new Set([3, 4, 100, 1000]);
  const expected = patternedFile(mem, 8 * 1024 * 1024, zero);
  const log = captureLogger();
  const snapshot = ServedMemoryFile.open(mem);
  const server = await UffdServer.start({
    socketPath: path.join(dir, 'sock'),
    snapshot,
    faultAround: 16384,
    onFatal: 'hang',
    logger: log.logger,
  });
  try {
    await server.snapshotReady();
    const handshake = once(server, 'vm-handshake') as Promise<[VmHandle]>;
    const vmm = startInProcessVmm(server.socketPath, [4 * 1024 * 1024, 4 * 1024 * 1024]);
    const [vm] = await handshake;
    assert.equal(vm.info().regions?.length, 2);
    const got = Buffer.alloc(4096);
    for (const p of [0, 3, 4, 5, 100, 513, 1000, 1024, 1025, 2047]) {
      const region = vmm.regions[Math.floor((p * 4096) / (4 * 1024 * 1024))]!;
      testNative.readMemory(region.hostAddr + p * 4096 - region.fileOffset, got);
      assert.ok(got.equals(expected.subarray(p * 4096, (p + 1) * 4096)), `page ${p} differs`);
    }
    const ended = once(server, 'vm-ended') as Promise<[VmHandle, VmInfo]>;
    vmm.close();
    const [, end] = await ended;
    assert.equal(end.endReason, 'vmm-exited', JSON.stringify(end.error));
    assert.ok(end.stats.faults >= 5, `faults ${end.stats.faults}`);
    assert.ok(end.stats.pagesZeroed >= 3, `zero pages ${end.stats.pagesZeroed}`);
    assert.ok(end.stats.pagesCopied >= 7);
  } catch (err) {
    console.error(log.text());
    throw err;
  } finally {
    await server.stop();
    snapshot.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a blocking uffd is refused with a clear error (it cannot be polled), and the thread serves on', async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'mem');
  const expected = patternedFile(mem, 4 * 1024 * 1024);
  const log = captureLogger();
  const snapshot = ServedMemoryFile.open(mem);
  // One fault-loop thread: the refused VM and the next one share it.
  const server = await UffdServer.start({
    socketPath: path.join(dir, 'sock'),
    snapshot,
    onFatal: 'hang',
    loopThreads: 1,
    logger: log.logger,
  });
  try {
    const refused = once(server, 'vm-ended') as Promise<[VmHandle, VmInfo]>;
    const blocking = startInProcessVmm(server.socketPath, [4 * 1024 * 1024], 4096, O_CLOEXEC);
    const [, vm] = await refused;
    assert.equal(vm.endReason, 'fatal');
    assert.equal(vm.error?.code, 'HANDSHAKE_UFFD_BLOCKING');
    blocking.close();
    const handshake = once(server, 'vm-handshake');
    const good = startInProcessVmm(server.socketPath, [4 * 1024 * 1024]);
    await handshake;
    const got = Buffer.alloc(4096);
    testNative.readMemory(good.regions[0]!.hostAddr + 5 * 4096, got);
    assert.ok(got.equals(expected.subarray(5 * 4096, 6 * 4096)));
    good.close();
  } finally {
    await server.stop();
    snapshot.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
