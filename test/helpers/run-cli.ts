// Runs one `fc-uffd` command to completion, as an operator would, with a deadline: a command that
// should have failed at startup but keeps running is reported as timedOut (and killed).
import { CLI_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { CLI_PATH } from './cli.js';
import { spawnNode } from './node-process.js';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

/** `script` is the CLI unless given (e.g. DEMO_PATH for the demo tool). */
export async function runCli(args: string[], timeoutMs = 10000, script = CLI_PATH): Promise<CliRun> {
  const t0 = Date.now();
  const p = spawnNode('fc-uffd', script, args, script === CLI_PATH ? CLI_NODE_FLAGS : []);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    p.child.kill('SIGKILL');
  }, timeoutMs);
  const { code, signal } = await p.closed;
  clearTimeout(timer);
  return { code, signal, stdout: p.stdout(), stderr: p.stderr(), timedOut, durationMs: Date.now() - t0 };
}
