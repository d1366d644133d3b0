// Fault-loop threads run 10 nice steps above the rest of the process when the process may raise
// priority (root, CAP_SYS_NICE), and say so in the "listening" log line either way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ServedMemoryFile, UffdServer } from '../../src/index.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { threadNices } from '../helpers/threads.js';
import { captureLogger } from '../helpers/logger.js';

test('fault-loop threads run boosted when permitted, only they, and the listening line says at what nice', async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'mem');
  patternedFile(mem, 1024 * 1024);
  const log = captureLogger();
  const snapshot = ServedMemoryFile.open(mem);
  const inherited = os.getPriority();
  const server = await UffdServer.start({ socketPath: path.join(dir, 'sock'), snapshot, loopThreads: 2, logger: log.logger });
  try {
    const listening = log.lines.find((l) => l.msg === 'listening for Firecracker');
    assert.ok(listening, log.text());
    const privileged = process.getuid?.() === 0;
    const want = privileged ? Math.max(-20, inherited - 10) : inherited;
    assert.equal(listening.loopThreadNice, want);
    if (privileged) assert.equal(threadNices().filter((n) => n === want).length, 2, 'exactly the two loop threads are boosted');
    assert.equal(os.getPriority(), inherited, 'the main thread is untouched');
  } finally {
    await server.stop();
    snapshot.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
