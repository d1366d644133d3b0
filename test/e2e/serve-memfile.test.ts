// Tier 3: `fc-uffd serve` as its own process, restores driven by the Firecracker emulator (a
// separate process doing what Firecracker does), every byte the guest reads verified.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runEmulator, type EmulatorOptions, type EmulatorResult } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { tempDir } from '../helpers/files.js';

const MiB = 1024 * 1024;

function assertVerified(r: EmulatorResult, what: string): void {
  assert.equal(r.code, 0, `${what}: emulator exit ${r.code ?? r.signal}\n${r.stderr}`);
  assert.ok(r.report, `${what}: no report`);
  assert.equal(r.report.ok, true, what);
  assert.equal(r.report.mismatches, 0, what);
  assert.ok(r.report.pagesVerified > 0, `${what}: nothing verified`);
}

describe('serving a memory file through the Firecracker emulator', () => {
  let dir: string;
  let mem: string;
  let serve: ServeProcess;
  const emulate = (o: Partial<EmulatorOptions>): Promise<EmulatorResult> =>
    runEmulator({ socket: serve.socket, mem, deadlineMs: 30000, ...o });

  before(async () => {
    dir = tempDir();
    mem = path.join(dir, 'memory.bin');
    writeDemoImage(mem, 64 * MiB, 7);
    serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--handshake-timeout-ms', '1000']);
  });

  after(async () => {
    const code = await serve.stop();
    assert.equal(code, 0, 'SIGTERM exits cleanly');
    assert.equal(fs.existsSync(serve.socket), false, 'the socket file is removed');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const fcVersion of ['1.6', '1.11', '1.14'] as const) {
    test(`Firecracker ${fcVersion} handshake: restore served and verified, VMM exit noticed`, async () => {
      const before = serve.logs().length;
      const r = await emulate({ fcVersion, vcpus: 2, pattern: 'random', writePercent: 10, kernelAccess: 32 });
      assertVerified(r, fcVersion);
      assert.ok(r.report!.kernelAccesses > 0 && r.report!.writes > 0);
      const generation = { '1.6': 'v1.1-v1.6', '1.11': 'v1.7-v1.11', '1.14': 'v1.12+' }[fcVersion];
      const ended = await serve.waitForLog((l) => l.msg === 'VM ended', before);
      assert.equal(ended.reason, 'vmm-exited');
      assert.ok((ended.faults as number) > 0);
      assert.ok(
        serve
          .logs()
          .slice(before)
          .some((l) => l.msg === 'handshake accepted, serving' && l.generation === generation),
      );
    });
  }

  for (const share of ['same', 'split'] as const) {
    test(`4 vCPU threads faulting ${share === 'same' ? 'the same' : 'different'} pages at once`, async () => {
      const r = await emulate({ vcpus: 4, share, pattern: 'random', writePercent: 20, kernelAccess: 16, seed: 3 });
      assertVerified(r, share);
      assert.equal(r.report!.vcpus, 4);
    });
  }

  test('sequential and trace-free full sweep verifies every page', async () => {
    const r = await emulate({ vcpus: 1, pattern: 'seq' });
    assertVerified(r, 'seq');
    assert.equal(r.report!.pagesVerified, (64 * MiB) / 4096);
  });

  test('unknown handshake fields (a newer Firecracker) are served, with a warning', async () => {
    const before = serve.logs().length;
    const r = await emulate({ handshakeExtra: '"future_field":{"x":1}', pattern: 'random', touchPages: 500 });
    assertVerified(r, 'unknown fields');
    const warning = await serve.waitForLog(
      (l) => typeof l.msg === 'string' && l.msg.includes('ignoring unknown field(s) future_field'),
      before,
    );
    assert.equal(warning.level, 40);
  });

  test('two VMs served by one process at once', async () => {
    const [a, b] = await Promise.all([
      emulate({ vcpus: 2, pattern: 'random', seed: 11, writePercent: 5 }),
      emulate({ vcpus: 2, pattern: 'random', seed: 12, writePercent: 5 }),
    ]);
    assertVerified(a, 'first VM');
    assertVerified(b, 'second VM');
    const ids = serve
      .logs()
      .filter((l) => l.msg === 'VM ended')
      .map((l) => l.vm);
    assert.equal(new Set(ids).size, ids.length, 'each connection is its own VM');
  });

  test('KVM guest: faults raised through KVM are served and verified', async (t) => {
    const r = await emulate({ vcpus: 2, pattern: 'random', kvm: true, touchPages: 2000 });
    if (r.code === 3) {
      t.skip(`KVM unavailable on this host: ${r.stderr.trim()}`);
      return;
    }
    assertVerified(r, 'kvm');
    assert.ok(r.report!.kvm && r.report!.kvm.checksumOk && r.report!.kvm.pagesTouched > 0, JSON.stringify(r.report!.kvm));
  });

  describe('bad input: a clear error, that VMM stopped, every other VM unharmed', () => {
    const cases: Array<{ name: string; o: Partial<EmulatorOptions>; code: string; killed: boolean }> = [
      {
        name: 'invalid JSON',
        o: { handshakeJson: 'this is not json', noWorkload: true, holdMs: 5000 },
        code: 'HANDSHAKE_JSON',
        killed: true,
      },
      // No userfaultfd, no proof the peer is a VMM with a guest of ours: disconnected, never killed.
      { name: 'no fd', o: { fds: 0, noWorkload: true, holdMs: 1000 }, code: 'HANDSHAKE_NO_FD', killed: false },
      { name: 'two fds', o: { fds: 2, noWorkload: true, holdMs: 5000 }, code: 'HANDSHAKE_TOO_MANY_FDS', killed: true },
      {
        name: 'truncated message, socket kept open',
        o: { handshakeJson: '[{"base_host_virt_addr":140000000000000,"size":4096', noWorkload: true, holdMs: 5000 },
        code: 'HANDSHAKE_TRUNCATED',
        killed: true,
      },
      {
        name: 'truncated message, then close (v1.11)',
        o: { fcVersion: '1.11', handshakeJson: '[{"base_host_virt_addr":1', noWorkload: true, holdMs: 5000 },
        code: 'HANDSHAKE_TRUNCATED',
        killed: true,
      },
      { name: 'empty message then close', o: { sendEmpty: true }, code: 'HANDSHAKE_EOF', killed: false },
      { name: 'connection closed before sending', o: { closeBeforeSend: true }, code: 'HANDSHAKE_EOF', killed: false },
      {
        name: 'page size 12345',
        o: {
          handshakeJson: '[{"base_host_virt_addr":140000000000000,"size":4096,"offset":0,"page_size":12345}]',
          noWorkload: true,
          holdMs: 5000,
        },
        code: 'HANDSHAKE_PAGE_SIZE',
        killed: true,
      },
      {
        name: 'overlapping regions',
        o: {
          handshakeJson:
            '[{"base_host_virt_addr":140000000000000,"size":8192,"offset":0},{"base_host_virt_addr":140000000004096,"size":4096,"offset":8192}]',
          noWorkload: true,
          holdMs: 5000,
        },
        code: 'HANDSHAKE_OVERLAP',
        killed: true,
      },
      {
        name: 'regions beyond the memory file',
        o: { memSizeBytes: 128 * MiB, noWorkload: true, holdMs: 5000 },
        code: 'HANDSHAKE_BEYOND_SNAPSHOT',
        killed: true,
      },
    ];

    test('each bad handshake, while a good VM keeps being served', async () => {
      // A good VM whose vCPUs keep faulting through the whole sequence of bad connections.
      const good = emulate({ vcpus: 2, pattern: 'random', balloonCycles: 0, touchPages: 12000, seed: 5, holdMs: 200 });
      for (const c of cases) {
        const before = serve.logs().length;
        const r = await emulate(c.o);
        const failure = await serve.waitForLog((l) => l.msg === 'VM stopped: it cannot be served correctly', before);
        const error = failure.error as { code: string; message: string };
        assert.equal(error.code, c.code, `${c.name}: ${JSON.stringify(error)}`);
        assert.match(error.message, /\S{10,}/, 'the message says what is wrong');
        if (c.killed) assert.equal(r.signal, 'SIGKILL', `${c.name}: the VMM must be stopped, not left hanging (exit ${r.code})`);
        else assert.equal(r.signal, null, `${c.name}: a peer that handed over no userfaultfd is never killed`);
        assert.equal(failure.killedVmm, c.killed, c.name);
      }
      assertVerified(await good, 'the good VM served alongside the bad ones');
      assertVerified(await emulate({ vcpus: 1, pattern: 'random', touchPages: 500 }), 'a VM after the bad ones');
    });
  });
});

describe('fatal errors stop the VMM instead of letting it read wrong memory', () => {
  test('memory file truncated under the handler: UFFDIO_COPY fails, the emulator is SIGKILLed', async () => {
    const dir = tempDir();
    const mem = path.join(dir, 'memory.bin');
    const data = Buffer.alloc(16 * MiB, 0x5a);
    fs.writeFileSync(mem, data);
    const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--fault-around', '4k']);
    try {
      fs.truncateSync(mem, 0);
      const r = await runEmulator({ socket: serve.socket, mem, memSizeBytes: 16 * MiB, pattern: 'seq', deadlineMs: 20000 });
      assert.equal(r.signal, 'SIGKILL', `emulator exit ${r.code}: ${r.stderr}`);
      const failure = await serve.waitForLog((l) => l.msg === 'VM stopped: it cannot be served correctly');
      const error = failure.error as { code: string; message: string };
      assert.equal(error.code, 'VM_IOCTL');
      assert.match(error.message, /UFFDIO_COPY .* at 0x[0-9a-f]+ failed: EFAULT/);
      assert.equal(failure.killedVmm, true);
    } finally {
      assert.equal(await serve.stop(), 0);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
