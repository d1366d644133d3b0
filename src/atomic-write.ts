import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** A hidden temp file beside `file` (same filesystem, so the rename is atomic), unique per process. */
function tempPath(file: string): string {
  return path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.tmp-${process.pid}`);
}

/**
 * Writes `data` to `file` so a reader sees the old content or the new, never a torn file: a temp file
 * beside it, fsync (when `durable`: the bytes reach the disk before the rename publishes them), then
 * rename. The temp file is removed when anything fails.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, options: { durable?: boolean } = {}): void {
  const tmp = tempPath(file);
  try {
    const fd = fs.openSync(tmp, 'w', 0o644);
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
  }
}

/**
 * The same for a file written piece by piece: `fill` writes into the open temp file handle; then
 * fsync (when `durable`) and rename into place.
 */
export async function writeFileAtomicAsync(file: string, options: { durable?: boolean }, fill: (fh: fsp.FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempPath(file);
  const fh = await fsp.open(tmp, 'w', 0o644);
  try {
    await fill(fh);
    if (options.durable ?? true) await fh.sync();
    await fh.close();
    await fsp.rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
