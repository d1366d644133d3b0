// One `fc-uffd daemon` vs one `fc-uffd serve` per snapshot, same run: resident memory and threads
// while 10 snapshots x 4 VMs are served, and first-fault latency through each. Writes
// bench/results/daemon.json and its fragments (daemon.md: the table; daemon.summary.md: the ratios
// README.md quotes).   node dist/bench/daemon.js [--snapshots 10] [--vms 4] [--runs 5]
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlClient } from '../src/client/control-client.js';
import { runEmulator } from '../tools/emulator/run.js';
import { writeDemoImage } from '../tools/demo-image.js';
import { mdTable, writeResults } from './lib/results.js';
import { fmt, spread } from './lib/stats.js';

const MiB = 1024 * 1024;
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SNAPSHOTS = arg('snapshots', 10);
const VMS = arg('vms', 4);
const RUNS = arg('runs', 5);
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
  return { rssBytes: kb('VmRSS'), anonBytes: kb('RssAnon'), fileBytes: kb('RssFile') + kb('RssShmem'), threads: Number(/Threads:\s+(\d+)/.exec(s)![1]) };
}

function start(args: string[], readyMsg: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
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
  const vms = sockets.flatMap((s, i) => Array.from({ length: VMS }, () => runEmulator({ socket: s, mem: mems[i]!, pattern: 'seq', touchPages: 1024, holdMs: 4000, deadlineMs: 60000 })));
  await new Promise((r) => setTimeout(r, 2500));
  const sample = pids.map(procStatus).reduce((a, b) => ({ rssBytes: a.rssBytes + b.rssBytes, anonBytes: a.anonBytes + b.anonBytes, fileBytes: a.fileBytes + b.fileBytes, threads: a.threads + b.threads }));
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

function mib(u: Usage): { rssMiB: number; anonMiB: number; fileMiB: number } {
  const f = (b: number): number => +(b / MiB).toFixed(1);
  return { rssMiB: f(u.rssBytes), anonMiB: f(u.anonBytes), fileMiB: f(u.fileBytes) };
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

    // One daemon, a restore per snapshot.
    const control = path.join(dir, 'control.sock');
    const daemon = await start(['daemon', '--control', control], 'daemon listening');
    const client = new ControlClient(control);
    const dSockets: string[] = [];
    for (let i = 0; i < SNAPSHOTS; i++) dSockets.push((await client.createRestore(`s${i}`, { mem: mems[i]! })).socket);
    const daemonLoad = await measureLoad(dSockets, mems, [daemon.pid!]);
    for (let k = 0; k < RUNS; k++) latency.daemon.push(await firstFaultUs(dSockets[k % SNAPSHOTS]!, mems[k % SNAPSHOTS]!));
    await client.close();
    await stopAll([daemon]);

    // One serve process per snapshot.
    const serves: ChildProcess[] = [];
    const sSockets = mems.map((_, i) => path.join(dir, `serve-${i}.sock`));
    for (let i = 0; i < SNAPSHOTS; i++) serves.push(await start(['serve', '--socket', sSockets[i]!, '--mem', mems[i]!], 'listening for Firecracker'));
    const serveLoad = await measureLoad(sSockets, mems, serves.map((c) => c.pid!));
    for (let k = 0; k < RUNS; k++) latency.serve.push(await firstFaultUs(sSockets[k % SNAPSHOTS]!, mems[k % SNAPSHOTS]!));
    await stopAll(serves);

    const dFirst = spread(latency.daemon)!;
    const sFirst = spread(latency.serve)!;
    const result = {
      setup: { snapshots: SNAPSHOTS, vmsPerSnapshot: VMS, snapshotSizeBytes: SIZE, firstFaultRuns: RUNS, loopThreads: 'default (CPUs, at most 4) in each process' },
      daemon: { ...mib(daemonLoad), threads: daemonLoad.threads, firstFaultUs: dFirst },
      serve: { processes: SNAPSHOTS, ...mib(serveLoad), threads: serveLoad.threads, firstFaultUs: sFirst },
      ratios: {
        rss: +(daemonLoad.rssBytes / serveLoad.rssBytes).toFixed(3),
        anon: +(daemonLoad.anonBytes / serveLoad.anonBytes).toFixed(3),
        threads: +(daemonLoad.threads / serveLoad.threads).toFixed(3),
        firstFaultMedian: +(dFirst.median / sFirst.median).toFixed(3),
      },
    };
    const d = mib(daemonLoad);
    const s = mib(serveLoad);
    const setup = `One \`fc-uffd daemon\` with ${SNAPSHOTS} restores (${SIZE / MiB} MiB memory files) against ${SNAPSHOTS} \`fc-uffd serve\` processes, same run, ${VMS} VMs per snapshot held live while /proc is sampled; first fault = the emulator's first touch on a fresh VM (${RUNS} runs).`;
    const table = mdTable(
      ['', 'daemon', `${SNAPSHOTS} x serve`, 'ratio'],
      [
        ['RSS', `${d.rssMiB} MiB`, `${s.rssMiB} MiB`, result.ratios.rss.toFixed(2)],
        ['of which anon (heaps, isolates)', `${d.anonMiB} MiB`, `${s.anonMiB} MiB`, result.ratios.anon.toFixed(2)],
        ['of which file (memory-file page cache mapped for UFFDIO_COPY, shared with the host)', `${d.fileMiB} MiB`, `${s.fileMiB} MiB`, ''],
        ['threads', String(daemonLoad.threads), String(serveLoad.threads), result.ratios.threads.toFixed(2)],
        ['first fault µs, median [min-max]', `${fmt(dFirst.median)} [${fmt(dFirst.min)}-${fmt(dFirst.max)}]`, `${fmt(sFirst.median)} [${fmt(sFirst.min)}-${fmt(sFirst.max)}]`, `${result.ratios.firstFaultMedian.toFixed(2)} (n=${RUNS}: read the ranges)`],
      ],
    );
    const summary = `Measured: ${result.ratios.rss.toFixed(2)}x the RSS and ${result.ratios.threads.toFixed(2)}x the threads of ${SNAPSHOTS} \`fc-uffd serve\` processes (${SNAPSHOTS} snapshots x ${VMS} VMs, \`node dist/bench/daemon.js\`).`;
    writeResults('daemon', result, `${setup}\n\n${table}`, { summary });
    process.stdout.write(`${setup}\n${table}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
