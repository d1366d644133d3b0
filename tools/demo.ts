import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Command } from 'commander';
import { UffdServer, type VmInfo } from '../src/server/server.js';
import { createLogger } from '../src/log.js';
import { removeStaleTemps, removeTempsOnSignal, trackTemp, untrackTemp } from '../src/temp-files.js';
import { FcUffdError } from '../src/errors.js';
import { validateFaultAround, validateVcpus } from '../src/serve/validate-options.js';
import { formatVmSummary } from '../src/cli/format.js';
import { parseBytes, parseInteger } from '../src/cli/parse.js';
import { ServedMemoryFile } from '../src/snapshot/memfile.js';
import { DEFAULT_FAULT_AROUND_BYTES } from '../src/server/server.js';
import { runEmulator } from './emulator/run.js';
import { writeClusteredTrace } from './emulator/traces.js';
import { writeDemoImage } from './demo-image.js';

export interface DemoFlags {
  size: number;
  vcpus: number;
  faultAround: number;
  dir?: string;
  kvm: boolean;
}

/**
 * The newcomer's first run: a real restore served end to end. Makes (once) a demo snapshot with a
 * realistic page mix, starts the handler, restores the snapshot through the Firecracker emulator
 * (a separate process doing exactly what Firecracker does), and prints both sides' view.
 */
export async function demoCommand(flags: DemoFlags): Promise<void> {
  validateVcpus(flags.vcpus);
  validateFaultAround(flags.faultAround);
  if (flags.size < 1024 * 1024 || flags.size % 4096 !== 0)
    throw new FcUffdError(
      'CONFIG_INVALID',
      `--size must be a whole number of 4 KiB pages, at least 1m, got ${flags.size}; e.g. 64m, 256m (default)`,
    );
  const dir = flags.dir ?? path.join(os.tmpdir(), 'fc-uffd-demo');
  fs.mkdirSync(dir, { recursive: true });
  const mem = path.join(dir, `memory-${flags.size}.bin`);
  const partialPrefix = `${path.basename(mem)}.partial-`;
  removeStaleTemps(dir, (name) => (name.startsWith(partialPrefix) ? Number(name.slice(partialPrefix.length)) || undefined : undefined), 0);
  if (!fs.existsSync(mem)) {
    const t0 = performance.now();
    // Written aside and renamed when whole: an interrupted demo never leaves a partial snapshot to be reused.
    const partial = path.join(dir, `${partialPrefix}${process.pid}`);
    trackTemp(partial);
    const img = writeDemoImage(partial, flags.size);
    fs.renameSync(partial, mem);
    untrackTemp(partial);
    const pages = img.sizeBytes / 4096;
    process.stdout.write(
      `made demo snapshot ${mem}: ${(img.sizeBytes / 2 ** 20).toFixed(0)} MiB, ${pct(img.holePages, pages)} holes, ${pct(img.zeroPages, pages)} zero pages, ${pct(img.textPages, pages)} text-like, ${pct(img.randomPages, pages)} random (${(performance.now() - t0).toFixed(0)} ms)\n`,
    );
  }
  const socket = path.join(dir, `demo-${process.pid}.sock`);
  trackTemp(socket);
  const snapshot = ServedMemoryFile.open(mem);
  const server = await UffdServer.start({ socketPath: socket, snapshot, faultAround: flags.faultAround, logger: createLogger('warn') });
  try {
    await server.snapshotReady();
    const ended = once(server, 'vm-ended') as Promise<[unknown, VmInfo]>;
    // A restored guest touches a sparse, clustered part of its memory: 15 % here, in runs.
    const trace = path.join(dir, `restore-trace-${flags.size}.txt`);
    if (!fs.existsSync(trace)) writeClusteredTrace(trace, flags.size, { fraction: 0.15 });
    process.stdout.write(
      `restoring ${mem} through the Firecracker emulator (${flags.vcpus} vCPUs${flags.kvm ? ', KVM guest' : ''}; 15 % of the pages touched in clusters, as restores do)...\n`,
    );
    const result = await runEmulator({
      socket,
      mem,
      vcpus: flags.vcpus,
      pattern: `trace:${trace}`,
      share: 'split',
      kernelAccess: 64,
      kvm: flags.kvm,
    });
    // An emulator that failed before connecting (bad arguments, no userfaultfd) never ends a VM.
    if (server.vms().length === 0)
      throw new FcUffdError(
        'INTERNAL',
        `the emulator failed before it connected (exit ${result.code ?? result.signal}): ${result.stderr.trim()}`,
      );
    const [, vm] = await ended;
    const r = result.report;
    if (!r) throw new Error(`the emulator printed no report (exit ${result.code ?? result.signal}): ${result.stderr.trim()}`);
    process.stdout.write(
      [
        '',
        'emulator (the guest side):',
        `  ${r.ok ? 'OK' : 'FAILED'}: ${r.pagesVerified} pages verified byte for byte against the snapshot, ${r.mismatches} mismatches`,
        `  ${r.touches} touches (${r.writes} writes, ${r.kernelAccesses} kernel-mode accesses) on ${r.vcpus} vCPU threads in ${r.handshakeToDoneMs.toFixed(1)} ms from handshake`,
        `  first-touch latency seen by the vCPUs: p50 ${r.touchLatencyUs.p50.toFixed(1)} µs, p99 ${r.touchLatencyUs.p99.toFixed(1)} µs`,
        '',
        'handler (fc-uffd):',
        formatVmSummary(vm),
        '',
      ].join('\n'),
    );
    if (!r.ok) process.exitCode = 1;
  } finally {
    await server.stop();
    snapshot.close();
  }
}

function pct(n: number, total: number): string {
  return `${((100 * n) / total).toFixed(0)}%`;
}

// Ctrl-C removes the partial snapshot being written and exits 130 (temp-files.ts).
removeTempsOnSignal();

new Command()
  .name('npm run demo --')
  .description('make a demo snapshot, serve it and restore it through the Firecracker emulator, then print what happened')
  .option('--size <bytes>', 'guest memory size', parseBytes, 256 * 1024 * 1024)
  .option('--vcpus <n>', 'emulated vCPU threads', parseInteger, 2)
  .option('--fault-around <bytes>', 'bytes installed per fault', parseBytes, DEFAULT_FAULT_AROUND_BYTES)
  .option('--dir <dir>', 'where the demo snapshot is kept (reused across runs)')
  .option('--kvm', 'run the touches inside a KVM guest (needs /dev/kvm)', false)
  .showHelpAfterError()
  .action(demoCommand)
  .parseAsync()
  .catch((caught: unknown) => {
    const err = caught as Error & { code?: string };
    process.stderr.write(`demo: ${err.message}${err.code ? ` [${err.code}]` : ''}\n`);
    process.exitCode = 1;
  });
