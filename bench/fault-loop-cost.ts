// node dist/bench/fault-loop-cost.js [--runs N] [--suite NAME] [--data-dir DIR] [--fixture DIR]
//
// The fault loop's own cost per fault, in process: src/serve/fault-loop.ts served through a uffd
// whose ioctls do nothing (no kernel, no emulator), replaying the bench's traces (bench/lib/traces.ts:
// the real restore trace, a random 5 % of 512 MiB, a dense 128 MiB walk) with fixed and adaptive
// fault-around, with and without `serve --trace`. On a shared 2-core machine a whole restore's
// handler CPU varies by ±20 % between runs; this isolates what the JavaScript side adds per fault
// (planning, the adaptive window, page state, stats, the trace records and their posting), which
// is what issue 11's "adaptive costs more CPU per fault" and issue 13's "tracing costs ≤ 3 %" are
// about. The kernel's share (the ioctls, the copy) is the same for every variant and is not here:
// compare with the trace-cost / adaptive scenarios of bench/run.ts for whole-restore figures.
// Each cell: median [min-max] over runs of the mean ns per fault, and of the p50 / p99 of single faults.
// Then the TraceRecorder alone: ns for the 3 records of a traced on-demand fault (read, installed
// range, served), blocks posted through a MessageChannel as on a fault-loop thread, against the
// same loop without recording, and ns per clock read (performance.now()): why the recorder takes
// its times from the fault loop's own clock reads (src/trace/recorder.ts).
// With --suite NAME it writes bench/results/NAME.json and NAME.md (bench/lib/results.ts); the
// committed suite is fault-loop-cost.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { UFFD_EVENT_PAGEFAULT, UFFD_MSG_SIZE } from '../src/kernel/constants.js';
import type { CopySource } from '../src/kernel/native.js';
import type { UffdOps } from '../src/kernel/uffd.js';
import { GuestMemory } from '../src/memory/regions.js';
import type { PageSource, SourceSpan } from '../src/memory/source.js';
import { FaultLoop } from '../src/serve/fault-loop.js';
import { faultAroundPolicyFor, type FaultAround } from '../src/serve/fault-around.js';
import { VmStats } from '../src/serve/stats.js';
import { TraceRecorder } from '../src/trace/recorder.js';
import type { TraceBlock } from '../src/trace/format.js';
import { writeResults } from './lib/results.js';
import { traces, type Trace } from './lib/traces.js';

const PS = 4096;
const HOST = 0x7f00_0000_0000;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Installs nothing: answers every ioctl as done, and remembers which pages are now "mapped". */
class NullUffd implements UffdOps {
  constructor(readonly present: Uint8Array) {}
  copy(dst: number, _src: CopySource, _srcOffset: number, len: number): number {
    this.present.fill(1, (dst - HOST) / PS, (dst - HOST + len) / PS);
    return len;
  }
  zeropage(dst: number, len: number): number {
    this.present.fill(1, (dst - HOST) / PS, (dst - HOST + len) / PS);
    return len;
  }
  wake(): number {
    return 0;
  }
  unregister(): number {
    return 0;
  }
}

/** A memory file's view without the file: zero pages from the trace's map, spans from one dummy buffer. */
class MapSource implements PageSource {
  readonly wakeFd = -1;
  readonly sizeBytes: number;
  private readonly src = new Uint8Array(PS);
  constructor(private readonly zero: Uint8Array) {
    this.sizeBytes = zero.length * PS;
  }
  isZero(off: number, len: number): boolean {
    for (let p = off / PS; p < (off + len) / PS; p++) if (!this.zero[p]) return false;
    return true;
  }
  span(): SourceSpan {
    return { src: this.src, srcOffset: 0 };
  }
  prepare(): void {}
  onWake(): void {}
  close(): void {}
}

interface Variant {
  name: string;
  faultAround: FaultAround;
  trace: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'fixed-4k', faultAround: 4096, trace: false },
  { name: 'fixed-4k-trace', faultAround: 4096, trace: true },
  { name: 'fixed-256k', faultAround: 256 * 1024, trace: false },
  { name: 'fixed-256k-trace', faultAround: 256 * 1024, trace: true },
  { name: 'adaptive', faultAround: 'adaptive', trace: false },
  { name: 'adaptive-trace', faultAround: 'adaptive', trace: true },
];

interface Replay {
  faults: number;
  meanNs: number;
  p50Ns: number;
  p99Ns: number;
}

