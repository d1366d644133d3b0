// Runs `fc-uffd serve` as its own process, the way an operator runs it next to Firecracker.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
/** The demo (`npm run demo`): a tool, not a command of the published CLI. */
export const DEMO_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tools/demo.js');

export interface ServeProcess {
  child: ChildProcess;
  socket: string;
  stdout(): string;
  /** Parsed pino lines from stderr. */
  logs(): Array<Record<string, unknown>>;
  /** Waits until a log line from index `since` on satisfies `pred` (or fails after timeoutMs). */
  waitForLog(pred: (l: Record<string, unknown>) => boolean, since?: number, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM, then resolves with the exit code once it is gone. */
  stop(): Promise<number | null>;
}

export async function startServe(socket: string, args: string[]): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI_PATH, 'serve', '--socket', socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const logs = (): Array<Record<string, unknown>> =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const waitForLog = async (pred: (l: Record<string, unknown>) => boolean, since = 0, timeoutMs = 15000): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = logs().slice(since).find(pred);
      if (hit) return hit;
      if (child.exitCode !== null) throw new Error(`fc-uffd serve exited (${child.exitCode}) before the awaited log line:\n${err}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for a log line; stderr so far:\n${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await waitForLog((l) => l.msg === 'listening for Firecracker');
  if (!fs.existsSync(socket)) throw new Error(`socket ${socket} missing after startup`);
  return {
    child,
    socket,
    stdout: () => out,
    logs,
    waitForLog,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
