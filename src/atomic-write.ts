import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FcUffdError } from './errors.js';
import { removeStaleTemps, trackTemp, untrackTemp } from './temp-files.js';

/**
 * A hidden temp file beside `file` (same filesystem, so the rename is atomic), unique per process,
 * registered so Ctrl-C removes it (temp-files.ts). Temp files of the same target left by a writer
 * that died are removed first.
 */
function tempPath(file: string): string {
  const dir = path.dirname(path.resolve(file));
  const prefix = `.${path.basename(file)}.tmp-`;
  removeStaleTemps(dir, (name) => (name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)) ? Number(name.slice(prefix.length)) : undefined));
  const tmp = path.join(dir, `${prefix}${process.pid}`);
  trackTemp(tmp);
  return tmp;
}

/** The temp file cannot be created: say which output and why, not the temp file's name. */
function cannotWrite(file: string, err: unknown): FcUffdError {
  const e = err as NodeJS.ErrnoException;
  const dir = path.dirname(path.resolve(file));
  const why = e.code === 'EACCES' || e.code === 'EROFS' ? `directory ${dir} is not writable` : e.code === 'ENOENT' ? `directory ${dir} does not exist` : e.message;
  return new FcUffdError('CONFIG_INVALID', `cannot write ${file}: ${why}`, { errno: e.code });
}

/**
 * Writes `data` to `file` so a reader sees the old content or the new, never a torn file: a temp file
 * beside it, fsync (when `durable`: the bytes reach the disk before the rename publishes them), then
 * rename. The temp file is removed when anything fails.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, options: { durable?: boolean } = {}): void {
  const tmp = tempPath(file);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'w', 0o644);
  } catch (err) {
    untrackTemp(tmp);
    throw cannotWrite(file, err);
  }
  try {
    try {
      fs.writeFileSync(fd, data);
      if (options.durable ?? true) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  } finally {
    untrackTemp(tmp);
  }
}

/**
 * The same for a file written piece by piece: `fill` writes into the open temp file handle; then
 * fsync (when `durable`) and rename into place.
 */
export async function writeFileAtomicAsync(file: string, options: { durable?: boolean }, fill: (fh: fsp.FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempPath(file);
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(tmp, 'w', 0o644);
  } catch (err) {
    untrackTemp(tmp);
    throw cannotWrite(file, err);
  }
  try {
    await fill(fh);
    if (options.durable ?? true) await fh.sync();
    await fh.close();
    await fsp.rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw err;
  } finally {
    untrackTemp(tmp);
  }
}

/**
 * Publishes the finished temp file `tmp` as `file` without ever replacing an existing file: link(2)
 * fails atomically when the name exists, so when `file` is taken (an earlier VM or run wrote it) it
 * goes to `NAME.<tag>.EXT`, then `NAME.<tag>-2.EXT`, ... `tmp` is removed. Returns the path published.
 */
export function linkWithoutClobber(tmp: string, file: string, tag: string): string {
  try {
    const ext = path.extname(file);
    const stem = file.slice(0, file.length - ext.length);
    for (let n = 0; ; n++) {
      const candidate = n === 0 ? file : `${stem}.${tag}${n > 1 ? `-${n}` : ''}${ext}`;
      try {
        fs.linkSync(tmp, candidate);
        return candidate;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || n > 1000) throw err;
      }
    }
  } finally {
    fs.rmSync(tmp, { force: true });
    untrackTemp(tmp);
  }
}

/** writeFileAtomic for outputs that must never replace a file: see linkWithoutClobber. Durable. */
export function writeFileNoClobber(file: string, data: string | Uint8Array, tag: string): string {
  const tmp = tempPath(file);
  try {
    const fd = fs.openSync(tmp, 'w', 0o644);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    untrackTemp(tmp);
    throw cannotWrite(file, err);
  }
  return linkWithoutClobber(tmp, file, tag);
}
