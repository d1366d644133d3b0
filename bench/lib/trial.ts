// One trial = fresh processes: a handler (ours, the C baseline, or none for the File backend) and one or
// more Firecracker emulators running the workload against it. Everything measured comes from the
// emulator's report (what the guest saw) and from /proc of the handler (what serving it cost).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { EMULATOR_PATH, emulatorArgs, type EmulatorReport } from '../../tools/emulator/run.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const OUR_CLI = path.join(ROOT, 'dist/src/cli/main.js');
/** How the bench starts our CLI: with the Node flags its executable runs with (src/cli/node-flags.ts). */
export const OUR_CLI_ARGV: readonly string[] = [...CLI_NODE_FLAGS, OUR_CLI];
export const C_HANDLER = path.join(ROOT, 'tools/bin/c-handler');

export interface Variant {
  /** Column name in the tables: ours, ours-4k, c-4k, c-fa, c-populate, file-warm, file-cold, ... */
  name: string;
  handler: 'ours' | 'c' | 'none';
  /** Bytes installed per fault; undefined = our CLI's default (ours) or none (C). */
  faultAroundBytes?: number;
  /** Ours: `--fault-around` given as a word (`adaptive`), instead of faultAroundBytes. */
  faultAroundFlag?: string;
  populateAll?: boolean;
  /** uffd: the handler serves faults; file: Firecracker's File backend (MAP_PRIVATE of the file). */
  backend: 'uffd' | 'file';
  /** cold: the emulator evicts the memory file from the page cache just before the restore. */
  cache: 'warm' | 'cold';
  /** VMs restored at once from one handler process (ours only). */
  vms?: number;
  /** Ours: serve the memory file packed into a chunked store (packed once per image). */
  chunked?: boolean;
  /** Ours: install a working set recorded on an earlier restore of the same workload (recorded once). */
  prefetch?: boolean;
  /** Ours: record the restore timeline with serve --trace (its cost on the fault path). */
  trace?: boolean;
  /**
   * Ours: VMs the handler serves, one after another and untimed, before the measured ones (same
   * workload, other seeds): a long-lived per-host handler, whose fault path V8 has compiled
   * already, against the first restore of a fresh process (the default).
   */
  warmupVms?: number;
}

export interface Workload {
  mem: string;
  pageSize: '4k' | '2m';
  vcpus: number;
  pattern: string;
  touchPages?: number;
  share?: 'same' | 'split';
  writePercent?: number;
  kvm?: boolean;
  memSizeBytes?: number;
}

export interface TrialResult {
  ok: boolean;
  error?: string;
  /** Emulator: handshake (or mmap, File backend) to every vCPU done; max over VMs. */
  handshakeToDoneMs: number;
  /** Emulator: latency of each page's first touch, measured by the touching thread (median / max over VMs). */
  touchP50Us: number;
  touchP99Us: number;
  touchMaxUs: number;
  firstTouches: number;
  /** Faults the handler served (uffd) or null (File backend: page-cache faults are not counted). */
  faults: number | null;
  bytesInstalled: number | null;
  bytesPerFault: number | null;
  /** Pages installed (copied + zero) per page the workload touched: fault-around's amplification. */
  installedPerTouch: number | null;
  /** Ours: install ioctls (UFFDIO_COPY / ZEROPAGE) per fault served. */
  ioctlsPerFault: number | null;
  faultsPerSec: number | null;
  /** Handler CPU (all its threads, user + system) from the emulator's connect to the workload's end. */
  handlerCpuUs: number | null;
  cpuUsPerFault: number | null;
  /** Handler peak RSS (VmHWM, includes file pages it mapped) and peak anonymous RSS (its own memory). */
  handlerPeakRssKiB: number | null;
  handlerPeakAnonKiB: number | null;
  fileCachedPagesAfterDrop: number | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readProc(pid: number, file: string): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** Nanoseconds on CPU of every live thread of a process (schedstat: exact, unlike the 10 ms ticks of stat). */
export function cpuNs(pid: number): number {
  let sum = 0;
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return NaN;
  }
  for (const t of tasks) {
    const s = readProc(pid, `task/${t}/schedstat`);
    if (s) sum += Number(s.split(' ')[0]);
  }
  return sum;
}

