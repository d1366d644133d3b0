// One `fc-uffd daemon` serving three snapshots at once (a memory file, a chunked snapshot and a
// diff snapshot on that base) to 20 emulator VMs, each verifying every byte it reads; the two
// chunked snapshots share one chunk cache, so a chunk they share is loaded once.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runEmulator, type EmulatorResult } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { DirStore } from '../../src/store/dir.js';
import { loadManifest, pack } from '../../src/snapshot/pack.js';
import { withScratch } from '../helpers/scratch.js';
import { startDaemon, until } from '../helpers/daemon.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const PAGE = 4096;

/** Writes `full` = base with every page of [fromPage, toPage) rewritten, and `diff` = only those pages (holes elsewhere), as a Firecracker diff snapshot. */
function writeDiff(base: string, full: string, diff: string, fromPage: number, toPage: number): void {
  const bytes = fs.readFileSync(base);
  const fd = fs.openSync(diff, 'w');
  fs.ftruncateSync(fd, bytes.length);
  for (let p = fromPage; p < toPage; p++) {
    const page = bytes.subarray(p * PAGE, (p + 1) * PAGE);
    page.fill(0x40 + (p % 50));
    page.writeUInt32LE(p, 0);
    fs.writeSync(fd, page, 0, PAGE, p * PAGE);
  }
  fs.closeSync(fd);
  fs.writeFileSync(full, bytes);
}

describe('fc-uffd daemon serves many snapshots from one process', () => {
  test('three snapshots (memory file, chunked, diff on that base) to 20 VMs at once: every byte verified, shared chunks loaded once', async () => {
    await withScratch(async (dir) => {
      const base = path.join(dir, 'base.bin');
      const full2 = path.join(dir, 'full2.bin');
      const diff = path.join(dir, 'diff.bin');
      writeDemoImage(base, SIZE, 21);
      // The diff rewrites pages inside chunk 1 only (4 MiB chunks): chunks 0, 2, 3 are the base's.
      writeDiff(base, full2, diff, 1100, 1300);
      const store = DirStore.open(path.join(dir, 'store'));
      const packedBase = await pack({ memPath: base, store, chunkSizeBytes: 4 * MiB });
      const packedDiff = await pack({ memPath: diff, store, base: await loadManifest(packedBase.id, store), diff: true });
      const digests = (m: typeof packedBase.manifest): string[] => m.chunks.flatMap((c) => (c ? [c.digest] : []));
      const distinct = new Set([...digests(packedBase.manifest), ...digests(packedDiff.manifest)]);
      const shared = digests(packedDiff.manifest).filter((d) => digests(packedBase.manifest).includes(d));
      assert.ok(shared.length >= 2, `the diff shares chunks with its base (${shared.length})`);
      await store.close();

      const sockets = path.join(dir, 'sockets');
      fs.mkdirSync(sockets);
      const d = await startDaemon(dir, ['--sockets-dir', sockets, '--loop-threads', '2', '--cache-size', '256m']);
      try {
        const mem = await d.client.createRestore('mem', { mem: base });
        const chunked = await d.client.createRestore('chunked', { snapshot: packedBase.id, store: path.join(dir, 'store') });
        const layered = await d.client.createRestore('diff', {
          snapshot: packedDiff.id,
          store: path.join(dir, 'store'),
          fault_around: 64 * 1024,
        });
        assert.equal(mem.socket, path.join(fs.realpathSync(sockets), 'mem.sock'));
        assert.deepEqual((await d.client.listRestores()).map((r) => r.name).sort(), ['chunked', 'diff', 'mem']);

        const plan = Array.from({ length: 20 }, (_, i) => [mem, chunked, layered][i % 3]!);
        let maxLive = 0;
        let sampling = true;
        const sampler = (async () => {
          // sampling turns false when the VMs are done (below), during an await of this loop.
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
          while (sampling) {
            maxLive = Math.max(maxLive, (await d.client.health()).vms_live);
            await new Promise((r) => setTimeout(r, 50));
          }
        })();
        const results: EmulatorResult[] = await Promise.all(
          plan.map((r, i) =>
            runEmulator({
              socket: r.socket,
              mem: r.name === 'diff' ? full2 : base,
              vcpus: 1,
              pattern: i % 2 ? 'seq' : 'random',
              seed: i + 1,
              holdMs: 2500,
              deadlineMs: 60000,
            }),
          ),
        );
        sampling = false;
        await sampler;
        results.forEach((r, i) => {
          assert.equal(r.code, 0, `VM ${i} (${plan[i]!.name}) exit ${r.code ?? r.signal}: ${r.stderr}`);
          assert.equal(r.report!.mismatches, 0, `VM ${i} read wrong bytes`);
          assert.ok(r.report!.pagesVerified > 0);
        });
        assert.equal(maxLive, 20, 'all 20 VMs were served at the same time');
        await until('every VM ended', async () => (await d.client.health()).vms_live === 0);
        for (const name of ['mem', 'chunked', 'diff']) {
          const detail = await d.client.getRestore(name);
          assert.equal(detail.vms.length, plan.filter((p) => p.name === name).length);
          for (const vm of detail.vms) assert.equal(vm.end_reason, 'vmm-exited', JSON.stringify(vm.error));
        }
        // Each distinct chunk was loaded into the one cache once: the base's chunks that the diff
        // reuses are held once, not once per snapshot.
        const h = await d.client.health();
        assert.equal(h.chunk_cache.misses, distinct.size, JSON.stringify(h.chunk_cache));
        assert.equal(h.chunk_cache.chunks, distinct.size);
        assert.ok(distinct.size < digests(packedBase.manifest).length + digests(packedDiff.manifest).length);
        assert.equal(h.loop_threads, 2);
        // The summary travels on stdout, a pipe apart from the API's answers: it may arrive after them.
        await until('a diff VM summary on stdout', () => /\[diff\] vm-\d+ .*vmm-exited/.test(d.stdout()));
        const metrics = await d.client.metrics();
        assert.match(metrics, /fc_uffd_restore_vms_started_total\{restore="mem"\} 7/);
        assert.match(metrics, /fc_uffd_chunk_cache_chunks \d+/);
        // The store both chunked restores name: one series (opened once), every distinct chunk read from it.
        const gets = [...metrics.matchAll(/^fc_uffd_store_requests_total\{store="dir:[^"]+",op="get"\} (\d+)$/gm)].map((m) => Number(m[1]));
        assert.equal(gets.length, 1, metrics);
        assert.ok(gets[0]! >= distinct.size, `${gets[0]} store reads for ${distinct.size} chunks`);
      } finally {
        assert.equal(await d.stop(), 0);
      }
      assert.deepEqual(fs.readdirSync(sockets), [], 'every restore socket removed at stop');
      assert.equal(fs.existsSync(d.control), false);
    });
  });
});
