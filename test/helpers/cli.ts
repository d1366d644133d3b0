// Runs `fc-uffd serve` as its own process, the way an operator runs it next to Firecracker.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { spawnNode } from './node-process.js';

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
  const p = spawnNode('fc-uffd serve', CLI_PATH, ['serve', '--socket', socket, ...args], CLI_NODE_FLAGS);
  await p.waitForLog((l) => l.msg === 'listening for Firecracker');
  if (!fs.existsSync(socket)) throw new Error(`socket ${socket} missing after startup`);
  return {
    child: p.child,
    socket,
    stdout: p.stdout,
    logs: p.logs,
    waitForLog: p.waitForLog,
    async stop() {
      if (p.child.exitCode === null) p.child.kill('SIGTERM');
      return (await p.exited).code;
    },
  };
}
