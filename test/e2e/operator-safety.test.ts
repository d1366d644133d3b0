// What an operator does that is not a restore: probes of the socket, a second handler on the same
// socket, startup errors, nonsense flag values, existing outputs. Each command must end promptly
// with a clear message and leave nothing behind, and the handler must never kill a process that
// did not hand it a userfaultfd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEMO_PATH, startServe } from '../helpers/cli.js';
import { runCli, type CliRun } from '../helpers/run-cli.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { runEmulator } from '../../tools/emulator/run.js';

const PROBE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../helpers/probe-peer.js');
const MiB = 1024 * 1024;

function probe(socket: string, mode: string): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, [PROBE, socket, mode], { stdio: 'inherit' });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** A failed startup: prompt, non-zero, our message (not a stack or a dependency's text). */
function assertRefused(r: CliRun, message: RegExp): void {
  assert.equal(r.timedOut, false, `still running after the deadline; stderr:\n${r.stderr}`);
  assert.equal(r.signal, null, `died of ${r.signal}; stderr:\n${r.stderr}`);
  assert.notEqual(r.code, 0, `exit 0; stderr:\n${r.stderr}`);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /listening for Firecracker/, 'refused before serving anything');
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('a peer that closes without sending anything is logged and closed, not killed', async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 4 * MiB);
  const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
  try {
    const r = await probe(serve.socket, 'close');
    assert.deepEqual(r, { code: 0, signal: null }, 'the probing process lived on');
    const line = await serve.waitForLog((l) => (l.error as { code?: string } | undefined)?.code === 'HANDSHAKE_EOF');
    assert.equal(line.killedVmm, false);
  } finally {
    assert.equal(await serve.stop(), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a peer that sends a handshake with an fd that is not a userfaultfd is not killed', async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 4 * MiB);
  const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
  try {
    const r = await probe(serve.socket, 'pipe');
    assert.deepEqual(r, { code: 0, signal: null });
    const line = await serve.waitForLog((l) => (l.error as { code?: string } | undefined)?.code === 'HANDSHAKE_NOT_UFFD');
    assert.equal(line.killedVmm, false);
  } finally {
    assert.equal(await serve.stop(), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--on-fatal kill: a bad handshake that carried a real userfaultfd still kills its VMM', async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 4 * MiB);
  const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--on-fatal', 'kill']);
  try {
    const r = await probe(serve.socket, 'bad-uffd');
    assert.equal(r.signal, 'SIGKILL');
    const line = await serve.waitForLog((l) => (l.error as { code?: string } | undefined)?.code === 'HANDSHAKE_SHAPE');
    assert.equal(line.killedVmm, true);
  } finally {
    assert.equal(await serve.stop(), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a second serve on a live socket says so and exits 1 (not killed by the first)', async () => {
  const dir = tempDir();
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 4 * MiB);
  const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
  try {
    const r = await runCli(['serve', '--socket', serve.socket, '--mem', mem]);
    assert.equal(r.signal, null);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /another handler is listening/);
    assert.ok(fs.existsSync(serve.socket), "the first server's socket is untouched");
  } finally {
    assert.equal(await serve.stop(), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('startup errors exit promptly and non-zero, leaving no socket file', async (t) => {
  const dir = tempDir();
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 4 * MiB);
  const store = path.join(dir, 'store');
  const packed = await runCli(['pack', mem, '--store', store, '--chunk-size', '2m'], 30000);
  assert.equal(packed.code, 0, packed.stderr);
  const id = packed.stdout.split('\n')[0]!.trim();
  const sock = path.join(dir, 'fc.sock');
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const busyPort = (busy.address() as net.AddressInfo).port;
  fs.writeFileSync(path.join(dir, 'bad.ws'), 'not a working set\n');
  const cases: Array<[string, string[], RegExp]> = [
    [
      'metrics port busy',
      ['serve', '--socket', sock, '--mem', mem, '--metrics-listen', `127.0.0.1:${busyPort}`],
      /--metrics-listen.*in use/,
    ],
    ['metrics address bad', ['serve', '--socket', sock, '--mem', mem, '--metrics-listen', 'nonsense'], /--metrics-listen wants HOST:PORT/],
    ['metrics host unknown', ['serve', '--socket', sock, '--mem', mem, '--metrics-listen', '256.1.1.1:9100'], /--metrics-listen/],
    [
      'fault-around > chunk',
      ['serve', '--socket', sock, '--snapshot', id, '--store', store, '--fault-around', '4m'],
      /exceeds the snapshot's chunk size/,
    ],
    [
      'bad prefetch file',
      ['serve', '--socket', sock, '--snapshot', id, '--store', store, '--prefetch', path.join(dir, 'bad.ws')],
      /bad\.ws/,
    ],
    ['socket dir missing', ['serve', '--socket', path.join(dir, 'nodir', 'fc.sock'), '--snapshot', id, '--store', store], /nodir/],
    ['unpack to a missing dir', ['unpack', id, '--store', store, '-o', path.join(dir, 'nodir', 'out.bin')], /nodir/],
  ];
  try {
    for (const [name, args, message] of cases) {
      await t.test(name, async () => {
        const r = await runCli(args);
        assertRefused(r, message);
        assert.equal(fs.existsSync(sock), false, 'no socket file left');
      });
    }
    await t.test('demo --vcpus 0', async () => {
      const r = await runCli(['--vcpus', '0', '--size', '4m', '--dir', path.join(dir, 'demo')], 30000, DEMO_PATH);
      assertRefused(r, /--vcpus/);
    });
  } finally {
    busy.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('nonsense flag values are refused at startup with a message that says what to do', async (t) => {
  const dir = tempDir();
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 4 * MiB);
  const sock = path.join(dir, 'fc.sock');
  const serve = (...args: string[]): string[] => ['serve', '--socket', sock, '--mem', mem, ...args];
  const cases: Array<[string[], RegExp]> = [
    [serve('--fault-around', '384k'), /--fault-around.*power of two/],
    [serve('--fault-around', '0'), /--fault-around/],
    [serve('--fault-around', '2k'), /--fault-around.*at least 4096/],
    [serve('--fault-around', '3k'), /--fault-around/],
    [serve('--fault-around', 'adaptiv'), /--fault-around.*not a size or adaptive/],
    [serve('--handshake-timeout-ms', '0'), /--handshake-timeout-ms.*at least/],
    [serve('--loop-threads', '1000'), /--loop-threads.*at most/],
    [serve('--loop-threads', '0'), /--loop-threads/],
    [serve('--socket-mode', '77777'), /--socket-mode.*0[0-7]{3}/],
    [serve('--socket-mode', '4777'), /--socket-mode/],
    [serve('--socket-mode', 'abc'), /--socket-mode.*octal/],
    [serve('--log-level', 'loud'), /--log-level.*(debug|info)/],
    [serve('--record-ws', path.join(dir, 'nodir', '{vm}.ws')), /--record-ws.*nodir/],
    [serve('--removed-out', path.join(dir, 'nodir', '{vm}.removed')), /--removed-out.*nodir/],
    [serve('--cache-size', '0'), /--cache-size/],
    [['serve', '--sockt', sock, '--mem', mem], /unknown option '--sockt'/],
  ];
  try {
    for (const [args, message] of cases) {
      await t.test(args.slice(5).join(' ') || args.join(' '), async () => {
        const r = await runCli(args);
        assertRefused(r, message);
        assert.doesNotMatch(r.stderr, /listenUnix|pino/, "not a dependency's message");
        assert.equal(fs.existsSync(sock), false);
      });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('pack --removed past the end of the file is refused, not silently dropped', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    patternedFile(mem, 4 * MiB);
    fs.writeFileSync(path.join(dir, 'removed'), `0 4096\n${4 * MiB - 4096} ${8 * MiB}\n`);
    const r = await runCli(['pack', mem, '--store', path.join(dir, 'store'), '--removed', path.join(dir, 'removed')]);
    assertRefused(r, /removed.*beyond.*4194304/);
    assert.equal(fs.existsSync(path.join(dir, 'store')), false, 'a failed command creates no store');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function recordedWorkingSets(dir: string, count: number): Promise<string[]> {
  const mem = path.join(dir, 'memory.bin');
  patternedFile(mem, 4 * MiB);
  const files: string[] = [];
  const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--record-ws', path.join(dir, 'run-{vm}.ws')]);
  try {
    for (let i = 1; i <= count; i++) {
      const r = await runEmulator({ socket: serve.socket, mem, vcpus: 1, pattern: 'random', touchPages: 64, seed: i });
      assert.equal(r.code, 0, r.stderr);
      await serve.waitForLog((l) => l.msg === 'wrote working set' && l.vm === `vm-${i}`);
      files.push(path.join(dir, `run-vm-${i}.ws`));
    }
  } finally {
    assert.equal(await serve.stop(), 0);
  }
  return files;
}

test('ws merge: --min-runs checked against the runs, "all" accepted, outputs never overwritten', async () => {
  const dir = tempDir();
  try {
    const [a, b] = await recordedWorkingSets(dir, 2);
    const out = path.join(dir, 'merged.ws');
    assertRefused(await runCli(['ws', 'merge', a!, b!, '-o', out, '--min-runs', '3']), /--min-runs 3.*2 runs/);
    assert.equal(fs.existsSync(out), false);
    const all = await runCli(['ws', 'merge', a!, b!, '-o', out, '--min-runs', 'all']);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /at least 2 of 2 runs/);
    const before = fs.readFileSync(out);
    assertRefused(await runCli(['ws', 'merge', a!, b!, '-o', out]), /exists.*--force/);
    assert.deepEqual(fs.readFileSync(out), before);
    assert.equal((await runCli(['ws', 'merge', a!, b!, '-o', out, '--force'])).code, 0);
    const aBytes = fs.readFileSync(a!);
    assertRefused(await runCli(['ws', 'merge', a!, b!, '-o', a!, '--force']), /is one of the inputs/);
    assert.deepEqual(fs.readFileSync(a!), aBytes, 'an input is never written over');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("serve --record-ws without {vm}: every VM's recording is kept", async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    patternedFile(mem, 4 * MiB);
    const fixed = path.join(dir, 'fixed.ws');
    const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--record-ws', fixed]);
    try {
      for (let i = 1; i <= 2; i++) {
        const r = await runEmulator({ socket: serve.socket, mem, vcpus: 1, pattern: 'random', touchPages: 64, seed: i });
        assert.equal(r.code, 0, r.stderr);
        await serve.waitForLog((l) => l.msg === 'wrote working set' && l.vm === `vm-${i}`);
      }
    } finally {
      assert.equal(await serve.stop(), 0);
    }
    const written = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.ws'))
      .sort();
    assert.deepEqual(written, ['fixed.vm-2.ws', 'fixed.ws']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('unpack refuses an existing output unless --force', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    patternedFile(mem, 4 * MiB);
    const store = path.join(dir, 'store');
    const packed = await runCli(['pack', mem, '--store', store, '--chunk-size', '2m'], 30000);
    assert.equal(packed.code, 0, packed.stderr);
    const id = packed.stdout.split('\n')[0]!.trim();
    const out = path.join(dir, 'precious.bin');
    fs.writeFileSync(out, 'keep me');
    assertRefused(await runCli(['unpack', id, '--store', store, '-o', out]), /precious\.bin exists.*--force/);
    assert.equal(fs.readFileSync(out, 'utf8'), 'keep me');
    const r = await runCli(['unpack', id, '--store', store, '-o', out, '--force'], 30000);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fs.readFileSync(out), fs.readFileSync(mem));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
