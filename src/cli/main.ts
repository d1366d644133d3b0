#!/usr/bin/env -S node --v8-pool-size=1 --wasm-tiering-budget=1000000000
import fs from 'node:fs';
import { Command, Option } from 'commander';
import { serveCommand } from './serve.js';
import { DEFAULT_FAULT_AROUND } from '../server/server.js';
import { parseBytes, parseFaultAround, parseInteger, parseMinRuns, parseOctalMode, requireOptions } from './parse.js';
import { packCommand } from './pack.js';
import { unpackCommand } from './unpack.js';
import { inspectCommand } from './inspect.js';
import { wsInspectCommand, wsMergeCommand } from './ws.js';
import { reportCommand } from './report.js';
import { daemonCommand } from './daemon.js';
import { removeTempsOnSignal } from '../temp-files.js';
import { addStoreOptions } from './store-flags.js';

// The AWS SDK warns on Node < 22 that releases after January 2027 will need Node 22; the version
// pinned here runs on Node 20, and the warning (a multi-line stderr block at the first S3 client)
// would break the one-JSON-line-per-log contract of serve and daemon. The SDK reads this when a
// client is built, after these lines; the library leaves the choice to its embedder.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

removeTempsOnSignal();

const STORE_HELP = 'a directory, s3://BUCKET/PREFIX or http(s)://HOST/PREFIX';

// dist/src/cli/main.js -> the package's own package.json, published with it.
const { version } = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command()
  .name('fc-uffd')
  .description('userfaultfd page-fault handler for Firecracker microVM snapshot restores')
  .version(version)
  .showHelpAfterError();

const serve = program
  .command('serve')
  .description("serve Firecracker restores (mem_backend type Uffd) from a snapshot's memory file")
  .option('--socket <path>', "unix socket to listen on (Firecracker's mem_backend.backend_path; required)")
  .option('--mem <file>', "the snapshot's memory file (or --snapshot + --store)")
  .option('--snapshot <manifest>', 'a chunked snapshot: manifest id (or a unique prefix of it) in --store, or a manifest file')
  .option('--store <store>', `the chunk store of --snapshot: ${STORE_HELP}`)
  .option('--cache-size <bytes>', 'decompressed chunks kept in memory, shared by all VMs', parseBytes, 1024 * 1024 * 1024)
  .option('--prefetch-chunks <n>', 'chunks fetched ahead of a requested one', parseInteger, 2)
  .option(
    '--fault-around <size|adaptive>',
    'what to install per fault: an aligned block of this size, a power of two (4k disables), or adaptive (one page for scattered faults, a window growing to 2m for sequential ones)',
    parseFaultAround,
    DEFAULT_FAULT_AROUND,
  )
  .addOption(new Option('--on-fatal <action>', 'when a VM cannot be served correctly').choices(['kill', 'hang']).default('kill'))
  .option('--handshake-timeout-ms <ms>', 'how long a connected VMM may take to send its handshake', parseInteger, 5000)
  .addOption(
    new Option('--socket-mode <octal>', 'permission bits of the socket (0600..0777)').argParser(parseOctalMode).default(0o600, '0600'),
  )
  .option(
    '--removed-out <path>',
    "write each VM's balloon-removed ranges here when it ends ({vm}, {pid} are replaced; an existing file is kept and NAME.vm-N.EXT written instead)",
  )
  .option(
    '--record-ws <path>',
    "record each VM's first touches into a working-set file when it ends ({vm}, {pid} are replaced; an existing file is kept and NAME.vm-N.EXT written instead)",
  )
  .option(
    '--trace <path>',
    "record each VM's restore timeline (faults, installs, balloon, fetches) for `fc-uffd report` ({vm}, {pid} are replaced; an existing file is kept and NAME.vm-N.EXT written instead)",
  )
  .option('--prefetch <file>', 'install this working set ahead of each guest (recorded with --record-ws on the same snapshot)')
  .option('--loop-threads <n>', 'fault-loop threads, each serving many VMs (default: CPU count, at most 4)', parseInteger)
  .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
  .addOption(
    new Option('--log-level <level>', 'log level (logs are JSON lines on stderr)')
      .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
  )
  .action(serveCommand);
addStoreOptions(serve, { cache: true });
requireOptions(serve, 'socket');

