import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

const made: string[] = [];

/**
 * A fresh directory under the system's temp directory, removed with everything in it when the test
 * process exits (test files run one process each; a run used to leave hundreds behind in /tmp). A
 * directory that cannot be removed then (a mount still on it) is left, not an error.
 */
export function tempDir(prefix = 'fc-uffd-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (made.push(dir) === 1)
    process.once('exit', () => {
      for (const d of made) {
        try {
          fs.rmSync(d, { recursive: true, force: true });
        } catch {
          // Left for the system's temp cleaning.
        }
      }
    });
  return dir;
}

/** A memory file whose every 4 KiB page is distinct (page index stamped) unless listed as zero. */
export function patternedFile(filePath: string, sizeBytes: number, zeroPages: Set<number> = new Set(), seed = 1): Buffer {
  const data = Buffer.alloc(sizeBytes);
  const pages = sizeBytes / 4096;
  const rand = crypto.createHash('sha256').update(String(seed));
  const key = rand.digest();
  for (let p = 0; p < pages; p++) {
    if (zeroPages.has(p)) continue;
    const page = data.subarray(p * 4096, (p + 1) * 4096);
    for (let off = 0; off < 4096; off += 32) key.copy(page, off);
    page.writeUInt32LE(p, 0);
    page.writeUInt32LE(seed, 4);
  }
  fs.writeFileSync(filePath, data);
  return data;
}