const { port1, port2 } = new MessageChannel();
port2.on('message', () => {});
port2.unref();
const sink = (b: TraceBlock): void => port1.postMessage({ type: 'trace', vmId: 'vm-1', ...b });

/** Replays `t` once through a fresh FaultLoop: every access to a page not yet installed is one fault. */
function replay(t: Trace, v: Variant, lat: Float64Array): Replay {
  const present = new Uint8Array(t.zero.length);
  const memory = new GuestMemory([{ hostAddr: HOST, sizeBytes: t.sizeBytes, fileOffset: 0 }], PS);
  const trace = v.trace ? new TraceRecorder(sink, PS) : undefined;
  const loop = new FaultLoop({
    memory,
    source: new MapSource(t.zero),
    uffd: new NullUffd(present),
    stats: new VmStats(),
    faultAround: faultAroundPolicyFor({ faultAround: v.faultAround }, PS),
    trace,
  });
  const buf = Buffer.alloc(UFFD_MSG_SIZE);
  buf.writeUInt8(UFFD_EVENT_PAGEFAULT, 0);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let faults = 0;
  let totalMs = 0;
  for (const page of t.pages) {
    if (present[page]) continue;
    const addr = HOST + page * PS;
    view.setUint32(16, addr % 0x1_0000_0000, true);
    view.setUint32(20, Math.floor(addr / 0x1_0000_0000), true);
    const t0 = performance.now();
    loop.handleBatch(view, 1, t0);
    const dt = performance.now() - t0;
    totalMs += dt;
    lat[faults++] = dt;
  }
  trace?.flush();
  const sorted = lat.subarray(0, faults).sort();
  const q = (p: number): number => sorted[Math.min(faults - 1, Math.max(0, Math.ceil(p * faults) - 1))]! * 1e6;
  return { faults, meanNs: (totalMs * 1e6) / faults, p50Ns: q(0.5), p99Ns: q(0.99) };
}

interface Spread {
  median: number;
  min: number;
  max: number;
}
const spread = (xs: number[]): Spread => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[s.length >> 1]!, min: s[0]!, max: s[s.length - 1]! };
};

/** Iterations of one recorder or clock-read run: long enough that the timer's own cost vanishes. */
const RECORDER_ITERATIONS = 2_000_000;

/** ns per iteration of an on-demand fault's 3 records (none when `trace` is undefined), around a loop body that does little else. */
function recorderRun(trace: TraceRecorder | undefined): number {
  const readAt = performance.now();
  let acc = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < RECORDER_ITERATIONS; i++) {
    const off = (i & 0xffff) * PS;
    acc += off;
    trace?.fault(HOST + off, (i & 3) === 0, readAt);
    trace?.install(off, PS, 0, true, true);
    trace?.served(HOST + off, off, 0, readAt, readAt);
  }
  const ns = Number(process.hrtime.bigint() - t0);
  if (acc < 0) throw new Error('unreachable');
  trace?.flush();
  return ns / RECORDER_ITERATIONS;
}

/** ns per performance.now() call. */
function clockReadRun(): number {
  let acc = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < RECORDER_ITERATIONS; i++) acc += performance.now();
  const ns = Number(process.hrtime.bigint() - t0);
  if (acc < 0) throw new Error('unreachable');
  return ns / RECORDER_ITERATIONS;
}

interface RecorderCost {
  iterations: number;
  loopAloneNs: Spread;
  tracedNs: Spread;
  /** Median traced minus median untraced: what 3 records add to an on-demand fault. */
  addedPerFaultNs: number;
  clockReadNs: Spread;
}

function recorderCost(runs: number): RecorderCost {
  // A working-set prefetch is set, as with serve --trace --prefetch: served() checks it.
  const prefetchSet = Uint32Array.from({ length: 16384 }, (_, i) => i * 2);
  const base: number[] = [];
  const traced: number[] = [];
  const clock: number[] = [];
  recorderRun(new TraceRecorder(sink, PS, prefetchSet)); // untimed: the JIT compiles the traced path
  for (let r = 0; r < runs; r++) {
    base.push(recorderRun(undefined));
    traced.push(recorderRun(new TraceRecorder(sink, PS, prefetchSet)));
    clock.push(clockReadRun());
  }
  const loopAloneNs = spread(base);
  const tracedNs = spread(traced);
  return {
    iterations: RECORDER_ITERATIONS,
    loopAloneNs,
    tracedNs,
    addedPerFaultNs: tracedNs.median - loopAloneNs.median,
    clockReadNs: spread(clock),
  };
}

