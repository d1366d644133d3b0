// `fc-uffd serve --fault-around adaptive` end to end: the real kernel userfaultfd, restores driven by
// the Firecracker emulator, every byte verified; what the policy did read back from the VM's
// summary (log line and the human summary on stdout).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runEmulator, type EmulatorOptions, type EmulatorResult } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { tempDir } from '../helpers/files.js';

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;

function assertVerified(r: EmulatorResult, what: string): void {
  assert.equal(r.code, 0, `${what}: emulator exit ${r.code ?? r.signal}\n${r.stderr}`);
  assert.equal(r.report?.ok, true, what);
  assert.equal(r.report.mismatches, 0, what);
}

describe('serve --fault-around adaptive', () => {
  let dir: string;
  let mem: string;
  let serve: ServeProcess;
  const emulate = (o: Partial<EmulatorOptions>): Promise<EmulatorResult> =>
    runEmulator({ socket: serve.socket, mem, deadlineMs: 30000, vcpus: 1, ...o });
  const ended = async (since: number): Promise<Record<string, unknown>> => serve.waitForLog((l) => l.msg === 'VM ended', since);

  before(async () => {
    dir = tempDir();
    mem = path.join(dir, 'memory.bin');
    writeDemoImage(mem, SIZE, 7);
    serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--fault-around', 'adaptive']);
  });

  after(async () => {
    assert.equal(await serve.stop(), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('scattered faults: each installs only its own page (amplification 1, one ioctl each)', async () => {
    const since = serve.logs().length;
    const r = await emulate({ pattern: 'random', touchPages: 400, seed: 5 });
    assertVerified(r, 'random');
    const s = await ended(since);
    assert.equal(s.reason, 'vmm-exited');
    // Random pages of 8,192 rarely land within a stream's slack; allow a handful of chance continuations.
    assert.ok((s.amplification as number) <= 1.1, `amplification ${String(s.amplification)}`);
    assert.ok((s.ioctlsPerFault as number) <= 1.1, `ioctls per fault ${String(s.ioctlsPerFault)}`);
    assert.ok((s.windowCounts as number[])[0]! >= 0.9 * (s.faults as number), `most windows one page: ${JSON.stringify(s.windowCounts)}`);
  });

  test('a sequential sweep: windows grow to 2 MiB, every page verified, far fewer faults than pages', async () => {
    const since = serve.logs().length;
    const r = await emulate({ pattern: 'seq' });
    assertVerified(r, 'seq');
    assert.equal(r.report!.pagesVerified, SIZE / 4096);
    const s = await ended(since);
    assert.ok((s.faults as number) < 64, `faults ${String(s.faults)} for ${SIZE / 4096} pages`);
    assert.equal(s.faultPagesInstalled, SIZE / 4096, 'every page installed once, on demand');
    const counts = s.windowCounts as number[];
    assert.ok(counts[9]! >= 8, `2 MiB windows: ${JSON.stringify(counts)}`);
    assert.equal(counts[10], 0, 'never more than 2 MiB');
    // The summary reaches stdout on its own pipe, possibly after the log line on stderr: wait for it.
    const head = `${String(s.vm)} (VMM pid ${String(s.pid)}`;
    const deadline = Date.now() + 5000;
    while (!serve.stdout().includes(head) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    const summary = serve.stdout().slice(serve.stdout().indexOf(head));
    assert.match(
      summary,
      /^[^\n]*\n(?: {2}[^\n]*\n)* {2}fault-around {4}[\d.]+ pages installed per fault, [\d.]+ ioctls per fault; windows [^\n]*2m:\d+/,
      "this VM's summary",
    );
  });
});
