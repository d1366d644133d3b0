// The memory balloon under stress: a balloon thread in the emulator madvise(MADV_DONTNEED)s random
// ranges while 4 vCPU threads fault, read, write and re-read. Removed pages must read as zeros
// (never snapshot data), the EAGAIN path must be exercised, and no vCPU may hang.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runEmulator } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { startServe } from '../helpers/cli.js';
import { tempDir } from '../helpers/files.js';
import { hugePagesOrSkip } from '../helpers/hugepages.js';

const MiB = 1024 * 1024;

function readRanges(file: string): Array<[number, number]> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ').map(Number) as [number, number]);
}

/** The page offsets in a removed-ranges file. */
function readPages(file: string, pageSizeBytes: number): Set<number> {
  const pages = new Set<number>();
  for (const [s, e] of readRanges(file)) for (let o = s; o < e; o += pageSizeBytes) pages.add(o);
  return pages;
}

describe('balloon: REMOVE events racing faults', () => {
  for (const faultAround of ['4k', '64k']) {
    test(`4 KiB pages, fault-around ${faultAround}: thousands of inflate/deflate cycles, zero mismatches, EAGAIN exercised`, async (t) => {
      const dir = tempDir();
      try {
        const mem = path.join(dir, 'memory.bin');
        const image = writeDemoImage(mem, 32 * MiB, 3);
        assert.ok(image.textPages + image.randomPages > 1000, 'the snapshot has non-zero content, so zeros after REMOVE are meaningful');
        const serve = await startServe(path.join(dir, 'fc.sock'), [
          '--mem',
          mem,
          '--fault-around',
          faultAround,
          '--removed-out',
          path.join(dir, '{vm}.removed'),
        ]);
        try {
          const emuRemoved = path.join(dir, 'emulator.removed');
          // The emulator's deadline is the hang detector: a vCPU left waiting fails the run.
          const r = await runEmulator({
            socket: serve.socket,
            mem,
            vcpus: 4,
            share: 'same',
            pattern: 'random',
            writePercent: 25,
            kernelAccess: 16,
            balloonCycles: 3000,
            balloonMaxPages: 32,
            removedOut: emuRemoved,
            deadlineMs: 30000,
          });
          assert.equal(r.code, 0, `exit ${r.code ?? r.signal}: ${r.stderr}`);
          assert.equal(r.report!.mismatches, 0);
          assert.equal(r.report!.balloon!.cycles, 3000);
          // Zeros read back from removed pages whose snapshot bytes are not zero: the handler served
          // zeros because of the REMOVE, not because the snapshot happened to hold zeros there.
          assert.ok(
            r.report!.balloon!.rezeroNonzeroVerified > 0,
            `removed non-zero pages re-read as zeros: ${JSON.stringify(r.report!.balloon)}`,
          );
          const ended = await serve.waitForLog((l) => l.msg === 'VM ended');
          assert.equal(ended.reason, 'vmm-exited');
          assert.ok((ended.removeEvents as number) >= 3000, `REMOVE events ${String(ended.removeEvents)}`);
          assert.ok((ended.zeroPagesForRemoved as number) > 0);
          assert.ok((ended.deferrals as number) > 0, 'the EAGAIN path was exercised (deferrals > 0)');
          if (faultAround === '4k') {
            // Without fault-around the handler installs exactly what the guest touched, so its export
            // equals what the emulator removed and did not touch again — except racy pages: two vCPUs
            // faulted on one page at once, and the second, stale fault message (its vCPU already woken)
            // met EAGAIN and was served after a later REMOVE of that page, installing it for nobody
            // (PS_DUP_FAULT in tools/emulator/fc-emu.h). The handler may drop those, never add a page.
            const balloon = r.report!.balloon!;
            const racy = new Set(balloon.racyRemovedOffsets);
            const ours = readPages(path.join(dir, 'vm-1.removed'), 4096);
            const emu = readPages(emuRemoved, 4096);
            const onlyOurs = [...ours].filter((o) => !emu.has(o));
            const onlyEmu = [...emu].filter((o) => !ours.has(o));
            t.diagnostic(
              `removed pages: handler ${ours.size}, emulator ${emu.size}; racy ${racy.size} (${onlyEmu.length} dropped by the handler), racy removals ${balloon.racyRemovals}`,
            );
            assert.deepEqual(onlyOurs, [], 'the handler exported pages the guest touched after their removal');
            assert.deepEqual(
              onlyEmu.filter((o) => !racy.has(o)),
              [],
              'pages missing from the handler export with no racing duplicate fault',
            );
            assert.ok(emu.size > 100, `the comparison covers many removed pages (${emu.size})`);
            assert.ok(
              racy.size * 20 <= emu.size,
              `racy pages are few: ${racy.size} of ${emu.size} removed (${balloon.racyRemovals} racy removals)`,
            );
          } else {
            // With fault-around the handler may install untouched neighbours: its export is a
            // subset of the emulator's (it never claims a page the guest may have written).
            const emu = readRanges(emuRemoved);
            for (const [s, e] of readRanges(path.join(dir, 'vm-1.removed')))
              assert.ok(
                emu.some(([es, ee]) => es <= s && e <= ee),
                `[${s}, ${e}) not removed per the emulator`,
              );
          }
        } finally {
          assert.equal(await serve.stop(), 0);
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test('2 MiB hugetlbfs pages under the balloon', async (t) => {
    const sizeBytes = 64 * MiB;
    const releaseHugePages = hugePagesOrSkip(t, sizeBytes / (2 * MiB) + 4);
    if (!releaseHugePages) return;
    const dir = tempDir();
    try {
      const mem = path.join(dir, 'memory.bin');
      writeDemoImage(mem, sizeBytes, 4);
      const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
      try {
        const r = await runEmulator({
          socket: serve.socket,
          mem,
          pageSize: '2m',
          vcpus: 4,
          share: 'same',
          pattern: 'random',
          writePercent: 25,
          balloonCycles: 1000,
          balloonMaxPages: 4,
          deadlineMs: 30000,
        });
        assert.equal(r.code, 0, `exit ${r.code ?? r.signal}: ${r.stderr}`);
        assert.equal(r.report!.mismatches, 0);
        const ended = await serve.waitForLog((l) => l.msg === 'VM ended');
        assert.ok((ended.removeEvents as number) >= 1000);
        assert.ok((ended.zeroPagesForRemoved as number) > 0);
      } finally {
        assert.equal(await serve.stop(), 0);
      }
    } finally {
      releaseHugePages();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
