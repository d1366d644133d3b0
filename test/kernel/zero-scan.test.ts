// The memory file's zero-page scan: what it classifies, that closing the file stops it quietly, and
// that its thread really runs at a lower priority (the point of giving it a thread of its own).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryFile } from '../../src/snapshot/memfile.js';
import { PAGE_DATA, PAGE_ZERO } from '../../src/memory/source.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { threadNices } from '../helpers/threads.js';

const dir = tempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const PS = 4096;

test('the scan marks zero-filled pages zero and every other page data, a short last page data', async () => {
  const mem = path.join(dir, 'classes');
  // 3 MiB + a half page: the scan reads 1 MiB blocks, so zero pages sit in each block and at its edges.
  const zero = new Set([0, 1, 255, 256, 300, 511, 512, 700]);
  patternedFile(mem, 3 * 1024 * 1024, zero);
  fs.appendFileSync(mem, Buffer.alloc(PS / 2)); // all zero, but short: must stay data
  const file = MemoryFile.open(mem);
  try {
    await file.scan();
    const pages = Math.ceil(file.sizeBytes / PS);
    for (let p = 0; p < pages; p++) {
      const want = zero.has(p) ? PAGE_ZERO : PAGE_DATA;
      assert.equal(file.classes.bytes[p], want, `page ${p}`);
    }
  } finally {
    file.close();
  }
});

test('closing the file during its scan ends the scan quietly (no error from reading a closed fd)', async () => {
  const mem = path.join(dir, 'closed');
  patternedFile(mem, 64 * 1024 * 1024);
  for (let i = 0; i < 5; i++) {
    const file = MemoryFile.open(mem);
    const scanned = file.scan();
    await new Promise((r) => setTimeout(r, i * 5));
    file.close();
    await scanned;
  }
});

test('the scan runs on a thread of its own, 10 nice steps below the process, and the caller keeps its nice', async () => {
  const mem = path.join(dir, 'niced');
  // Large enough that the scan runs for a while (every page is data: all of it is read).
  patternedFile(mem, 256 * 1024 * 1024);
  const inherited = os.getPriority();
  const file = MemoryFile.open(mem);
  try {
    const state = { finished: false };
    const scanned = file.scan().then(() => (state.finished = true));
    let seen = false;
    while (!state.finished && !seen) {
      seen = threadNices().includes(Math.min(19, inherited + 10));
      await new Promise((r) => setTimeout(r, 1));
    }
    await scanned;
    assert.ok(seen, 'a thread at the lowered nice was seen while the scan ran');
    assert.equal(os.getPriority(), inherited);
  } finally {
    file.close();
  }
});

test('when the scan has settled its thread is gone: no thread and no fd of it is left', async () => {
  const mem = path.join(dir, 'exited');
  patternedFile(mem, 8 * 1024 * 1024);
  const count = (d: string): number => fs.readdirSync(d).length;
  for (let i = 0; i < 5; i++) {
    const file = MemoryFile.open(mem);
    try {
      // Counted with the file open: only the scan thread comes and goes.
      const before = { threads: count('/proc/self/task'), fds: count('/proc/self/fd') };
      await file.scan();
      assert.equal(count('/proc/self/task'), before.threads, `round ${i}: threads`);
      assert.equal(count('/proc/self/fd'), before.fds, `round ${i}: fds (a thread's event loop holds an epoll fd, an eventfd and a pipe)`);
    } finally {
      file.close();
    }
  }
});
