// A store directory that cannot be written (a read-only filesystem) and an output on a full one, as
// an operator meets them: the message says read-only / no space and names the user's directory or
// file, never ENOENT, never an internal temp file. Needs a tmpfs mount (root); skips otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DirStore } from '../../src/store/dir.js';
import { StoreError } from '../../src/store/types.js';
import { patternedFile, tempDir } from '../helpers/files.js';
import { tmpfsOrSkip } from '../helpers/mounts.js';
import { runCli } from '../helpers/run-cli.js';

const MiB = 1024 * 1024;

function storeError(pattern: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof StoreError, String(e));
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /ENOENT|no such file/);
    return true;
  };
}

test('DirStore on a read-only filesystem: opening a new store and writing into an existing one say read-only, naming the directory', async (t) => {
  const dir = tempDir('fc-uffd-ro-store-');
  const fsMount = tmpfsOrSkip(t, path.join(dir, 'mnt'), { sizeBytes: 4 * MiB });
  if (!fsMount) return;
  try {
    const existing = path.join(fsMount.dir, 'store');
    const store = DirStore.open(existing);
    const data = Buffer.from('a chunk');
    const digest = crypto.createHash('sha256').update(data).digest('hex');
    fsMount.remountReadOnly();
    const fresh = path.join(fsMount.dir, 'new-store');
    assert.throws(
      () => DirStore.open(fresh),
      storeError(new RegExp(`^cannot create store directory ${fresh}: directory ${fsMount.dir} is on a read-only filesystem \\(EROFS\\)$`)),
    );
    // An existing store: DirStore.open succeeds (nothing to create), the first write fails.
    assert.equal(DirStore.open(existing).root, existing);
    await assert.rejects(
      store.putChunk(digest, data),
      storeError(
        new RegExp(`^cannot write ${store.chunkPath(digest)}: directory ${existing}/chunks is on a read-only filesystem \\(EROFS\\)$`),
      ),
    );
  } finally {
    fsMount.unmount();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('pack --store on a read-only filesystem and unpack -o on a full one: the CLI names the directory or file and the reason', async (t) => {
  const dir = tempDir('fc-uffd-ro-cli-');
  const ro = tmpfsOrSkip(t, path.join(dir, 'ro'), { readOnly: true, sizeBytes: MiB });
  if (!ro) return;
  const full = tmpfsOrSkip(t, path.join(dir, 'full'), { sizeBytes: MiB });
  try {
    if (!full) return;
    const mem = path.join(dir, 'mem.bin');
    patternedFile(mem, 8 * MiB);
    const refused = await runCli(['pack', '--store', path.join(ro.dir, 'store'), mem]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(
      refused.stderr,
      new RegExp(`cannot create store directory ${ro.dir}/store: directory ${ro.dir} is on a read-only filesystem`),
    );
    assert.doesNotMatch(refused.stderr, /ENOENT/);

    const store = path.join(dir, 'store');
    const packed = await runCli(['pack', '--store', store, mem]);
    assert.equal(packed.code, 0, packed.stderr);
    const id = packed.stdout.split('\n')[0]!.trim();
    const out = path.join(full.dir, 'out.bin');
    const unpacked = await runCli(['unpack', '--store', store, id, '-o', out]);
    assert.equal(unpacked.code, 1, unpacked.stderr);
    assert.match(unpacked.stderr, new RegExp(`cannot write ${out}: no space left on the filesystem of ${full.dir} \\[OUTPUT_WRITE\\]`));
    assert.doesNotMatch(unpacked.stderr, /\.tmp-|\.unpack-/, 'no internal temp file named');
    assert.deepEqual(fs.readdirSync(full.dir), [], 'nothing half-written left');
  } finally {
    full?.unmount();
    ro.unmount();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
