// Load and faults on one handler: 64 VMs restored at once (balloon on, every touched byte verified
// by the emulator); one VMM killed with -9 mid-restore while others run; the handler killed
// mid-restore. Small guests: this machine has 2 cores.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runEmulator, type EmulatorResult } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { tempDir } from '../helpers/files.js';
import { hugePagesOrSkip } from '../helpers/hugepages.js';

const MiB = 1024 * 1024;
const VMS = 64;

function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

const WARMUP_VMS = 4;

/**
 * The handler's fds once warm: a loop thread (its epoll set, its control eventfd) starts when the
 * pool first needs it, so warm-up VMs held open together make every thread (at most 4) start.
 */
async function warmFdCount(serve: ServeProcess, mem: string, pageSize: '4k' | '2m' = '4k'): Promise<number> {
  const warm = await Promise.all(
    Array.from({ length: WARMUP_VMS }, (_, i) =>
      runEmulator({ socket: serve.socket, mem, pageSize, vcpus: 1, pattern: 'random', touchPages: 4, holdMs: 300, seed: 1000 + i }),
    ),
  );
  warm.forEach((r) => assertVerified(r, 'warm-up VM', serve));
  await allEnded(serve, WARMUP_VMS);
  // The least of a few samples: Node opens short-lived fds of its own now and then.
  let least = Infinity;
  for (let i = 0; i < 5; i++, await new Promise((r) => setTimeout(r, 20))) least = Math.min(least, fdCount(serve.child.pid!));
  return least;
}

/** The handler's fds come back to `baseline` (polled: a VM's end is logged as its fds are closed). */
async function assertFdsBackTo(serve: ServeProcess, baseline: number, what: string): Promise<void> {
  let now = fdCount(serve.child.pid!);
  for (let i = 0; i < 150 && now > baseline; i++, await new Promise((r) => setTimeout(r, 20))) now = fdCount(serve.child.pid!);
  assert.ok(now <= baseline, `${what}: ${now} fds open, ${baseline} before`);
}

/** On failure the message carries the emulator's stderr (what each unfinished worker waits on) and the handler's lines about that VMM. */
function assertVerified(r: EmulatorResult, what: string, serve?: ServeProcess): void {
  const handlerSays = (): string =>
    serve
      ? serve
          .logs()
          .filter((l) => l.pid === r.pid)
          .map((l) => `\nhandler: ${JSON.stringify(l)}`)
          .join('')
      : '';
  assert.equal(r.code, 0, `${what}: exit ${r.code ?? r.signal}: ${r.stderr}${r.code !== 0 ? handlerSays() : ''}`);
  assert.equal(r.report!.mismatches, 0, what);
  assert.ok(r.report!.pagesVerified > 0, what);
}

async function allEnded(serve: ServeProcess, count: number): Promise<void> {
  await serve.waitForLog(
    () => serve.logs().filter((l) => l.msg === 'VM ended' || String(l.msg).startsWith('VM stopped')).length >= count,
    0,
    60000,
  );
}

