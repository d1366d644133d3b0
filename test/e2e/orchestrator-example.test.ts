// Runs examples/orchestrator.ts as a user would, against the Firecracker emulator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/files.js';

const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/orchestrator.js');

interface ExampleOutput {
  events: string[];
  web: { id: string; tag: string; endReason: string; killed: boolean; emulatorSignal: string | null };
  db: { id: string; tag: string; endReason: string; pagesVerified: number; mismatches: number };
  health: { listening: unknown[]; loopThreads: { alive: number } };
}

test('examples/orchestrator: two snapshots through one server, tagged VMs, one stopped (VMM killed), the other awaited', async () => {
  const dir = tempDir();
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [EXAMPLE, dir], { timeout: 120_000 });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as ExampleOutput;
    assert.equal(out.web.tag, 'web');
    assert.equal(out.web.endReason, 'stopped');
    assert.equal(out.web.killed, true);
    assert.equal(out.web.emulatorSignal, 'SIGKILL');
    assert.equal(out.db.tag, 'db');
    assert.equal(out.db.endReason, 'vmm-exited');
    assert.equal(out.db.mismatches, 0);
    assert.equal(out.db.pagesVerified, 1024);
    assert.equal(out.health.listening.length, 2);
    assert.equal(out.health.loopThreads.alive, 2);
    assert.ok(
      out.events.some((e) => e.startsWith(`connected ${out.web.id} tag=web`)),
      out.events.join('\n'),
    );
    assert.ok(
      out.events.some((e) => e.startsWith(`ended ${out.db.id} tag=db`)),
      out.events.join('\n'),
    );
    assert.equal(fs.existsSync(path.join(dir, 'web.sock')), false, 'closed sockets leave no file');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
