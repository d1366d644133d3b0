// Serving restores from a chunked snapshot (manifest + chunks in a directory store) through the
// Firecracker emulator, which verifies every byte it reads against the original memory file.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { UffdServer, type VmInfo } from '../../src/index.js';
import { runEmulator } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { DirStore } from '../../src/store/dir.js';
import { pack } from '../../src/snapshot/pack.js';
import { ChunkCache } from '../../src/snapshot/chunk-cache.js';
import { ServedChunkedSnapshot } from '../../src/snapshot/chunked-source.js';
import { BLOB_HEADER_BYTES } from '../../src/snapshot/chunk-format.js';
import { withScratch } from '../helpers/scratch.js';
import { hugePagesOrSkip } from '../helpers/hugepages.js';

const MiB = 1024 * 1024;

describe('serve a chunked snapshot through the emulator', () => {
  test('4 KiB pages, 2 vCPUs, balloon on: every byte verified; a second VM on the same server is served from the shared cache', async () => {
    await withScratch(async (dir, log) => {
      const mem = path.join(dir, 'memory.bin');
      writeDemoImage(mem, 32 * MiB, 7);
      const store = DirStore.open(path.join(dir, 'store'));
      const packed = await pack({ memPath: mem, store });
      const cache = new ChunkCache(256 * MiB);
      const snapshot = await ServedChunkedSnapshot.open({ manifest: packed.id, store, cache, logger: log.logger });
      const server = await UffdServer.start({
        socketPath: path.join(dir, 'fc.sock'),
        snapshot,
        faultAround: 64 * 1024,
        logger: log.logger,
      });
      const ends: VmInfo[] = [];
      server.on('vm-ended', (_vm, info) => ends.push(info));
      try {
        const r1 = await runEmulator({
          socket: server.socketPath,
          mem,
          vcpus: 2,
          share: 'same',
          pattern: 'random',
          touchPages: 4096,
          writePercent: 20,
          kernelAccess: 8,
          balloonCycles: 300,
          balloonMaxPages: 16,
          deadlineMs: 30000,
        });
        assert.equal(r1.code, 0, `exit ${r1.code ?? r1.signal}: ${r1.stderr}\n${log.text()}`);
        assert.equal(r1.report!.mismatches, 0);
        assert.ok(r1.report!.pagesVerified > 4000, `verified ${r1.report!.pagesVerified}`);
        assert.equal(r1.report!.balloon!.cycles, 300);
        const fetchedAfterFirst = snapshot.stats.fetched;
        assert.ok(fetchedAfterFirst > 0 && fetchedAfterFirst <= packed.manifest.chunks.filter((c) => c).length);

        // The same chunks again: all from the cache, none fetched or decompressed a second time.
        const r2 = await runEmulator({ socket: server.socketPath, mem, vcpus: 1, pattern: 'seq', deadlineMs: 30000 });
        assert.equal(r2.code, 0, `exit ${r2.code ?? r2.signal}: ${r2.stderr}`);
        assert.equal(r2.report!.mismatches, 0);
        assert.equal(r2.report!.pagesVerified, (32 * MiB) / 4096);
        assert.ok(snapshot.stats.servedFromCache > 0);
        assert.ok(cache.count <= packed.manifest.chunks.length);
        // An emulator's exit reaches the handler through its pidfd a moment after the process is gone.
        while (ends.length < 2) await once(server, 'vm-ended');
        const ended = server.vms();
        assert.equal(ended.length, 2);
        for (const vm of ended) assert.equal(vm.endReason, 'vmm-exited', JSON.stringify(vm.error));
      } finally {
        await server.stop();
        snapshot.close();
      }
    });
  });

  test('a corrupted chunk is never served: that VM is SIGKILLed with SNAPSHOT_CORRUPT_CHUNK, another VM on the server keeps working', async () => {
    await withScratch(async (dir, log) => {
      const mem = path.join(dir, 'memory.bin');
      writeDemoImage(mem, 16 * MiB, 8);
      const store = DirStore.open(path.join(dir, 'store'));
      const packed = await pack({ memPath: mem, store, chunkSizeBytes: 4 * MiB });
      const last = packed.manifest.chunks[3];
      assert.ok(last, 'the last chunk holds data');
      // Flip bytes in the middle of the compressed payload of the last chunk.
      const blobPath = store.chunkPath(last.digest);
      const blob = fs.readFileSync(blobPath);
      fs.chmodSync(blobPath, 0o644);
      for (let i = BLOB_HEADER_BYTES + 200; i < blob.length; i += 997) blob[i]! ^= 0x5a;
      fs.writeFileSync(blobPath, blob);

      const snapshot = await ServedChunkedSnapshot.open({
        manifest: packed.id,
        store,
        cache: new ChunkCache(64 * MiB),
        prefetchChunks: 0,
        logger: log.logger,
      });
      const server = await UffdServer.start({ socketPath: path.join(dir, 'fc.sock'), snapshot, onFatal: 'kill', logger: log.logger });
      try {
        // VM A touches only the first MiB (chunk 0) and stays alive while VM B runs into chunk 3.
        const aHandshake = once(server, 'vm-handshake');
        const aEnded = new Promise<VmInfo>((resolve) => server.on('vm-ended', (_vm, info) => info.id === 'vm-1' && resolve(info)));
        const a = runEmulator({ socket: server.socketPath, mem, pattern: 'seq', touchPages: 256, holdMs: 1500, deadlineMs: 30000 });
        await aHandshake;
        const bEnded = new Promise<VmInfo>((resolve) => server.on('vm-ended', (_vm, info) => info.id === 'vm-2' && resolve(info)));
        const b = await runEmulator({ socket: server.socketPath, mem, pattern: 'seq', deadlineMs: 30000 });
        assert.equal(b.signal, 'SIGKILL', `B exit ${b.code}: ${b.stdout} ${b.stderr}`);
        const bInfo = await bEnded;
        assert.equal(bInfo.endReason, 'fatal');
        assert.equal(bInfo.error?.code, 'SNAPSHOT_CORRUPT_CHUNK');
        assert.equal(bInfo.killed, true);
        assert.ok(
          log.lines.some(
            (l) => l.code === 'SNAPSHOT_CORRUPT_CHUNK' || (l.error as { code?: string } | undefined)?.code === 'SNAPSHOT_CORRUPT_CHUNK',
          ),
          'the server logged the error code',
        );
        // B verified every page it read before the bad chunk: nothing wrong was served.
        assert.equal(b.report?.mismatches ?? 0, 0);

        const ra = await a;
        assert.equal(ra.code, 0, `A exit ${ra.code ?? ra.signal}: ${ra.stderr}`);
        assert.equal(ra.report!.mismatches, 0);
        assert.equal(ra.report!.pagesVerified, 256);
        // The emulator's exit reaches the handler through A's pidfd a moment later.
        assert.equal((await aEnded).endReason, 'vmm-exited');
      } finally {
        await server.stop();
        snapshot.close();
      }
    });
  });

  test('a chunk missing from the store stops the VM with SNAPSHOT_MISSING_CHUNK', async () => {
    await withScratch(async (dir, log) => {
      const mem = path.join(dir, 'memory.bin');
      writeDemoImage(mem, 8 * MiB, 9);
      const store = DirStore.open(path.join(dir, 'store'));
      const packed = await pack({ memPath: mem, store, chunkSizeBytes: 2 * MiB });
      for (const c of packed.manifest.chunks) if (c) fs.rmSync(store.chunkPath(c.digest));
      const snapshot = await ServedChunkedSnapshot.open({
        manifest: packed.id,
        store,
        cache: new ChunkCache(64 * MiB),
        logger: log.logger,
      });
      const server = await UffdServer.start({ socketPath: path.join(dir, 'fc.sock'), snapshot, logger: log.logger });
      try {
        const ended = once(server, 'vm-ended') as Promise<[unknown, VmInfo]>;
        const r = await runEmulator({ socket: server.socketPath, mem, pattern: 'seq', deadlineMs: 30000 });
        assert.equal(r.signal, 'SIGKILL');
        const [, vm] = await ended;
        assert.equal(vm.error?.code, 'SNAPSHOT_MISSING_CHUNK');
      } finally {
        await server.stop();
        snapshot.close();
      }
    });
  });

  test('2 MiB hugetlbfs pages from 2 MiB chunks, balloon on', async (t) => {
    const sizeBytes = 32 * MiB;
    const releaseHugePages = hugePagesOrSkip(t, sizeBytes / (2 * MiB) + 4);
    if (!releaseHugePages) return;
    try {
      await withScratch(async (dir, log) => {
        const mem = path.join(dir, 'memory.bin');
        writeDemoImage(mem, sizeBytes, 10);
        const store = DirStore.open(path.join(dir, 'store'));
        const packed = await pack({ memPath: mem, store, chunkSizeBytes: 2 * MiB });
        const snapshot = await ServedChunkedSnapshot.open({
          manifest: packed.id,
          store,
          cache: new ChunkCache(64 * MiB),
          logger: log.logger,
        });
        const server = await UffdServer.start({
          socketPath: path.join(dir, 'fc.sock'),
          snapshot,
          faultAround: 2 * MiB,
          logger: log.logger,
        });
        try {
          const r = await runEmulator({
            socket: server.socketPath,
            mem,
            pageSize: '2m',
            vcpus: 2,
            share: 'same',
            pattern: 'random',
            writePercent: 20,
            balloonCycles: 100,
            balloonMaxPages: 2,
            deadlineMs: 30000,
          });
          assert.equal(r.code, 0, `exit ${r.code ?? r.signal}: ${r.stderr}\n${log.text().slice(-3000)}`);
          assert.equal(r.report!.mismatches, 0);
          assert.ok(r.report!.pagesVerified > 0);
        } finally {
          await server.stop();
          snapshot.close();
        }
      });
    } finally {
      releaseHugePages();
    }
  });
});
