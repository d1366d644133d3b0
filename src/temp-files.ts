import fs from 'node:fs';
import path from 'node:path';

/**
 * Temporary files a command is writing (to be renamed into place when whole). On SIGINT/SIGTERM
 * the CLI removes every one still registered before it exits; a process killed outright (-9,
 * power loss) leaves them, and the next writer in the same directory removes them
 * (removeStaleTemps). Library code only registers paths: signal handlers are the CLI's to install.
 */
const inProgress = new Set<string>();

export function trackTemp(file: string): void {
  inProgress.add(file);
}

export function untrackTemp(file: string): void {
  inProgress.delete(file);
}

/**
 * CLI only, right before it exits: removes every registered temporary file (writes still under way
 * when an interrupted command stops waiting for them would otherwise leave theirs behind).
 */
export function removeTrackedTemps(): void {
  for (const f of inProgress) fs.rmSync(f, { force: true });
  inProgress.clear();
}

let signalOwner: ((signal: NodeJS.Signals) => void) | undefined;

/**
 * CLI only: while a command that stops itself runs (pack, unpack: an AbortSignal through their
 * work, whose own cleanup removes their temporary files), the first SIGINT/SIGTERM goes to
 * `onSignal` instead; a second one removes the temporary files and exits at once. Returns the release.
 */
export function handleSignalsWith(onSignal: (signal: NodeJS.Signals) => void): () => void {
  signalOwner = onSignal;
  return () => {
    if (signalOwner === onSignal) signalOwner = undefined;
  };
}

/** CLI only: on SIGINT/SIGTERM remove the registered temporary files, then exit 128 + signal. */
export function removeTempsOnSignal(): void {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(signal, () => {
      const owner = signalOwner;
      if (owner) {
        signalOwner = undefined;
        owner(signal);
        return;
      }
      // A command with its own shutdown (serve) handles the signal itself and registers no temp file.
      if (process.listenerCount(signal) > 1 && inProgress.size === 0) return;
      removeTrackedTemps();
      process.exit(code);
    });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes files in `dir` that `pidOf` recognizes as temporary files of a writer (returning its
 * pid) when that process is gone and the file is older than `minAgeMs` (the age guards a
 * directory shared with other hosts, whose pids mean nothing here). Returns the paths removed.
 */
export function removeStaleTemps(dir: string, pidOf: (name: string) => number | undefined, minAgeMs = 10 * 60 * 1000): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  const now = Date.now();
  for (const name of names) {
    const pid = pidOf(name);
    if (pid === undefined || pid === process.pid || pidAlive(pid)) continue;
    const file = path.join(dir, name);
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (!st || !st.isFile() || now - st.mtimeMs < minAgeMs) continue;
    fs.rmSync(file, { force: true });
    removed.push(file);
  }
  return removed;
}
