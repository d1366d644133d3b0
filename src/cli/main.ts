#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import { serveCommand } from './serve.js';
import { DEFAULT_FAULT_AROUND_BYTES } from '../firecracker/server.js';
import { demoCommand } from './demo.js';
import { packCommand } from './pack.js';
import { unpackCommand } from './unpack.js';
import { inspectCommand } from './inspect.js';
import { wsInspectCommand, wsMergeCommand } from './ws.js';
import { removeTempsOnSignal } from '../temp-files.js';

/** Parses sizes such as 4096, 64k, 64KiB, 2m, 2MiB into bytes. */
export function parseBytes(text: string): number {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`not a size: ${text} (examples: 4096, 64k, 2MiB)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

/** Socket permission bits in octal (0600, 660); the range is checked with the other options. */
function parseOctalMode(text: string): number {
  if (!/^0?[0-7]{1,6}$/.test(text.trim())) throw new InvalidArgumentError(`not octal permission bits: ${text} (examples: 0600, 0660)`);
  return parseInt(text, 8);
}

/** --min-runs: a count, or `all` (pages seen in every run). */
function parseMinRuns(text: string): number | 'all' {
  if (text === 'all') return 'all';
  const n = parseInteger(text);
  if (n < 1) throw new InvalidArgumentError('at least 1 (1 = union; all = intersection)');
  return n;
}

/**
 * Commander checks required options before unknown ones, so a mistyped `--sockt` was reported as a
 * missing `--socket`. These are checked after (in preAction), so the typo is what the user sees.
 */
function requireOptions(cmd: Command, ...names: string[]): Command {
  return cmd.hook('preAction', (c) => {
    for (const name of names) {
      const opt = c.options.find((o) => o.attributeName() === name)!;
      if (c.getOptionValue(name) === undefined) c.error(`error: required option '${opt.flags}' not specified`);
    }
  });
}

function parseInteger(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`not a non-negative integer: ${text}`);
  return n;
}

removeTempsOnSignal();

const program = new Command()
  .name('fc-uffd')
  .description('userfaultfd page-fault handler for Firecracker microVM snapshot restores')
  .showHelpAfterError();

const serve = program
  .command('serve')
  .description("serve Firecracker restores (mem_backend type Uffd) from a snapshot's memory file")
  .option('--socket <path>', "unix socket to listen on (Firecracker's mem_backend.backend_path; required)")
  .option('--mem <file>', "the snapshot's memory file (or --snapshot + --store)")
  .option('--snapshot <manifest>', 'a chunked snapshot: manifest id in --store, or a manifest file')
  .option('--store <dir>', 'the chunk store of --snapshot')
  .option('--cache-size <bytes>', 'decompressed chunks kept in memory, shared by all VMs', parseBytes, 1024 * 1024 * 1024)
  .option('--prefetch-chunks <n>', 'chunks fetched ahead of a requested one', parseInteger, 2)
  .option('--fault-around <bytes>', 'bytes installed per fault, an aligned power of two (4k disables)', parseBytes, DEFAULT_FAULT_AROUND_BYTES)
  .addOption(new Option('--on-fatal <action>', 'when a VM cannot be served correctly').choices(['kill', 'hang']).default('kill'))
  .option('--handshake-timeout-ms <ms>', 'how long a connected VMM may take to send its handshake', parseInteger, 5000)
  .addOption(new Option('--socket-mode <octal>', 'permission bits of the socket (0600..0777)').argParser(parseOctalMode).default(0o600, '0600'))
  .option('--removed-out <path>', 'write each VM\'s balloon-removed ranges here when it ends ({vm}, {pid} are replaced; an existing file is kept and NAME.vm-N.EXT written instead)')
  .option('--record-ws <path>', 'record each VM\'s first touches into a working-set file when it ends ({vm}, {pid} are replaced; an existing file is kept and NAME.vm-N.EXT written instead)')
  .option('--prefetch <file>', 'install this working set ahead of each guest (recorded with --record-ws on the same snapshot)')
  .option('--loop-threads <n>', 'fault-loop threads, each serving many VMs (default: CPU count, at most 4)', parseInteger)
  .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
  .addOption(new Option('--log-level <level>', 'log level (logs are JSON lines on stderr)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
  .action(serveCommand);
requireOptions(serve, 'socket');

const ws = program.command('ws').description('working sets: the pages a restored VM touches, for prefetch');
ws.command('inspect <file>')
  .description("a working set's size and coverage, and how well it predicted another run's")
  .option('--against <file>', 'a working set recorded on a run without prefetch, to score the prediction')
  .action(wsInspectCommand);
ws.command('merge <files...>')
  .description('merge working sets of several runs: pages touched in at least --min-runs of them, by mean first-touch time')
  .requiredOption('-o, --output <file>', 'where to write the merged working set (never one of the inputs)')
  .option('--min-runs <n>', 'keep pages seen in at least this many runs (1 = union; all = intersection; default: half, rounded up)', parseMinRuns)
  .option('--force', 'replace --output if it exists', false)
  .action(wsMergeCommand);

program
  .command('pack')
  .description('pack a memory file into a chunked, compressed, content-addressed snapshot; prints the manifest id and a summary')
  .argument('<memfile>', 'Firecracker memory file (full, or a diff snapshot with --base --diff)')
  .requiredOption('--store <dir>', 'chunk store directory (created if missing)')
  .option('--base <manifest>', "reuse this manifest's chunks (id in the store, or a manifest file)")
  .option('--diff', 'MEMFILE is a diff snapshot: its holes keep the base\'s bytes', false)
  .option('--removed <file...>', 'balloon-removed ranges (lines "<start> <end>", file offsets, end exclusive): not stored')
  .option('--chunk-size <bytes>', 'chunk size, a power of two >= 2 MiB (default 4 MiB, or the base\'s)', parseBytes)
  .option('--level <n>', 'zstd compression level', parseInteger, 3)
  .option('--json', 'print the summary as one JSON line', false)
  .action(packCommand);

program
  .command('unpack')
  .description('write the memory of a chunked snapshot to a file (every chunk verified)')
  .argument('<manifest>', 'manifest id in the store, or a manifest file')
  .requiredOption('--store <dir>', 'chunk store directory')
  .requiredOption('-o, --output <file>', 'memory file to write')
  .option('--force', 'replace --output if it exists', false)
  .action(unpackCommand);

program
  .command('inspect')
  .description("show a chunked snapshot's manifest: sizes, chunks, zero pages, compression")
  .argument('<manifest>', 'manifest id (with --store) or a manifest file')
  .option('--store <dir>', 'chunk store directory')
  .option('--chunks', 'list every chunk', false)
  .option('--verify', 'check that the store holds every chunk', false)
  .option('--json', 'print JSON', false)
  .action(inspectCommand);

program
  .command('demo')
  .description('make a demo snapshot, serve it and restore it through the Firecracker emulator, then print what happened')
  .option('--size <bytes>', 'guest memory size', parseBytes, 256 * 1024 * 1024)
  .option('--vcpus <n>', 'emulated vCPU threads', parseInteger, 2)
  .option('--fault-around <bytes>', 'bytes installed per fault', parseBytes, DEFAULT_FAULT_AROUND_BYTES)
  .option('--dir <dir>', 'where the demo snapshot is kept (reused across runs)')
  .option('--kvm', 'run the touches inside a KVM guest (needs /dev/kvm)', false)
  .action(demoCommand);

program.parseAsync().catch((err: Error & { code?: string }) => {
  process.stderr.write(`fc-uffd: ${err.message}${err.code ? ` [${err.code}]` : ''}\n`);
  // Commands release what they opened before they throw; exiting here makes sure a thread or
  // handle nobody owns any more (a codec pool, a half-opened store) can never keep a failed command alive.
  process.exit(1);
});