const daemon = program
  .command('daemon')
  .description('one handler per host: serves many snapshots, restores created over an HTTP+JSON control API (docs/control-api.yaml)')
  .requiredOption('--control <path>', 'unix socket of the control API (mode 0600)')
  .option('--sockets-dir <dir>', "where restores' uffd sockets are created (must exist; default: the control socket's directory)")
  .option('--cache-size <bytes>', 'decompressed chunks kept in memory, shared by all restores', parseBytes, 1024 * 1024 * 1024)
  .option('--loop-threads <n>', 'fault-loop threads shared by all restores (default: CPU count, at most 4)', parseInteger)
  .option(
    '--metrics-listen <host:port>',
    'also serve Prometheus metrics at http://HOST:PORT/metrics (always at /metrics on the control socket)',
  )
  .option(
    '--allow-uid <uid>',
    'peers allowed on the control socket (SO_PEERCRED; repeatable; with --allow-gid: either matches)',
    (v: string, acc: number[]) => [...acc, parseInteger(v)],
    [],
  )
  .option(
    '--allow-gid <gid>',
    'groups allowed on the control socket (repeatable)',
    (v: string, acc: number[]) => [...acc, parseInteger(v)],
    [],
  )
  .option('--stop-timeout-ms <ms>', 'on SIGTERM/SIGINT, how long live VMs may run on before the daemon stops anyway', parseInteger, 30000)
  .option('--log-level <level>', 'pino log level (logs are JSON lines on stderr)', 'info')
  .action(daemonCommand);
// Apply to every remote store a restore names.
addStoreOptions(daemon, { cache: true });

const ws = program.command('ws').description('working sets: the pages a restored VM touches, for prefetch');
ws.command('inspect <file>')
  .description("a working set's size and coverage, and how well it predicted another run's")
  .option('--against <file>', 'a working set recorded on a run without prefetch, to score the prediction')
  .option('--html <file>', 'also write a one-file HTML memory map of the working set (and the score with --against)')
  .option('--force', 'replace an existing --html file', false)
  .action(wsInspectCommand);
ws.command('merge <files...>')
  .description('merge working sets of several runs: pages touched in at least --min-runs of them, by mean first-touch time')
  .requiredOption('-o, --output <file>', 'where to write the merged working set (never one of the inputs)')
  .option(
    '--min-runs <n>',
    'keep pages seen in at least this many runs (1 = union; all = intersection; default: half, rounded up)',
    parseMinRuns,
  )
  .option('--force', 'replace --output if it exists', false)
  .action(wsMergeCommand);

program
  .command('report')
  .description('draw one traced restore (serve --trace) as a self-contained HTML page: memory map, faults over time, latency, fetches')
  .argument('<trace>', 'a trace file written by fc-uffd serve --trace')
  .requiredOption('-o, --output <file>', 'the HTML file to write')
  .option('--working-set <file>', 'a working set recorded without prefetch: tells prefetched pages the guest used from unused ones')
  .option('--force', 'replace an existing output file', false)
  .action(reportCommand);

const packCmd = program
  .command('pack')
  .description('pack a memory file into a chunked, compressed, content-addressed snapshot; prints the manifest id and a summary')
  .argument('<memfile>', 'Firecracker memory file (full, or a diff snapshot with --base --diff)')
  .requiredOption('--store <store>', `where to put the snapshot: ${STORE_HELP} (a directory is created if missing)`)
  .option('--base <manifest>', "reuse this manifest's chunks (id or unique id prefix in the store, or a manifest file)")
  .option('--diff', "MEMFILE is a diff snapshot: its holes keep the base's bytes", false)
  .option('--removed <file...>', 'balloon-removed ranges (lines "<start> <end>", file offsets, end exclusive): not stored')
  .option('--chunk-size <bytes>', "chunk size, a power of two >= 2 MiB (default 4 MiB, or the base's)", parseBytes)
  .option('--level <n>', 'zstd compression level', parseInteger, 3)
  .option('--json', 'print the summary as one JSON line', false)
  .action(packCommand);
addStoreOptions(packCmd, { cache: false });

const unpackCmd = program
  .command('unpack')
  .description('write the memory of a chunked snapshot to a file (every chunk verified)')
  .argument('<manifest>', 'manifest id (or a unique prefix of it) in the store, or a manifest file')
  .requiredOption('--store <store>', `the snapshot's store: ${STORE_HELP}`)
  .requiredOption('-o, --output <file>', 'memory file to write')
  .option('--force', 'replace --output if it exists', false)
  .action(unpackCommand);
addStoreOptions(unpackCmd, { cache: true });

const inspectCmd = program
  .command('inspect')
  .description("show a chunked snapshot's manifest: sizes, chunks, zero pages, compression")
  .argument('<manifest>', 'manifest id or a unique prefix of it (with --store), or a manifest file')
  .option('--store <store>', `the snapshot's store: ${STORE_HELP}`)
  .option('--chunks', 'list every chunk', false)
  .option('--verify', 'check that the store holds every chunk', false)
  .option('--json', 'print JSON', false)
  .action(inspectCommand);
addStoreOptions(inspectCmd, { cache: true });

program.parseAsync().catch((caught: unknown) => {
  const err = caught as Error & { code?: string };
  process.stderr.write(`fc-uffd: ${err.message}${err.code ? ` [${err.code}]` : ''}\n`);
  // Commands release what they opened before they throw; exiting here makes sure a thread or
  // handle nobody owns any more (a codec pool, a half-opened store) can never keep a failed command alive.
  process.exit(1);
});
