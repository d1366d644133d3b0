// What an interrupted or killed command leaves behind is removed: on Ctrl-C by the command itself,
// after kill -9 by the next writer in the same place (the dead writer's pid is in the name).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DEMO_PATH } from '../helpers/cli.js';
import { runCli } from '../helpers/run-cli.js';
import { patternedFile, tempDir } from '../helpers/files.js';

const MiB = 1024 * 1024;
/** A pid no process has: above the kernel's pid_max default (4194304 max). */
const DEAD_PID = 4194305;
const HOUR_AGO = new Date(Date.now() - 3600 * 1000);

function leave(file: string): void {
  fs.writeFileSync(file, 'half-written');
  fs.utimesSync(file, HOUR_AGO, HOUR_AGO);
}

test("pack and unpack remove what a killed pack or unpack left; a live writer's temp file is kept", async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    patternedFile(mem, 4 * MiB);
    const store = path.join(dir, 'store');
    assert.equal((await runCli(['pack', mem, '--store', store, '--chunk-size', '2m'], 30000)).code, 0);
    const staleChunk = path.join(store, 'tmp', `${'ab'.repeat(32)}.${DEAD_PID}.0123456789ab`);
    const liveChunk = path.join(store, 'tmp', `${'cd'.repeat(32)}.${process.pid}.0123456789ab`);
    leave(staleChunk);
    leave(liveChunk);
    const packed = await runCli(['pack', mem, '--store', store, '--chunk-size', '2m'], 30000);
    assert.equal(packed.code, 0, packed.stderr);
    assert.equal(fs.existsSync(staleChunk), false, "a dead writer's temp object is removed");
    assert.equal(fs.existsSync(liveChunk), true, "a live writer's temp object is kept");
    const id = packed.stdout.split('\n')[0]!.trim();
    const staleUnpack = path.join(dir, `.out.bin.tmp-${DEAD_PID}`);
    leave(staleUnpack);
    const r = await runCli(['unpack', id, '--store', store, '-o', path.join(dir, 'out.bin')], 30000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.existsSync(staleUnpack), false);
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.startsWith('.')),
      [],
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('demo: a partial snapshot of a killed demo is removed, never reused; Ctrl-C leaves no partial snapshot', async () => {
  const dir = tempDir();
  try {
    const size = 64 * MiB;
    const partial = path.join(dir, `memory-${size}.bin.partial-${DEAD_PID}`);
    leave(partial);
    // Ctrl-C while the snapshot is being made: no partial file, no complete-looking one either.
    const child = spawn(process.execPath, [DEMO_PATH, '--size', '64m', '--dir', dir], { stdio: 'ignore' });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
    const ownPartial = path.join(dir, `memory-${size}.bin.partial-${child.pid}`);
    // Wait (on a loaded machine start-up takes seconds) until the demo writes its image, or has one.
    for (let i = 0; i < 4000 && !fs.existsSync(ownPartial) && !fs.existsSync(path.join(dir, `memory-${size}.bin`)); i++)
      await new Promise((r) => setTimeout(r, 5));
    const interrupted = fs.existsSync(ownPartial) && !fs.existsSync(path.join(dir, `memory-${size}.bin`));
    child.kill('SIGINT');
    const [code] = await exited;
    assert.equal(fs.existsSync(partial), false, "the dead demo's partial snapshot is removed");
    if (!interrupted) console.log('# the demo made its snapshot before the signal: only the stale-file removal was checked');
    assert.equal(code, 130, 'exit 128 + SIGINT');
    // The image is written aside and renamed when whole: whatever the moment of the signal, what is
    // left under the snapshot's name is complete, and nothing else is left.
    const left = fs.readdirSync(dir);
    assert.deepEqual(
      left.filter((n) => n !== `memory-${size}.bin`),
      [],
      'no partial snapshot, no socket',
    );
    if (left.length > 0) assert.equal(fs.statSync(path.join(dir, `memory-${size}.bin`)).size, size);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
