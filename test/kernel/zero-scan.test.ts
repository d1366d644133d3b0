// The memory file's zero-page scan: what it classifies, that closing the file stops it quietly, and
// that its thread really runs at SCHED_IDLE (the point of giving it a thread of its own).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { MemoryFile } from '../../src/snapshot/memfile.js';
import { PAGE_DATA, PAGE_ZERO } from '../../src/memory/source.js';
import { patternedFile, tempDir } from '../helpers/files.js';

const PS = 4096;
/** Field 41 of /proc/.../stat is the scheduling policy. */
const SCHED_IDLE = 5;

function policyOf(stat: string): number {
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3]);
}

test('the scan marks zero-filled pages zero and every other page data, a short last page data', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'mem');
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
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('closing the file during its scan ends the scan quietly (no error from reading a closed fd)', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'mem');
    patternedFile(mem, 64 * 1024 * 1024);
    for (let i = 0; i < 5; i++) {
      const file = MemoryFile.open(mem);
      const scanned = file.scan();
      await new Promise((r) => setTimeout(r, i * 5));
      file.close();
      await scanned;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('schedIdle moves only the calling thread to SCHED_IDLE', async () => {
  // The addon is loaded afresh in the thread, as the scan thread loads it.
  const nativeUrl = new URL('../../src/kernel/native.js', import.meta.url).href;
  const worker = new Worker(
    `import(${JSON.stringify(nativeUrl)}).then(({ native }) => {
       const rc = native.schedIdle();
       const stat = require('node:fs').readFileSync('/proc/thread-self/stat', 'utf8');
       require('node:worker_threads').parentPort.postMessage({ rc, stat });
     });`,
    { eval: true },
  );
  const reply = await new Promise<{ rc: number; stat: string }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  assert.equal(reply.rc, 0);
  assert.equal(policyOf(reply.stat), SCHED_IDLE, 'the thread that asked is idle');
  assert.equal(policyOf(fs.readFileSync('/proc/thread-self/stat', 'utf8')), 0, 'the main thread is untouched (SCHED_OTHER)');
});
