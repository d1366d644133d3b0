// Memory layouts Firecracker produces: 2 MiB hugetlbfs pages, and guests over 4 GiB whose memory
// is split around the x86_64 MMIO gap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runEmulator } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { startServe } from '../helpers/cli.js';
import { tempDir } from '../helpers/files.js';
import { hugePagesOrSkip } from '../helpers/hugepages.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test('2 MiB hugetlbfs pages: every fault served in whole huge pages, zeros included', async (t) => {
  const sizeBytes = 64 * MiB;
  const releaseHugePages = hugePagesOrSkip(t, sizeBytes / (2 * MiB) + 4);
  if (!releaseHugePages) return;
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    writeDemoImage(mem, sizeBytes, 9);
    // Leave whole 2 MiB holes too, so zero huge pages are exercised.
    const fd = fs.openSync(mem, 'r+');
    fs.writeSync(fd, Buffer.alloc(4 * MiB), 0, 4 * MiB, 10 * MiB);
    fs.closeSync(fd);
    const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
    try {
      // Zero-filled pages are known once the background scan has read them: wait for it, so that
      // the zero huge pages below do not depend on how fast a low-priority thread ran.
      await serve.waitForLog((l) => l.msg === 'snapshot prepared');
      const r = await runEmulator({
        socket: serve.socket,
        mem,
        pageSize: '2m',
        vcpus: 4,
        share: 'same',
        pattern: 'random',
        writePercent: 20,
        kernelAccess: 8,
        deadlineMs: 30000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.report!.ok, true);
      assert.equal(r.report!.pageSizeBytes, 2 * MiB);
      const ended = await serve.waitForLog((l) => l.msg === 'VM ended');
      assert.equal(ended.reason, 'vmm-exited');
      assert.ok((ended.pagesZeroed as number) > 0, 'zero huge pages were installed');
      assert.equal((ended.bytesCopied as number) % (2 * MiB), 0, 'only whole huge pages are copied');
    } finally {
      assert.equal(await serve.stop(), 0);
    }
  } finally {
    releaseHugePages();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a guest over 4 GiB: two regions around the MMIO gap, both served', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    const sizeBytes = 4 * GiB + 512 * MiB;
    // A sparse file (NORESERVE on the VMM side keeps the guest cheap too) with data pages spread
    // over both regions, including right at the region boundary.
    const fd = fs.openSync(mem, 'w');
    fs.ftruncateSync(fd, sizeBytes);
    const page = Buffer.alloc(4096);
    for (const off of [
      0,
      3 * GiB - 4096,
      3 * GiB,
      3 * GiB + 4096,
      4 * GiB,
      sizeBytes - 4096,
      ...Array.from({ length: 300 }, (_, i) => i * 15 * MiB + 8192),
    ]) {
      page.fill(0);
      page.write(`page at ${off}`, 0);
      page.writeUInt32LE(off % 0xffffffff, 100);
      fs.writeSync(fd, page, 0, 4096, off);
    }
    fs.closeSync(fd);
    const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
    try {
      for (const [i, fcVersion] of (['1.11', '1.14'] as const).entries()) {
        const logsBefore = serve.logs().length;
        const r = await runEmulator({
          socket: serve.socket,
          mem,
          fcVersion,
          vcpus: 2,
          pattern: 'random',
          touchPages: 4000,
          writePercent: 10,
          deadlineMs: 60000,
        });
        assert.equal(r.code, 0, r.stderr);
        const regions = r.report!['regions'] as Array<{ sizeBytes: number; offset: number }>;
        assert.equal(regions.length, 2, JSON.stringify(regions));
        // Up to v1.12 the gap starts at 3.25 GiB, from v1.13 at 3 GiB.
        assert.equal(regions[0]!.sizeBytes, fcVersion === '1.11' ? 3.25 * GiB : 3 * GiB);
        assert.equal(regions[1]!.offset, regions[0]!.sizeBytes);
        // This pass's VM (not the first pass's line): the handler saw both regions and the generation.
        const accepted = await serve.waitForLog((l) => l.msg === 'handshake accepted, serving', logsBefore);
        assert.equal(accepted.vm, `vm-${i + 1}`);
        assert.equal(accepted.regions, 2);
        assert.equal(accepted.generation, fcVersion === '1.11' ? 'v1.7-v1.11' : 'v1.12+');
      }
    } finally {
      assert.equal(await serve.stop(), 0);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
