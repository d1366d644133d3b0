// One `fc-uffd daemon` vs one `fc-uffd serve` per snapshot, same run: resident memory and threads
// while 10 snapshots x 4 VMs are served, and first-fault latency through each. Writes
// bench/results/daemon.json and its fragments (daemon.md: the table; daemon.summary.md: the ratios
// README.md quotes).   node dist/bench/daemon.js [--snapshots 10] [--vms 4] [--rounds 3] [--runs 5]
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_NODE_FLAGS } from '../src/cli/node-flags.js';
import { ControlClient } from '../src/client/control-client.js';
import { runEmulator } from '../tools/emulator/run.js';
import { writeDemoImage } from '../tools/demo-image.js';
import { mdTable, writeResults } from './lib/results.js';
import { fmt, spread, type Spread } from './lib/stats.js';

const MiB = 1024 * 1024;
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SNAPSHOTS = arg('snapshots', 10);
const VMS = arg('vms', 4);
const RUNS = arg('runs', 5);
const ROUNDS = arg('rounds', 3);
const SIZE = 16 * MiB;

interface Usage {
  rssBytes: number;
  /** Private memory: heaps, isolates, stacks. */
  anonBytes: number;
  /** Page cache of the memory files mapped for UFFDIO_COPY: shared with the host, counted in RSS. */
  fileBytes: number;
  threads: number;
}

/** RSS (bytes, split anon/file) and threads of a process, from /proc. */
function procStatus(pid: number): Usage {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(s)![1]) * 1024;
  return {
    rssBytes: kb('VmRSS'),
    anonBytes: kb('RssAnon'),
    fileBytes: kb('RssFile') + kb('RssShmem'),
    threads: Number(/Threads:\s+(\d+)/.exec(s)![1]),
  };
}

function start(args: string[], readyMsg: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...CLI_NODE_FLAGS, CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (err.includes(readyMsg)) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : (c.once('exit', r), c.kill('SIGTERM'))))));
}

/** All VMs connected and held while memory is sampled; returns the sum over the handler processes. */
async function measureLoad(sockets: string[], mems: string[], pids: number[]): Promise<Usage> {
  const vms = sockets.flatMap((s, i) =>
    Array.from({ length: VMS }, () =>
      runEmulator({ socket: s, mem: mems[i]!, pattern: 'seq', touchPages: 1024, holdMs: 4000, deadlineMs: 60000 }),
    ),
  );
  await new Promise((r) => setTimeout(r, 2500));
  const sample = pids.map(procStatus).reduce((a, b) => ({
    rssBytes: a.rssBytes + b.rssBytes,
    anonBytes: a.anonBytes + b.anonBytes,
    fileBytes: a.fileBytes + b.fileBytes,
    threads: a.threads + b.threads,
  }));
  const results = await Promise.all(vms);
  for (const r of results) if (r.code !== 0 || r.report!.mismatches !== 0) throw new Error(`a VM failed: ${r.stderr}`);
  return sample;
}

