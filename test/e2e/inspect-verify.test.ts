// `inspect --verify` is what an operator runs before trusting a store: it must read and hash every
// chunk, not only see that a file of the right name exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runCli } from '../helpers/run-cli.js';
import { patternedFile, tempDir } from '../helpers/files.js';

test('inspect --verify: a chunk whose bytes were changed is reported corrupt, exit 1', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    patternedFile(mem, 6 * 1024 * 1024);
    const store = path.join(dir, 'store');
    const packed = await runCli(['pack', mem, '--store', store, '--chunk-size', '2m', '--level', '1'], 30000);
    assert.equal(packed.code, 0, packed.stderr);
    const id = packed.stdout.split('\n')[0]!.trim();
    const good = await runCli(['inspect', id, '--store', store, '--verify']);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /all 3 chunks present and verified/);
    const chunkFiles = fs.readdirSync(path.join(store, 'chunks'), { recursive: true, withFileTypes: true }).filter((d) => d.isFile());
    assert.equal(chunkFiles.length, 3);
    const victim = path.join(chunkFiles[1]!.parentPath, chunkFiles[1]!.name);
    fs.chmodSync(victim, 0o644);
    const bytes = fs.readFileSync(victim);
    bytes[bytes.length - 1]! ^= 0xff;
    fs.writeFileSync(victim, bytes);
    const bad = await runCli(['inspect', id, '--store', store, '--verify']);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, new RegExp(`CORRUPT chunks? .*${chunkFiles[1]!.name.slice(0, 12)}`));
    fs.rmSync(victim);
    const missing = await runCli(['inspect', id, '--store', store, '--verify', '--json']);
    assert.equal(missing.code, 1);
    const j = JSON.parse(missing.stdout) as { missingChunks: number[]; corruptChunks: number[] };
    assert.equal(j.missingChunks.length, 1);
    assert.deepEqual(j.corruptChunks, []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('inspect and unpack accept a unique id prefix (like git); an unknown one is a clear error', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    patternedFile(mem, 2 * 1024 * 1024);
    const store = path.join(dir, 'store');
    const packed = await runCli(['pack', mem, '--store', store, '--chunk-size', '2m'], 30000);
    const id = packed.stdout.split('\n')[0]!.trim();
    const r = await runCli(['inspect', id.slice(0, 8), '--store', store]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`manifest\\s+${id}`));
    const other = id[0] === 'f' ? '0' : 'f';
    const missing = await runCli(['inspect', `${other}${id.slice(1, 8)}`, '--store', store]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no manifest id in .* starts with/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a store directory that does not exist is an error, not a new empty store', async () => {
  const dir = tempDir();
  try {
    const store = path.join(dir, 'typo');
    const r = await runCli(['inspect', 'a'.repeat(64), '--store', store]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no chunk store at .*typo/);
    assert.equal(fs.existsSync(store), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
