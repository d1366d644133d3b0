// Ctrl-C during pack and unpack, as a user presses it: the command stops through its AbortSignal,
// says so in one line, exits 130, and leaves no manifest, no output file and no temporary file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CLI_PATH } from '../helpers/cli.js';
import { runCli } from '../helpers/run-cli.js';
import { patternedFile, tempDir } from '../helpers/files.js';

const MiB = 1024 * 1024;
const dir = tempDir('fc-uffd-interrupt-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Big enough that pack and unpack run for a good second on a busy 2-core machine. */
const mem = path.join(dir, 'memory.bin');
patternedFile(mem, 384 * MiB);

interface Interrupted {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Starts the CLI, sends SIGINT once `midway()` holds (polled), and waits for it to end. */
function interrupt(args: string[], midway: () => boolean): Promise<Interrupted> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setInterval(() => {
      if (!midway()) return;
      clearInterval(timer);
      child.kill('SIGINT');
    }, 10);
    const killer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearInterval(timer);
      clearTimeout(killer);
      resolve({ code, signal, stderr });
    });
  });
}

/** Every file under `root` (relative paths); one renamed or removed while listed is left out. */
function files(root: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(root, { recursive: true }) as string[];
  } catch {
    return [];
  }
  return names.filter((f) => fs.statSync(path.join(root, f), { throwIfNoEntry: false })?.isFile() === true).sort();
}

test('Ctrl-C during pack: one line, exit 130, no manifest and no temporary file in the store', async () => {
  const store = path.join(dir, 'store-pack');
  // Mid-way: some chunks stored (a slow zstd level keeps it at that for seconds).
  const r = await interrupt(
    ['pack', mem, '--store', store, '--chunk-size', '2m', '--level', '19'],
    () => files(store).filter((f) => f.startsWith('chunks/')).length >= 2,
  );
  assert.equal(r.signal, null, 'the CLI exits by itself, not killed by the signal');
  assert.equal(r.code, 130, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('fc-uffd:'));
  assert.deepEqual(lines, ['fc-uffd: pack interrupted by SIGINT: no snapshot written [ABORTED]'], r.stderr);
  const left = files(store);
  assert.deepEqual(
    left.filter((f) => !f.startsWith('chunks/')),
    [],
    'no manifest and nothing in tmp/',
  );
  assert.ok(left.length < 192, `the pack stopped before storing every chunk (${left.length} stored)`);
});

test('Ctrl-C while chunk writes are under way: their temporary files are removed too', async () => {
  const store = path.join(dir, 'store-pack-writing');
  // Incompressible 4 MiB chunks at the default level: each write (and its fsync) takes a while and
  // the next follows at once, so the signal finds writes in flight.
  const random = path.join(dir, 'random.bin');
  const fd = fs.openSync(random, 'w');
  for (let i = 0; i < 32; i++) fs.writeSync(fd, crypto.randomBytes(4 * MiB));
  fs.closeSync(fd);
  const r = await interrupt(['pack', random, '--store', store], () => files(store).some((f) => f.startsWith('tmp/')));
  assert.equal(r.code, 130, r.stderr);
  assert.deepEqual(
    files(store).filter((f) => !f.startsWith('chunks/')),
    [],
    'no manifest and nothing in tmp/',
  );
});

test('Ctrl-C during unpack: one line, exit 130, no output file and no temporary file beside it', async () => {
  const store = path.join(dir, 'store-unpack');
  const packed = await runCli(['pack', mem, '--store', store, '--chunk-size', '2m'], 120000);
  assert.equal(packed.code, 0, packed.stderr);
  const id = packed.stdout.split('\n')[0]!.trim();
  const outDir = path.join(dir, 'out');
  fs.mkdirSync(outDir);
  const out = path.join(outDir, 'memory.bin');
  // Mid-way: the output is being written (under a temporary name) and has some data.
  const r = await interrupt(['unpack', id, '--store', store, '-o', out], () =>
    fs.readdirSync(outDir).some((f) => (fs.statSync(path.join(outDir, f), { throwIfNoEntry: false })?.blocks ?? 0) * 512 >= 8 * MiB),
  );
  assert.equal(r.signal, null, 'the CLI exits by itself, not killed by the signal');
  assert.equal(r.code, 130, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('fc-uffd:'));
  assert.deepEqual(lines, [`fc-uffd: unpack to ${out} interrupted by SIGINT: no output file written [ABORTED]`], r.stderr);
  assert.deepEqual(fs.readdirSync(outDir), [], 'no output file, no temporary file');
  // The store is untouched and a new unpack works.
  const again = await runCli(['unpack', id, '--store', store, '-o', out], 120000);
  assert.equal(again.code, 0, again.stderr);
  assert.ok(fs.readFileSync(out).equals(fs.readFileSync(mem)));
});