/** The first touch of a fresh VM: one fault served end to end, as the emulator's vCPU saw it. */
async function firstFaultUs(socket: string, mem: string): Promise<number> {
  const r = await runEmulator({ socket, mem, pattern: 'seq', touchPages: 1, deadlineMs: 30000 });
  if (r.code !== 0) throw new Error(r.stderr);
  return r.report!.touchLatencyUs.max;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-bench-daemon-'));
  try {
    const mems = Array.from({ length: SNAPSHOTS }, (_, i) => {
      const p = path.join(dir, `mem-${i}.bin`);
      writeDemoImage(p, SIZE, 100 + i);
      return p;
    });
    const latency = { daemon: [] as number[], serve: [] as number[] };
    const loads = { daemon: [] as Usage[], serve: [] as Usage[] };

    // Rounds alternate the two set-ups so that drift on the shared machine hits both alike.
    for (let round = 0; round < ROUNDS; round++) {
      // One daemon, a restore per snapshot.
      const control = path.join(dir, `control-${round}.sock`);
      const daemon = await start(['daemon', '--control', control], 'daemon listening');
      const client = new ControlClient(control);
      const dSockets: string[] = [];
      for (let i = 0; i < SNAPSHOTS; i++) dSockets.push((await client.createRestore(`s${i}`, { mem: mems[i]! })).socket);
      loads.daemon.push(await measureLoad(dSockets, mems, [daemon.pid!]));
      for (let k = 0; k < RUNS; k++) latency.daemon.push(await firstFaultUs(dSockets[k % SNAPSHOTS]!, mems[k % SNAPSHOTS]!));
      await client.close();
      await stopAll([daemon]);

      // One serve process per snapshot.
      const serves: ChildProcess[] = [];
      const sSockets = mems.map((_, i) => path.join(dir, `serve-${round}-${i}.sock`));
      for (let i = 0; i < SNAPSHOTS; i++)
        serves.push(await start(['serve', '--socket', sSockets[i]!, '--mem', mems[i]!], 'listening for Firecracker'));
      loads.serve.push(
        await measureLoad(
          sSockets,
          mems,
          serves.map((c) => c.pid!),
        ),
      );
      for (let k = 0; k < RUNS; k++) latency.serve.push(await firstFaultUs(sSockets[k % SNAPSHOTS]!, mems[k % SNAPSHOTS]!));
      await stopAll(serves);
    }

    const summary = (us: Usage[]): Record<keyof Usage, Spread> => ({
      rssBytes: spread(us.map((u) => u.rssBytes))!,
      anonBytes: spread(us.map((u) => u.anonBytes))!,
      fileBytes: spread(us.map((u) => u.fileBytes))!,
      threads: spread(us.map((u) => u.threads))!,
    });
    const dl = summary(loads.daemon);
    const sl = summary(loads.serve);
    const dFirst = spread(latency.daemon)!;
    const sFirst = spread(latency.serve)!;
    const result = {
      setup: {
        snapshots: SNAPSHOTS,
        vmsPerSnapshot: VMS,
        snapshotSizeBytes: SIZE,
        rounds: ROUNDS,
        firstFaultRunsPerRound: RUNS,
        loopThreads: 'default (CPUs, at most 4) in each process',
      },
      daemon: { samples: loads.daemon, ...dl, firstFaultUs: dFirst },
      serve: { processes: SNAPSHOTS, samples: loads.serve, ...sl, firstFaultUs: sFirst },
      ratios: {
        rss: +(dl.rssBytes.median / sl.rssBytes.median).toFixed(3),
        anon: +(dl.anonBytes.median / sl.anonBytes.median).toFixed(3),
        threads: +(dl.threads.median / sl.threads.median).toFixed(3),
        firstFaultMedian: +(dFirst.median / sFirst.median).toFixed(3),
      },
    };
    const m = (sp: Spread): string => `${fmt(sp.median / MiB)} [${fmt(sp.min / MiB)}-${fmt(sp.max / MiB)}] MiB`;
    const n = (sp: Spread): string => `${fmt(sp.median)} [${fmt(sp.min)}-${fmt(sp.max)}]`;
    const setup = `One \`fc-uffd daemon\` with ${SNAPSHOTS} restores (${SIZE / MiB} MiB memory files) against ${SNAPSHOTS} \`fc-uffd serve\` processes, ${ROUNDS} rounds alternating the two, ${VMS} VMs per snapshot held live while /proc is sampled (median [min-max] over the rounds); first fault = the emulator's first touch on a fresh VM (${RUNS} per round).`;
    const table = mdTable(
      ['', 'daemon', `${SNAPSHOTS} x serve`, 'ratio of medians'],
      [
        ['RSS', m(dl.rssBytes), m(sl.rssBytes), result.ratios.rss.toFixed(2)],
        ['of which anon (heaps, isolates)', m(dl.anonBytes), m(sl.anonBytes), result.ratios.anon.toFixed(2)],
        ['of which file (memory-file page cache mapped for UFFDIO_COPY, shared with the host)', m(dl.fileBytes), m(sl.fileBytes), ''],
        ['threads', n(dl.threads), n(sl.threads), result.ratios.threads.toFixed(2)],
        ['first fault µs', n(dFirst), n(sFirst), `${result.ratios.firstFaultMedian.toFixed(2)} (read the ranges)`],
      ],
    );
    const summaryLine = `Measured: ${result.ratios.rss.toFixed(2)}x the RSS and ${result.ratios.threads.toFixed(2)}x the threads of ${SNAPSHOTS} \`fc-uffd serve\` processes (${SNAPSHOTS} snapshots x ${VMS} VMs, medians of ${ROUNDS} rounds, \`node dist/bench/daemon.js\`).`;
    writeResults('daemon', result, `${setup}\n\n${table}`, { summary: summaryLine });
    process.stdout.write(`${setup}\n${table}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
