import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeDirs, writeFileAtomic, writeFileAtomicAsync } from '../../src/atomic-write.js';
import { FcUffdError } from '../../src/errors.js';
import { tempDir } from '../helpers/files.js';
import { tmpfsOrSkip } from '../helpers/mounts.js';

test('writeFileAtomic replaces the file whole and leaves no temp file', () => {
  const dir = tempDir('atomic');
  const file = path.join(dir, 'out.txt');
  fs.writeFileSync(file, 'old');
  writeFileAtomic(file, 'new content');
  assert.equal(fs.readFileSync(file, 'utf8'), 'new content');
  assert.deepEqual(fs.readdirSync(dir), ['out.txt']);
});

test('a failed write leaves the old file and no temp file', async () => {
  const dir = tempDir('atomic');
  const file = path.join(dir, 'out.bin');
  fs.writeFileSync(file, 'old');
  await assert.rejects(
    writeFileAtomicAsync(file, { durable: true }, async (fh) => {
      await fh.write(Buffer.from('half'));
      throw new Error('fetch failed');
    }),
    /fetch failed/,
  );
  assert.equal(fs.readFileSync(file, 'utf8'), 'old');
  assert.deepEqual(fs.readdirSync(dir), ['out.bin']);
  assert.throws(() => writeFileAtomic(path.join(dir, 'missing-dir', 'x'), 'x'), {
    code: 'CONFIG_INVALID',
    message: /missing-dir does not exist/,
  });
  assert.deepEqual(fs.readdirSync(dir), ['out.bin']);
});

test('a rename that fails names the output, not its temp file, and leaves nothing', () => {
  const dir = tempDir('atomic');
  const out = path.join(dir, 'out.bin');
  fs.mkdirSync(path.join(out, 'inside'), { recursive: true });
  assert.throws(
    () => writeFileAtomic(out, 'x'),
    (e: unknown) => {
      assert.ok(e instanceof FcUffdError, String(e));
      assert.equal(e.message, `cannot write ${out}: it is a directory`);
      assert.doesNotMatch(e.message, /\.tmp-/);
      return true;
    },
  );
  assert.deepEqual(fs.readdirSync(dir), ['out.bin']);
});

test('a full filesystem: the error names the output (OUTPUT_WRITE), no temp file is left', async (t) => {
  const dir = tempDir('atomic');
  const fsMount = tmpfsOrSkip(t, path.join(dir, 'small'), { sizeBytes: 1024 * 1024 });
  if (!fsMount) return;
  try {
    const out = path.join(fsMount.dir, 'out.bin');
    await assert.rejects(
      writeFileAtomicAsync(out, { durable: true }, async (fh) => {
        for (let i = 0; i < 4; i++) await fh.write(Buffer.alloc(512 * 1024, 1));
      }),
      (e: unknown) => {
        assert.ok(e instanceof FcUffdError, String(e));
        assert.equal(e.code, 'OUTPUT_WRITE');
        assert.equal(e.message, `cannot write ${out}: no space left on the filesystem of ${fsMount.dir}`);
        return true;
      },
    );
    assert.deepEqual(fs.readdirSync(fsMount.dir), []);
  } finally {
    fsMount.unmount();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('makeDirs on a read-only filesystem says EROFS, where mkdir -p in Node says ENOENT', (t) => {
  const dir = tempDir('atomic');
  const ro = tmpfsOrSkip(t, path.join(dir, 'ro'), { readOnly: true, sizeBytes: 64 * 1024 });
  if (!ro) return;
  try {
    const want = path.join(ro.dir, 'a', 'b');
    assert.throws(() => makeDirs(want), { code: 'EROFS' });
    makeDirs(path.join(dir, 'x', 'y'));
    assert.ok(fs.statSync(path.join(dir, 'x', 'y')).isDirectory());
    makeDirs(path.join(dir, 'x', 'y'));
  } finally {
    ro.unmount();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
