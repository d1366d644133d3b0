// Filesystems a test needs and a plain directory cannot give as root: read-only (root writes
// through file modes) or full. A tmpfs mounted for the test; unmounting is the caller's (finally).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { TestContext } from 'node:test';

export interface TestMount {
  dir: string;
  /** Makes the mounted filesystem read-only from now on (what it holds stays readable). */
  remountReadOnly(): void;
  unmount(): void;
}

/** Mounts a tmpfs at `dir` (created if missing), or returns why this host cannot (not root, no CAP_SYS_ADMIN). */
export function mountTmpfs(dir: string, o: { readOnly?: boolean; sizeBytes: number }): TestMount | string {
  fs.mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `${o.readOnly ? 'ro,' : ''}size=${o.sizeBytes}`, 'tmpfs', dir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    return `cannot mount a tmpfs (needs root with CAP_SYS_ADMIN): ${((err as { stderr?: Buffer }).stderr ?? '').toString().trim() || (err as Error).message}`;
  }
  return {
    dir,
    remountReadOnly: () => execFileSync('mount', ['-o', 'remount,ro', dir]),
    unmount: () => execFileSync('umount', [dir]),
  };
}

/** mountTmpfs, or skips test `t` with the host's reason (undefined then). */
export function tmpfsOrSkip(t: TestContext, dir: string, o: { readOnly?: boolean; sizeBytes: number }): TestMount | undefined {
  const m = mountTmpfs(dir, o);
  if (typeof m === 'string') {
    t.skip(m);
    return undefined;
  }
  return m;
}
