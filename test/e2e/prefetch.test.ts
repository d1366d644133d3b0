// Working-set record and prefetch, end to end: a first restore records what it installed on
// demand, the next one installs that ahead of the guest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { runEmulator, type EmulatorOptions } from '../../src/emulator/run.js';
import { writeDemoImage } from '../../src/snapshot/demo-image.js';
import { readWorkingSet } from '../../src/serve/working-set.js';
import { CLI_PATH, startServe } from '../helpers/cli.js';
import { tempDir } from '../helpers/files.js';

const MiB = 1024 * 1024;

test('record a working set, replay it: far fewer faults, still verified under the balloon with 4 vCPUs', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    writeDemoImage(mem, 64 * MiB, 21);
    // A sparse clustered working set, as restored guests touch memory: 400 runs of 1-16 pages.
    const trace = path.join(dir, 'trace.txt');
    let seed = 5;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const lines: string[] = [];
    for (let i = 0; i < 400; i++) {
      const start = rand((64 * MiB) / 4096 - 16);
      for (let k = 0, n = 1 + rand(16); k < n; k++) lines.push(`${i} ${(start + k) * 4096} ${rand(10) === 0 ? 'w' : 'r'}`);
    }
    fs.writeFileSync(trace, `${lines.join('\n')}\n`);
    const workload: Partial<EmulatorOptions> = { vcpus: 1, pattern: `trace:${trace}`, deadlineMs: 30000 };
    const wsFile = path.join(dir, 'vm.ws');

    const recording = await startServe(path.join(dir, 'a.sock'), ['--mem', mem, '--record-ws', wsFile]);
    let faultsOnDemand: number;
    try {
      const r = await runEmulator({ socket: recording.socket, mem, ...workload });
      assert.equal(r.code, 0, r.stderr);
      faultsOnDemand = (await recording.waitForLog((l) => l.msg === 'VM ended')).faults as number;
      await recording.waitForLog((l) => l.msg === 'wrote working set');
    } finally {
      assert.equal(await recording.stop(), 0);
    }
    const ws = readWorkingSet(wsFile);
    assert.ok(ws.pages.length >= 400, `recorded ${ws.pages.length} pages`);

    const replay = await startServe(path.join(dir, 'b.sock'), ['--mem', mem, '--prefetch', wsFile]);
    try {
      const r = await runEmulator({ socket: replay.socket, mem, ...workload });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.report!.mismatches, 0);
      const ended = await replay.waitForLog((l) => l.msg === 'VM ended');
      assert.ok((ended.prefetchedPages as number) > 0);
      assert.ok((ended.faults as number) <= faultsOnDemand * 0.1, `faults ${ended.faults} with prefetch vs ${faultsOnDemand} on demand: at least 90% fewer`);
      // The same working set with 4 vCPUs and the balloon racing the prefetcher: removed pages must
      // still read as zeros, everything else as the snapshot.
      const b = await runEmulator({ socket: replay.socket, mem, ...workload, vcpus: 4, share: 'same', writePercent: 10, balloonCycles: 1500, balloonMaxPages: 16 });
      assert.equal(b.code, 0, b.stderr);
      assert.equal(b.report!.mismatches, 0);
    } finally {
      assert.equal(await replay.stop(), 0);
    }

    // A working set recorded against another snapshot is refused at startup.
    const other = path.join(dir, 'other.bin');
    writeDemoImage(other, 64 * MiB, 22);
    const refused = spawnSync(process.execPath, [CLI_PATH, 'serve', '--socket', path.join(dir, 'c.sock'), '--mem', other, '--prefetch', wsFile], { encoding: 'utf8', timeout: 20000 });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /recorded against snapshot memfile:.* not the one served .*\[WORKING_SET_MISMATCH\]/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
