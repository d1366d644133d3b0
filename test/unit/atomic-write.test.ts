import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, writeFileAtomicAsync } from '../../src/atomic-write.js';
import { tempDir } from '../helpers/files.js';

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
  assert.throws(() => writeFileAtomic(path.join(dir, 'missing-dir', 'x'), 'x'), { code: 'CONFIG_INVALID', message: /missing-dir does not exist/ });
  assert.deepEqual(fs.readdirSync(dir), ['out.bin']);
});
