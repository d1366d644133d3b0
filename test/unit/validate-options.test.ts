// The library refuses what the CLI refuses, with the same message, before it listens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { UffdServer } from '../../src/server/server.js';
import { ServedMemoryFile } from '../../src/snapshot/memfile.js';
import { FcUffdError } from '../../src/errors.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { captureLogger } from '../helpers/logger.js';

test("UffdServer.start rejects bad options with CONFIG_INVALID and the CLI's message, leaving no socket", async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 1024 * 1024);
  const snapshot = ServedMemoryFile.open(mem);
  const socketPath = path.join(dir, 'fc.sock');
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ faultAround: 384 * 1024 }, /^--fault-around must be adaptive or a power of two/],
    [{ faultAround: 2048 }, /^--fault-around must be adaptive or a power of two of at least 4096/],
    [{ faultAround: 'adaptiv' }, /^--fault-around must be adaptive or a power of two .*got adaptiv/],
    [{ handshakeTimeoutMs: 0 }, /^--handshake-timeout-ms must be an integer of at least 100/],
    [{ loopThreads: 1000 }, /^--loop-threads must be an integer from 1 to at most 64/],
    [{ socketMode: 0o77777 }, /^--socket-mode must be permission bits/],
    [{ socketMode: 0o400 }, /^--socket-mode must be permission bits/],
    [{ recordWorkingSetPath: path.join(dir, 'nodir', '{vm}.ws') }, /^--record-ws .*directory .*nodir does not exist/],
    [{ removedRangesPath: path.join(dir, 'nodir', 'x') }, /^--removed-out .*nodir does not exist/],
    [{ socketPath: path.join(dir, 'nodir', 'fc.sock') }, /^--socket .*nodir does not exist/],
  ];
  try {
    for (const [bad, message] of cases) {
      const log = captureLogger();
      await assert.rejects(UffdServer.start({ socketPath, snapshot, logger: log.logger, ...bad }), (err: unknown) => {
        assert.ok(err instanceof FcUffdError);
        assert.equal(err.code, 'CONFIG_INVALID');
        assert.match(err.message, message);
        return true;
      });
      assert.equal(fs.existsSync(socketPath), false, `${JSON.stringify(bad)}: no socket`);
    }
  } finally {
    snapshot.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
