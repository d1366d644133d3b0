#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import { serveCommand } from './serve.js';
import { demoCommand } from './demo.js';
import { wsInspectCommand, wsMergeCommand } from './ws.js';

/** Parses sizes such as 4096, 64k, 64KiB, 2m, 2MiB into bytes. */
export function parseBytes(text: string): number {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`not a size: ${text} (examples: 4096, 64k, 2MiB)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

function parseInteger(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`not a non-negative integer: ${text}`);
  return n;
}

const program = new Command()
  .name('fc-uffd')
  .description('userfaultfd page-fault handler for Firecracker microVM snapshot restores')
  .showHelpAfterError();

program
  .command('serve')
  .description("serve Firecracker restores (mem_backend type Uffd) from a snapshot's memory file")
  .requiredOption('--socket <path>', "unix socket to listen on (Firecracker's mem_backend.backend_path)")
  .requiredOption('--mem <file>', "the snapshot's memory file")
  .option('--fault-around <bytes>', 'bytes installed per fault, an aligned power of two (4k disables)', parseBytes, 64 * 1024)
  .addOption(new Option('--on-fatal <action>', 'when a VM cannot be served correctly').choices(['kill', 'hang']).default('kill'))
  .option('--handshake-timeout-ms <ms>', 'how long a connected VMM may take to send its handshake', parseInteger, 5000)
  .option('--socket-mode <octal>', 'file mode of the socket', (v) => parseInt(v, 8), 0o600)
  .option('--removed-out <path>', 'write each VM\'s balloon-removed ranges here when it ends ({vm}, {pid} are replaced)')
  .option('--record-ws <path>', 'record each VM\'s first touches into a working-set file when it ends ({vm}, {pid} are replaced)')
  .option('--prefetch <file>', 'install this working set ahead of each guest (recorded with --record-ws on the same snapshot)')
  .option('--log-level <level>', 'pino log level (logs are JSON lines on stderr)', 'info')
  .action(serveCommand);

const ws = program.command('ws').description('working sets: the pages a restored VM touches, for prefetch');
ws.command('inspect <file>')
  .description("a working set's size and coverage, and how well it predicted another run's")
  .option('--against <file>', 'a working set recorded on a run without prefetch, to score the prediction')
  .action(wsInspectCommand);
ws.command('merge <files...>')
  .description('merge working sets of several runs: pages touched in at least --min-runs of them, by mean first-touch time')
  .requiredOption('-o, --output <file>', 'where to write the merged working set')
  .option('--min-runs <n>', '1 = union; the number of inputs = intersection', parseInteger, 1)
  .action(wsMergeCommand);

program
  .command('demo')
  .description('make a demo snapshot, serve it and restore it through the Firecracker emulator, then print what happened')
  .option('--size <bytes>', 'guest memory size', parseBytes, 256 * 1024 * 1024)
  .option('--vcpus <n>', 'emulated vCPU threads', parseInteger, 2)
  .option('--fault-around <bytes>', 'bytes installed per fault', parseBytes, 64 * 1024)
  .option('--dir <dir>', 'where the demo snapshot is kept (reused across runs)')
  .option('--kvm', 'run the touches inside a KVM guest (needs /dev/kvm)', false)
  .action(demoCommand);

program.parseAsync().catch((err: Error & { code?: string }) => {
  process.stderr.write(`fc-uffd: ${err.message}${err.code ? ` [${err.code}]` : ''}\n`);
  process.exitCode = 1;
});