function main(): void {
  const argv = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const runs = Number(flag('--runs') ?? 7);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  const suite = flag('--suite');
  if (suite !== undefined && !/^[a-z0-9-]+$/.test(suite)) throw new Error('--suite must be a name of [a-z0-9-]');
  const dataDir = flag('--data-dir') ?? path.join(os.tmpdir(), 'fc-uffd-bench');
  const fixtureDir = flag('--fixture') ?? path.resolve(ROOT, '../shared/fixtures/real-guest-128m');
  fs.mkdirSync(dataDir, { recursive: true });
  const ts = traces(dataDir, fixtureDir);
  const lat = new Float64Array(Math.max(...ts.map((t) => t.pages.length)));
  const results: Array<{
    trace: string;
    what: string;
    variants: Array<{ name: string; faults: number; meanNs: Spread; p50Ns: Spread; p99Ns: Spread }>;
  }> = [];
  for (const t of ts) {
    // One untimed pass per variant first: the JIT compiles the paths each variant takes.
    for (const v of VARIANTS) replay(t, v, lat);
    const per = new Map<string, Replay[]>(VARIANTS.map((v) => [v.name, []]));
    for (let r = 0; r < runs; r++)
      for (let i = 0; i < VARIANTS.length; i++) {
        // Rotated order: no variant always runs first after a GC-heavy one.
        const v = VARIANTS[(i + r) % VARIANTS.length]!;
        per.get(v.name)!.push(replay(t, v, lat));
      }
    results.push({
      trace: t.name,
      what: t.what,
      variants: VARIANTS.map((v) => {
        const rs = per.get(v.name)!;
        return {
          name: v.name,
          faults: rs[0]!.faults,
          meanNs: spread(rs.map((x) => x.meanNs)),
          p50Ns: spread(rs.map((x) => x.p50Ns)),
          p99Ns: spread(rs.map((x) => x.p99Ns)),
        };
      }),
    });
  }
  const recorder = recorderCost(runs);
  const f = (s: Spread): string => `${s.median.toFixed(0)} [${s.min.toFixed(0)}-${s.max.toFixed(0)}]`;
  const lines: string[] = [
    `The fault loop alone (no kernel: its ioctls answer at once), ns of JavaScript per fault, including the trace records and their posting when traced; ${runs} runs per variant, medians [min-max]. ` +
      'Mean per fault (what CPU the loop spends; a run preempted by other work on the machine shows in it, so read min too), and the p50 / p99 of single faults. ' +
      '"traced / untraced" compares the best (min) means: the least disturbed runs.',
    '',
  ];
  for (const r of results) {
    lines.push(
      `**${r.trace}**: ${r.what}`,
      '',
      '| variant | faults | mean ns / fault | p50 ns | p99 ns | traced / untraced |',
      '| --- | --- | --- | --- | --- | --- |',
    );
    for (const v of r.variants) {
      const base = v.name.endsWith('-trace') ? r.variants.find((b) => b.name === v.name.slice(0, -'-trace'.length)) : undefined;
      lines.push(
        `| ${v.name} | ${v.faults} | ${f(v.meanNs)} | ${f(v.p50Ns)} | ${f(v.p99Ns)} | ${base ? `${v.meanNs.min >= base.meanNs.min ? '+' : ''}${(v.meanNs.min - base.meanNs.min).toFixed(0)} ns (${(v.meanNs.min / base.meanNs.min).toFixed(2)}x)` : ''} |`,
      );
    }
    lines.push('');
  }
  lines.push(
    `**recorder**: the TraceRecorder alone, ${recorder.iterations.toLocaleString('en-US')} iterations a run: the 3 records of an on-demand fault (read, installed range, served) ` +
      `add ${recorder.addedPerFaultNs.toFixed(0)} ns (traced ${f(recorder.tracedNs)} ns, the loop alone ${f(recorder.loopAloneNs)} ns); ` +
      `one clock read (performance.now()) costs ${f(recorder.clockReadNs)} ns, which is why the recorder takes its times from the fault loop's own clock reads.`,
  );
  const md = `${lines.join('\n')}\n`;
  process.stdout.write(md);
  if (suite) {
    const written = writeResults(suite, { runs, traces: results, recorder }, md);
    process.stdout.write(`results: ${[written.jsonPath, ...written.markdownPaths].join(' and ')}\n`);
  }
  port1.close();
}

main();
