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
  removeStaleTemps(dir, (name) =>
    name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)) ? Number(name.slice(prefix.length)) : undefined,
  );
  const tmp = path.join(dir, `${prefix}${process.pid}`);
  trackTemp(tmp);
  return tmp;
}

/**
 * Why a write failed, in words that name neither a temp file nor any other internal path (Node's own
 * messages end in the syscall's path): the directory at fault is the nearest existing one above the
 * path the syscall was given, or `dir` when the error carries no path (write, fsync).
 */
export function writeFailureReason(err: unknown, dir: string): string {
  const e = err as NodeJS.ErrnoException;
  const parent = e.path === undefined ? dir : path.dirname(path.resolve(e.path));
  switch (e.code) {
    case 'EROFS':
      return `directory ${nearestExisting(parent)} is on a read-only filesystem`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied: directory ${nearestExisting(parent)} is not writable`;
    case 'ENOENT':
      return `directory ${parent} does not exist`;
    case 'ENOSPC':
      return `no space left on the filesystem of ${dir}`;
    case 'EDQUOT':
      return `disk quota exceeded on the filesystem of ${dir}`;
    default:
      return e.code === undefined ? e.message : e.message.replace(/ '[^']*'( -> '[^']*')?$/, '');
  }
}

function nearestExisting(dir: string): string {
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

const WRITE_SYSCALLS = new Set(['write', 'fsync', 'fdatasync', 'close', 'ftruncate', 'rename']);

/** A failed write, fsync or rename of the output (a full disk, say), not an error of the caller's own making. */
function isWriteError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && !(err instanceof FcUffdError) && WRITE_SYSCALLS.has((err as NodeJS.ErrnoException).syscall ?? '');
}

/** A write of `file` failed: say which output and why, never the temp file's name. */
function cannotWrite(file: string, err: unknown): FcUffdError {
  const e = err as NodeJS.ErrnoException;
  const dir = path.dirname(path.resolve(file));
  const replacing = (e.syscall === 'rename' || e.syscall === 'link') && (e.code === 'EPERM' || e.code === 'EACCES');
  const why = replacing
    ? `permission denied replacing it (it belongs to another user in a sticky directory, or directory ${dir} is not writable)`
    : e.code === 'EISDIR'
      ? 'it is a directory'
      : writeFailureReason(err, dir);
  const code = e.code === 'ENOSPC' || e.code === 'EDQUOT' || e.code === 'EIO' ? 'OUTPUT_WRITE' : 'CONFIG_INVALID';
  return new FcUffdError(code, `cannot write ${file}: ${why}`, { errno: e.code });
}

/**
 * `mkdir -p` that reports the real reason it failed. Node's recursive mkdir answers ENOENT when a
 * missing directory cannot be created on a read-only filesystem; one level at a time, the kernel's
 * own answer (EROFS) comes through.
 */
export function makeDirs(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    makeDirsOneByOne(path.resolve(dir));
  }
}

function makeDirsOneByOne(dir: string): void {
  try {
    fs.mkdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && fs.statSync(dir).isDirectory()) return;
    if (code !== 'ENOENT' || path.dirname(dir) === dir) throw err;
    makeDirsOneByOne(path.dirname(dir));
    makeDirsOneByOne(dir);
  }
}

/** makeDirs for an async caller: the common case (it exists, or can be made) does not block. */
export async function makeDirsAsync(dir: string): Promise<void> {
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    makeDirsOneByOne(path.resolve(dir));
  }
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
    throw isWriteError(err) ? cannotWrite(file, err) : err;
  } finally {
    untrackTemp(tmp);
  }
}

/**
 * The same for a file written piece by piece: `fill` writes into the open temp file handle; then
 * fsync (when `durable`) and rename into place.
 */
export async function writeFileAtomicAsync(
  file: string,
  options: { durable?: boolean },
  fill: (fh: fsp.FileHandle) => Promise<void>,
): Promise<void> {
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
    // The bytes `fill` writes go to the temp file: a full disk is this output's failure. Its own
    // errors (a store that failed, an abort) pass through as they are.
    throw isWriteError(err) ? cannotWrite(file, err) : err;
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
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw cannotWrite(file, err);
        if (n > 1000) throw err;
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
