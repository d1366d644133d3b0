// Runs `fc-uffd daemon` as its own process, as an operator (or systemd) runs it.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ControlClient } from '../../src/client/control-client.js';
import { CLI_PATH } from './cli.js';

export interface DaemonProcess {
  child: ChildProcess;
  control: string;
  client: ControlClient;
  stdout(): string;
  logs(): Array<Record<string, unknown>>;
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code once the process is gone. */
  exited: Promise<number | null>;
  /** SIGTERM (if still running), then the exit code. */
  stop(): Promise<number | null>;
}

export async function startDaemon(dir: string, args: string[] = []): Promise<DaemonProcess> {
  const control = path.join(dir, 'control.sock');
  const child = spawn(process.execPath, [CLI_PATH, 'daemon', '--control', control, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  const waitForLog = async (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 15000): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = logs().find(pred);
      if (hit) return hit;
      if (child.exitCode !== null) throw new Error(`fc-uffd daemon exited (${child.exitCode}) before the awaited log line:\n${err}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for a log line; stderr so far:\n${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await waitForLog((l) => l.msg === 'daemon listening');
  const client = new ControlClient(control);
  return {
    child,
    control,
    client,
    stdout: () => out,
    logs,
    waitForLog,
    exited,
    async stop() {
      await client.close();
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Polls `probe` until it returns true, failing after timeoutMs with `what`. */
export async function until(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