for (const pageSize of ['4k', '2m'] as const) {
  test(`${VMS} concurrent VMs on one handler, ${pageSize} pages, balloon on: every byte verified, resources freed`, async (t) => {
    const sizeBytes = pageSize === '4k' ? 4 * MiB : 8 * MiB;
    let release: (() => void) | undefined = () => {};
    if (pageSize === '2m') {
      release = hugePagesOrSkip(t, (VMS * sizeBytes) / (2 * MiB) + 8);
      if (!release) return;
    }
    const dir = tempDir();
    try {
      const mem = path.join(dir, 'memory.bin');
      writeDemoImage(mem, sizeBytes, 17);
      const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--fault-around', pageSize === '4k' ? '64k' : '2m']);
      try {
        const fdsIdle = await warmFdCount(serve, mem, pageSize);
        const t0 = Date.now();
        const results = await Promise.all(
          Array.from({ length: VMS }, (_, i) =>
            runEmulator({
              socket: serve.socket,
              mem,
              pageSize,
              vcpus: 1,
              pattern: 'random',
              touchPages: pageSize === '4k' ? 256 : 8,
              writePercent: 20,
              balloonCycles: 20,
              balloonMaxPages: pageSize === '4k' ? 8 : 1,
              seed: i + 1,
              deadlineMs: 60000,
            }),
          ),
        );
        results.forEach((r, i) => assertVerified(r, `VM ${i + 1}`, serve));
        await allEnded(serve, VMS + WARMUP_VMS);
        const ended = serve.logs().filter((l) => l.msg === 'VM ended');
        assert.equal(ended.length, VMS + WARMUP_VMS, 'every VM ended normally');
        assert.ok(ended.every((l) => l.reason === 'vmm-exited'));
        await assertFdsBackTo(serve, fdsIdle, "every VM's fds were released");
        console.log(
          `# ${VMS} VMs (${pageSize} pages, ${sizeBytes / MiB} MiB each): all verified in ${Date.now() - t0} ms; ${results.reduce((n, r) => n + r.report!.pagesVerified, 0)} pages verified`,
        );
      } finally {
        assert.equal(await serve.stop(), 0);
      }
    } finally {
      release();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('kill -9 of one VMM mid-restore: the others are untouched, its resources are freed', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    writeDemoImage(mem, 16 * MiB, 19);
    const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
    try {
      const fdsIdle = await warmFdCount(serve, mem);
      // The victim restores with a long balloon workload so it is surely mid-restore when killed.
      const victim = runEmulator({
        socket: serve.socket,
        mem,
        vcpus: 2,
        pattern: 'random',
        writePercent: 20,
        balloonCycles: 10_000_000,
        balloonMaxPages: 8,
        seed: 99,
        deadlineMs: 120000,
      });
      const accepted = await serve.waitForLog((l) => l.msg === 'handshake accepted, serving' && l.vm === `vm-${WARMUP_VMS + 1}`);
      const others = Array.from({ length: 8 }, (_, i) =>
        runEmulator({
          socket: serve.socket,
          mem,
          vcpus: 2,
          pattern: 'random',
          touchPages: 2000,
          writePercent: 20,
          balloonCycles: 200,
          seed: i + 1,
          deadlineMs: 60000,
        }),
      );
      await serve.waitForLog(() => serve.logs().filter((l) => l.msg === 'handshake accepted, serving').length >= WARMUP_VMS + 3);
      process.kill(accepted.pid as number, 'SIGKILL');
      const v = await victim;
      assert.equal(v.signal, 'SIGKILL');
      (await Promise.all(others)).forEach((r, i) => assertVerified(r, `VM ${WARMUP_VMS + 2 + i}`, serve));
      await allEnded(serve, WARMUP_VMS + 9);
      const end = serve.logs().find((l) => l.msg === 'VM ended' && l.vm === accepted.vm);
      assert.equal(end?.reason, 'vmm-exited', "the killed VMM's VM ended as exited, not as a handler failure");
      assert.equal(serve.logs().filter((l) => String(l.msg).startsWith('VM stopped')).length, 0);
      await assertFdsBackTo(serve, fdsIdle, "the killed VM's fds were released too");
    } finally {
      assert.equal(await serve.stop(), 0);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the handler killed mid-restore: its VMs hang (the emulator's deadline), never read zeros or wrong bytes", async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    writeDemoImage(mem, 64 * MiB, 23);
    const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--fault-around', '4k']);
    const vms = Array.from({ length: 3 }, (_, i) =>
      runEmulator({ socket: serve.socket, mem, vcpus: 2, share: 'split', pattern: 'seq', writePercent: 10, seed: i + 1, deadlineMs: 3000 }),
    );
    await serve.waitForLog(() => serve.logs().filter((l) => l.msg === 'handshake accepted, serving').length >= 3);
    serve.child.kill('SIGKILL');
    for (const r of await Promise.all(vms)) {
      assert.equal(r.code, 1, `the restore cannot finish without the handler: ${r.stderr}`);
      assert.match(r.stderr, /deadline: \d+ of \d+ workers .*unfinished/);
      assert.equal(r.report?.mismatches ?? 0, 0, 'no vCPU read zeros or other bytes where snapshot data belongs');
      assert.ok(r.report!.pagesVerified < (64 * MiB) / 4096, 'it was stopped mid-restore');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
