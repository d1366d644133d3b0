// Runs one `fc-uffd` command to completion, as an operator would, with a deadline: a command that
// should have failed at startup but keeps running is reported as timedOut (and killed).
import { spawn } from 'node:child_process';
import { CLI_PATH } from './cli.js';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

/** `script` is the CLI unless given (e.g. DEMO_PATH for the demo tool). */
export function runCli(args: string[], timeoutMs = 10000, script = CLI_PATH): Promise<CliRun> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  return new Promise((resolve) =>
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, durationMs: Date.now() - t0 });
    }),
  );
}
