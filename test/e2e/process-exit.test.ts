// process.exit() while a server runs: its threads wait in epoll_wait, where Node's exit cannot stop
// them, so before src/serve/process-exit.ts the exit joined them forever. A library user exiting on
// an error, and the demo's Ctrl-C once its restore has begun, both hung.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EMULATOR_PATH, emulatorArgs } from '../../tools/emulator/run.js';
import { DEMO_PATH } from '../helpers/cli.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { spawnNode } from '../helpers/node-process.js';

const MiB = 1024 * 1024;
const INDEX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/index.js');

/** Resolves with the exit status, or with 'hung' after `ms`. */
function exitWithin(exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>, ms: number): Promise<unknown> {
  return Promise.race([exited, new Promise((r) => setTimeout(() => r('hung'), ms))]);
}

test('process.exit() with a server serving a VM exits at once, with its code', async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 8 * MiB);
  const socket = path.join(dir, 'exit.sock');
  const script = path.join(dir, 'exit.mjs');
  // Exits (code 7) once a VM's handshake was accepted: the fault-loop thread then waits on its uffd.
  fs.writeFileSync(
    script,
    `import { UffdServer, ServedMemoryFile } from ${JSON.stringify(INDEX)};
const server = await UffdServer.start({ socketPath: ${JSON.stringify(socket)}, snapshot: ServedMemoryFile.open(${JSON.stringify(mem)}) });
server.on('vm-handshake', () => setTimeout(() => process.exit(7), 100));
process.stdout.write('ready\\n');
`,
  );
  const p = spawnNode('library user', script, []);
  const emu = spawn(EMULATOR_PATH, emulatorArgs({ socket, mem, pattern: 'seq', touchPages: 16, holdMs: 60_000, deadlineMs: 60_000 }), {
    stdio: 'ignore',
  });
  try {
    for (let i = 0; i < 3000 && !p.stdout().includes('ready'); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(p.stdout().includes('ready'), p.stderr());
    const status = await exitWithin(p.exited, 15_000);
    assert.deepEqual(status, { code: 7, signal: null }, `process.exit(7) took effect (stderr: ${p.stderr()})`);
  } finally {
    p.child.kill('SIGKILL');
    emu.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('demo: Ctrl-C during the restore exits 130 at once and leaves no socket', async () => {
  const dir = tempDir();
  try {
    // Its own process group, as a terminal's Ctrl-C reaches the demo and its emulator together.
    const child = spawn(process.execPath, [DEMO_PATH, '--size', '16m', '--vcpus', '1', '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    for (let i = 0; i < 6000 && !out.includes('restoring'); i++) await new Promise((r) => setTimeout(r, 5));
    assert.match(out, /restoring/);
    process.kill(-child.pid!, 'SIGINT');
    assert.deepEqual(await exitWithin(exited, 15_000), { code: 130, signal: null });
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.endsWith('.sock')),
      [],
      'no socket left',
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