/**
 * CPU time of the whole host (every CPU, /proc/stat's first line), in clock ticks (10 ms): busy
 * (user, nice, system, irq, softirq, steal) and in all (those and idle, iowait).
 */
export function hostCpuTicks(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((x, y) => x + y, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

/** The share of the host's CPUs busy between two hostCpuTicks() readings, in %. */
export function hostBusyPct(from: { busy: number; total: number }, to: { busy: number; total: number }): number {
  return to.total > from.total ? (100 * (to.busy - from.busy)) / (to.total - from.total) : NaN;
}

/**
 * One thread's nanoseconds on a CPU and waiting for one (runnable, on a run queue), from schedstat.
 * The wait is the cost of sharing the host's CPUs: a thread with work that is not running.
 */
export function threadSchedNs(pid: number, tid: number): { cpuNs: number; waitNs: number } {
  const s = readProc(pid, `task/${tid}/schedstat`)?.split(' ');
  return s ? { cpuNs: Number(s[0]), waitNs: Number(s[1]) } : { cpuNs: NaN, waitNs: NaN };
}

function statusKiB(pid: number, field: string): number {
  const s = readProc(pid, 'status');
  const m = s ? new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s) : null;
  return m ? Number(m[1]) : NaN;
}

/** Samples a handler's anonymous RSS while a trial runs. */
class RssSampler {
  peakAnonKiB = 0;
  private timer: NodeJS.Timeout;
  constructor(private readonly pid: number) {
    this.timer = setInterval(() => this.sample(), 20);
  }
  sample(): void {
    const a = statusKiB(this.pid, 'RssAnon');
    if (a > this.peakAnonKiB) this.peakAnonKiB = a;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

interface Proc {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<number | null>;
}

function start(cmd: string, args: string[], onLine?: (line: string, stream: 'out' | 'err') => void): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, stdout: '', stderr: '', exited: new Promise((r) => child.on('close', (code) => r(code))) };
  for (const [stream, key] of [
    [child.stdout, 'stdout'],
    [child.stderr, 'stderr'],
  ] as const) {
    let partial = '';
    stream.setEncoding('utf8').on('data', (d: string) => {
      p[key] += d;
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const l of lines) onLine?.(l, key === 'stdout' ? 'out' : 'err');
    });
  }
  return p;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number, proc?: Proc): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (proc && proc.child.exitCode !== null)
      throw new Error(`${what}: the process exited (${proc.child.exitCode}): ${proc.stderr.slice(-500)}`);
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: timed out after ${timeoutMs} ms`);
    await sleep(5);
  }
}

/** Waits until a process stops reading (our handler's background zero-page scan of the memory file). */
async function waitIoQuiet(pid: number, quietMs: number, timeoutMs: number): Promise<void> {
  const rchar = (): number => Number(/^rchar: (\d+)/m.exec(readProc(pid, 'io') ?? '')?.[1] ?? NaN);
  const t0 = Date.now();
  let last = rchar();
  let since = Date.now();
  while (Date.now() - since < quietMs && Date.now() - t0 < timeoutMs) {
    await sleep(25);
    const now = rchar();
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
}

/** `serve` arguments naming the snapshot: the memory file, or its chunked store (packed on first use). */
function snapshotArgs(w: Workload, chunked: boolean): string[] {
  if (!chunked) return ['--mem', w.mem];
  const store = `${w.mem}.store`;
  const idFile = `${w.mem}.manifest-id`;
  if (!fs.existsSync(idFile)) {
    const r = spawnSync(process.execPath, [...OUR_CLI_ARGV, 'pack', w.mem, '--store', store, '--json'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`fc-uffd pack failed: ${r.stderr.slice(-400)}`);
    fs.writeFileSync(idFile, (JSON.parse(r.stdout.trim().split('\n').pop()!) as { id: string }).id);
  }
  return ['--snapshot', fs.readFileSync(idFile, 'utf8').trim(), '--store', store];
}

/** The emulator's arguments for one VM of workload `w` on `socket`. */
function workloadEmulatorArgs(
  w: Workload,
  socket: string,
  run: { deadlineMs: number; seed: number; holdMs?: number | undefined },
): string[] {
  return emulatorArgs({
    socket,
    mem: w.mem,
    pageSize: w.pageSize,
    vcpus: w.vcpus,
    pattern: w.pattern,
    touchPages: w.touchPages,
    share: w.share,
    writePercent: w.writePercent,
    kvm: w.kvm,
    memSizeBytes: w.memSizeBytes,
    ...run,
  });
}

/**
 * A working set for this workload and snapshot kind, recorded once by an untimed restore through
 * our handler with --record-ws (what an operator does on the first restore of a snapshot).
 */
async function workingSet(w: Workload, chunked: boolean, dir: string, deadlineMs: number): Promise<string> {
  const file = `${w.mem}.${chunked ? 'chunked' : 'mem'}.${w.vcpus}v.${w.pattern.replace(/[^a-z0-9]+/gi, '_').slice(-40)}.ws`;
  if (fs.existsSync(file)) return file;
  const socket = path.join(dir, 'record.sock');
  fs.rmSync(socket, { force: true });
  const handler = start(process.execPath, [...OUR_CLI_ARGV, 'serve', '--socket', socket, ...snapshotArgs(w, chunked), '--record-ws', file]);
  try {
    await waitFor('recording handler socket', () => fs.existsSync(socket), 15000, handler);
    const emu = start(EMULATOR_PATH, workloadEmulatorArgs(w, socket, { deadlineMs, seed: 1 }));
    if ((await emu.exited) !== 0) throw new Error(`recording restore failed: ${emu.stderr.slice(-400)}`);
    await waitFor('working set written', () => fs.existsSync(file), 10000, handler);
    return file;
  } finally {
    handler.child.kill('SIGTERM');
    await handler.exited;
  }
}

export interface TrialOptions {
  workload: Workload;
  variant: Variant;
  dir: string;
  deadlineMs: number;
}

export async function runTrial(o: TrialOptions): Promise<TrialResult> {
  const { workload: w, variant: v } = o;
  const socket = path.join(o.dir, `${v.name}.sock`);
  fs.rmSync(socket, { force: true });
  let handler: Proc | undefined;
  let vmEnded: ((s: Record<string, number>) => void) | undefined;
  const vmSummaries: Record<string, number>[] = [];
  const nvms = v.vms ?? 1;
  // The warm-up VMs' summaries come first and are not the measured VMs'.
  let warmupSummaries = v.warmupVms ?? 0;
  let warmupEnded: (() => void) | undefined;
  const allEnded = new Promise<void>((resolve) => {
    vmEnded = (s) => {
      if (warmupSummaries > 0) {
        warmupSummaries--;
        warmupEnded?.();
        return;
      }
      vmSummaries.push(s);
      if (vmSummaries.length === nvms) resolve();
    };
  });

  if (v.handler === 'ours') {
    const args = [...OUR_CLI_ARGV, 'serve', '--socket', socket, ...snapshotArgs(w, v.chunked ?? false), '--log-level', 'info'];
    if (v.faultAroundBytes !== undefined) args.push('--fault-around', String(v.faultAroundBytes));
    if (v.faultAroundFlag !== undefined) args.push('--fault-around', v.faultAroundFlag);
    if (v.prefetch) args.push('--prefetch', await workingSet(w, v.chunked ?? false, o.dir, o.deadlineMs));
    if (v.trace) args.push('--trace', path.join(o.dir, `${v.name}-{vm}.trace`));
    handler = start(process.execPath, args, (line, stream) => {
      if (stream !== 'err' || !line.startsWith('{')) return;
      try {
        const j = JSON.parse(line) as Record<string, number> & { msg?: string };
        if (j.msg === 'VM ended') vmEnded!(j);
      } catch {
        /* not a log line */
      }
    });
  } else if (v.handler === 'c') {
    const args = ['--socket', socket, '--mem', w.mem];
    if (v.faultAroundBytes) args.push('--fault-around-bytes', String(v.faultAroundBytes));
    if (v.populateAll) args.push('--populate-all');
    handler = start(C_HANDLER, args);
  }
  const pid = handler?.child.pid;
  let sampler: RssSampler | undefined;
  try {
    if (handler && pid) {
      await waitFor(`${v.name}: handler socket`, () => fs.existsSync(socket), 15000, handler);
      if (v.handler === 'ours') await waitIoQuiet(pid, 150, 30000);
      for (let k = 0; k < (v.warmupVms ?? 0); k++) {
        const ended = new Promise<void>((resolve) => (warmupEnded = resolve));
        const warm = start(EMULATOR_PATH, workloadEmulatorArgs(w, socket, { deadlineMs: o.deadlineMs, seed: 1000 + k }));
        if ((await warm.exited) !== 0) throw new Error(`warm-up VM ${k + 1}: emulator failed: ${warm.stderr.slice(-400)}`);
        await Promise.race([ended, sleep(10000).then(() => Promise.reject(new Error('handler printed no summary for a warm-up VM')))]);
      }
      sampler = new RssSampler(pid);
    }
    const cpu0 = pid ? cpuNs(pid) : NaN;
    let cpu1 = NaN;
    let hwm = NaN;
    const reports: EmulatorReport[] = [];
    const emus: Proc[] = [];
    for (let i = 0; i < nvms; i++) {
      const args = workloadEmulatorArgs(w, socket, {
        deadlineMs: o.deadlineMs,
        seed: i + 1,
        // Keeps the VM (and its worker thread) alive after the report, so the handler's CPU can be read
        // per thread before anything exits.
        holdMs: handler ? 150 : undefined,
      });
      if (v.backend === 'file') args.push('--backend', 'file');
      if (v.cache === 'cold') args.push('--drop-file-cache');
      emus.push(
        start(EMULATOR_PATH, args, (line, stream) => {
          if (stream !== 'out' || !line.startsWith('{')) return;
          reports.push(JSON.parse(line) as EmulatorReport);
          if (reports.length === nvms && pid) {
            cpu1 = cpuNs(pid);
            hwm = statusKiB(pid, 'VmHWM');
            sampler?.sample();
          }
        }),
      );
    }
    const codes = await Promise.all(emus.map((e) => e.exited));
    const bad = codes.findIndex((c) => c !== 0);
    if (bad >= 0) throw new Error(`emulator exit ${codes[bad]}: ${emus[bad]!.stderr.trim().slice(-400)}`);
    if (reports.length !== nvms) throw new Error('emulator printed no report');

    let faults: number | null = null;
    let bytesInstalled: number | null = null;
    let ioctls: number | null = null;
    let cUsage: { cpuUserUs: number; cpuSysUs: number; maxRssKiB: number } | undefined;
    const pageBytes = reports[0]!.pageSizeBytes;
    if (v.handler === 'ours') {
      await Promise.race([allEnded, sleep(10000).then(() => Promise.reject(new Error('handler printed no VM summary')))]);
      faults = vmSummaries.reduce((a, s) => a + (s.faults ?? 0), 0);
      bytesInstalled = vmSummaries.reduce((a, s) => a + (s.bytesCopied ?? 0) + (s.pagesZeroed ?? 0) * pageBytes, 0);
      // The summary names installIoctls once the serve side logs it (issue 11 phase 2); until then: no figure.
      if (vmSummaries.every((s) => s.installIoctls !== undefined)) ioctls = vmSummaries.reduce((a, s) => a + s.installIoctls!, 0);
    } else if (v.handler === 'c') {
      await Promise.race([handler!.exited, sleep(10000)]);
      const line = handler!.stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .pop();
      if (!line) throw new Error(`c-handler printed no statistics: ${handler!.stderr.slice(-300)}`);
      const j = JSON.parse(line) as { faults: number; bytes: number; cpuUserUs: number; cpuSysUs: number; maxRssKiB: number };
      faults = j.faults;
      bytesInstalled = j.bytes;
      cUsage = j;
    }
    const doneMs = Math.max(...reports.map((r) => r.handshakeToDoneMs));
    const p50s = reports.map((r) => r.touchLatencyUs.p50).sort((a, b) => a - b);
    let handlerCpuUs = pid ? (cpu1 - cpu0) / 1e3 : null;
    // A C handler run the whole trial single-threaded: its own getrusage is exact and covers the same span.
    if (cUsage && !Number.isFinite(handlerCpuUs ?? NaN)) handlerCpuUs = cUsage.cpuUserUs + cUsage.cpuSysUs;
    if (cUsage && !Number.isFinite(hwm)) hwm = cUsage.maxRssKiB;
    return {
      ok: reports.every((r) => r.ok),
      handshakeToDoneMs: doneMs,
      touchP50Us: p50s[p50s.length >> 1]!,
      touchP99Us: Math.max(...reports.map((r) => r.touchLatencyUs.p99)),
      touchMaxUs: Math.max(...reports.map((r) => r.touchLatencyUs.max)),
      firstTouches: reports.reduce((a, r) => a + r.touchLatencyUs.count, 0),
      faults,
      bytesInstalled,
      bytesPerFault: faults ? (bytesInstalled ?? 0) / faults : null,
      installedPerTouch:
        bytesInstalled !== null
          ? bytesInstalled /
            pageBytes /
            Math.max(
              1,
              reports.reduce((a, r) => a + r.touchLatencyUs.count, 0),
            )
          : null,
      ioctlsPerFault: faults && ioctls !== null ? ioctls / faults : null,
      faultsPerSec: faults !== null ? faults / (doneMs / 1e3) : null,
      handlerCpuUs,
      cpuUsPerFault: faults && handlerCpuUs !== null ? handlerCpuUs / faults : null,
      handlerPeakRssKiB: pid ? hwm : null,
      handlerPeakAnonKiB: sampler ? sampler.peakAnonKiB : null,
      fileCachedPagesAfterDrop: (reports[0]!.fileCachedPagesAfterDrop as number | null | undefined) ?? null,
    };
  } catch (err) {
    const logged = handler?.stderr
      .split('\n')
      .filter((l) => /"level":(50|60)/.test(l))
      .pop();
    return failedTrial(`${(err as Error).message}${logged ? ` | handler: ${logged.slice(0, 400)}` : ''}`);
  } finally {
    sampler?.stop();
    if (handler && handler.child.exitCode === null) {
      handler.child.kill('SIGTERM');
      await Promise.race([handler.exited, sleep(5000)]);
      // The race above may have let it exit (the rule cannot see a field change across an await).
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      if (handler.child.exitCode === null) handler.child.kill('SIGKILL');
    }
    fs.rmSync(socket, { force: true });
  }
}

export function failedTrial(error = 'not run'): TrialResult {
  return {
    ok: false,
    error,
    handshakeToDoneMs: NaN,
    touchP50Us: NaN,
    touchP99Us: NaN,
    touchMaxUs: NaN,
    firstTouches: 0,
    faults: null,
    bytesInstalled: null,
    bytesPerFault: null,
    installedPerTouch: null,
    ioctlsPerFault: null,
    faultsPerSec: null,
    handlerCpuUs: null,
    cpuUsPerFault: null,
    handlerPeakRssKiB: null,
    handlerPeakAnonKiB: null,
    fileCachedPagesAfterDrop: null,
  };
}
