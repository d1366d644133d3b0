// One way for tests to run a Node script as its own process and read what it says: stdout and
// stderr collected as text, pino's JSON lines from stderr, and a wait for a log line that fails
// early when the process exits first.
import { spawn, type ChildProcess } from 'node:child_process';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface NodeProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Parsed pino lines from stderr. */
  logs: () => Array<Record<string, unknown>>;
  /** Waits until a log line from index `since` on satisfies `pred` (or fails after timeoutMs, or when the process exits). */
  waitForLog: (pred: (l: Record<string, unknown>) => boolean, since?: number, timeoutMs?: number) => Promise<Record<string, unknown>>;
  /** The process is gone (its pipes may still hold output). */
  exited: Promise<ExitStatus>;
  /** The process is gone and its output is all read. */
  closed: Promise<ExitStatus>;
}

/** `node SCRIPT ARGS…` with stdout and stderr piped; `name` says which process a failure is about. */
/** `nodeFlags`: Node's own flags, before the script (CLI_NODE_FLAGS for the fc-uffd executable). */
export function spawnNode(name: string, script: string, args: string[], nodeFlags: readonly string[] = []): NodeProcess {
  const child = spawn(process.execPath, [...nodeFlags, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<ExitStatus>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const closed = new Promise<ExitStatus>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  const logs = (): Array<Record<string, unknown>> =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const waitForLog = async (
    pred: (l: Record<string, unknown>) => boolean,
    since = 0,
    timeoutMs = 15000,
  ): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = logs().slice(since).find(pred);
      if (hit) return hit;
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before the awaited log line:\n${err}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for a log line; stderr so far:\n${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, stdout: () => out, stderr: () => err, logs, waitForLog, exited, closed };
}
