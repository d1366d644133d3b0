// Runs `fc-uffd daemon` as its own process, as an operator (or systemd) runs it.
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { CLI_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { ControlClient } from '../../src/client/control-client.js';
import { CLI_PATH } from './cli.js';
import { spawnNode } from './node-process.js';

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
  const p = spawnNode('fc-uffd daemon', CLI_PATH, ['daemon', '--control', control, ...args], CLI_NODE_FLAGS);
  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 15000): Promise<Record<string, unknown>> =>
    p.waitForLog(pred, 0, timeoutMs);
  await waitForLog((l) => l.msg === 'daemon listening');
  const client = new ControlClient(control);
  const exited = p.exited.then((s) => s.code);
  return {
    child: p.child,
    control,
    client,
    stdout: p.stdout,
    logs: p.logs,
    waitForLog,
    exited,
    async stop() {
      await client.close();
      if (p.child.exitCode === null) p.child.kill('SIGTERM');
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
