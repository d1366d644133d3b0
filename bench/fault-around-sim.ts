// node dist/bench/fault-around-sim.js [--fixture DIR] [--data-dir DIR]
//
// Offline: replays access traces against fault-around policies and a snapshot's zero-page map, and
// counts what src/serve/fault-loop.ts would do — faults, pages installed (copied / zero), ioctls —
// without a kernel. Used to tune src/serve/adaptive-window.ts and to decide how short zero gaps
// inside a data run are installed (issue 11). Traces:
//   real      the real guest's restore trace over its memory file (../shared/fixtures/real-guest-128m,
//             decompressed with zstd into --data-dir; skipped, said so, when absent)
//   random    a random 5 % of a generated 512 MiB image: the exact pages fc-emu --pattern random
//             --touch-pages 6553 --seed 1 touches (its splitmix64 permutation, reproduced below)
//   dense     every page of a generated 128 MiB image, in order (fc-emu --pattern seq)
// The images are the bench's (bench/lib/data.ts demoImage, seed 42), so the counts match the
// bench scenarios random-5pct-512m and dense-seq-128m. Deterministic: it writes suite
// `fault-around-sim` (bench/results/fault-around-sim.json, the policies table as its fragment, the
// sweeps as parts `sweeps` and `zero-gaps`), only when every trace was replayed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdaptiveFaultAround, type AdaptiveFaultAroundOptions } from '../src/serve/adaptive-window.js';
import type { FaultAroundPolicy } from '../src/serve/fault-around.js';
import { SPAN_BOUNDARY_BYTES } from '../src/memory/source.js';
import { mdTable, writeResults } from './lib/results.js';
import { traces, type Trace } from './lib/traces.js';

const PS = 4096;
const MiB = 1024 * 1024;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TRACE_NAMES = ['real', 'random', 'dense'];

/** The fixed window exactly as fault-loop.ts computes it: the aligned block, clipped to the region. */
class FixedFaultAround implements FaultAroundPolicy {
  constructor(private readonly bytes: number) {}
  window(f: number, rs: number, re: number): { startOffset: number; lenBytes: number } {
    const start = Math.max(rs, f - (f % this.bytes));
    return { startOffset: start, lenBytes: Math.min(re, start + this.bytes) - start };
  }
}

interface SimResult {
  faults: number;
  touched: number;
  touchedZero: number;
  copied: number;
  zeroed: number;
  ioctls: number;
  /** Window lengths in pages: power-of-two bucket -> faults. */
  windows: Map<number, number>;
}

/**
 * Replays `t` through `policy` as fault-loop.ts serves faults: an access to a page not installed
 * faults; the faulting page and the following pages of its window of the same kind go in one
 * ioctl, then the rest of the window in runs by kind, skipping installed pages; a data run is one
 * UFFDIO_COPY per SPAN_BOUNDARY_BYTES piece, a zero run one UFFDIO_ZEROPAGE. With zeroGapPages > 0,
 * a run of at most that many zero pages with data on both sides (inside the window, not installed)
 * is copied as data instead (item 3: fewer ioctls, more guest memory).
 */
function simulate(t: Trace, policy: FaultAroundPolicy, zeroGapPages = 0): SimResult {
  const present = new Uint8Array(t.zero.length);
  const r: SimResult = { faults: 0, touched: 0, touchedZero: 0, copied: 0, zeroed: 0, ioctls: 0, windows: new Map() };
  const seen = new Uint8Array(t.zero.length);
  const kinds = new Uint8Array((SPAN_BOUNDARY_BYTES / PS) * 2);
  for (const page of t.pages) {
    if (!seen[page]) {
      seen[page] = 1;
      r.touched++;
      if (t.zero[page]) r.touchedZero++;
    }
    if (present[page]) continue;
    r.faults++;
    const f = page * PS;
    const w = policy.window(f, 0, t.sizeBytes);
    const lo = w.startOffset / PS;
    const hi = lo + w.lenBytes / PS;
    if (w.startOffset % PS || w.lenBytes % PS || page < lo || page >= hi || lo < 0 || hi * PS > t.sizeBytes)
      throw new Error(`bad window ${w.startOffset}+${w.lenBytes} for fault ${f}`);
    const bucket = 2 ** Math.ceil(Math.log2(hi - lo));
    r.windows.set(bucket, (r.windows.get(bucket) ?? 0) + 1);
    // Effective kind per page of the window: 0 data, 1 zero, 2 installed already.
    for (let p = lo; p < hi; p++) kinds[p - lo] = present[p] ? 2 : t.zero[p] ? 1 : 0;
    if (zeroGapPages > 0) {
      for (let i = 0; i < hi - lo;) {
        if (kinds[i] !== 1) {
          i++;
          continue;
        }
        let j = i;
        while (j < hi - lo && kinds[j] === 1) j++;
        if (i > 0 && kinds[i - 1] === 0 && j < hi - lo && kinds[j] === 0 && j - i <= zeroGapPages) kinds.fill(0, i, j);
        i = j;
      }
    }
    const install = (a: number, b: number, kind: number): void => {
      for (let p = a; p < b; p++) present[p] = 1;
      if (kind === 0) {
        r.copied += b - a;
        // Pieces never cross a SPAN_BOUNDARY_BYTES boundary (fault-loop install()).
        const per = SPAN_BOUNDARY_BYTES / PS;
        r.ioctls += Math.floor((b - 1) / per) - Math.floor(a / per) + 1;
      } else {
        r.zeroed += b - a;
        r.ioctls++;
      }
    };
    const kind = kinds[page - lo]!;
    let runEnd = page + 1;
    while (runEnd < hi && kinds[runEnd - lo] === kind) runEnd++;
    install(page, runEnd, kind);
    for (let p = lo; p < hi;) {
      if ((p >= page && p < runEnd) || kinds[p - lo] === 2) {
        p++;
        continue;
      }
      const k = kinds[p - lo]!;
      let e = p + 1;
      while (e < hi && !(e >= page && e < runEnd) && kinds[e - lo] === k) e++;
      install(p, e, k);
      p = e;
    }
  }
  return r;
}

// ---- the cost model ----

/**
 * Rough microseconds, to rank policies, not to predict: fitted to the fault-around curve in
 * bench/README.md (real trace, ours 4k..2m): a fault's round trip through the emulator ~40 µs,
 * an ioctl ~2 µs, a copied page ~1.5 µs, a zero page ~0.3 µs.
 */
const COST_US = { fault: 40, ioctl: 2, copied: 1.5, zeroed: 0.3 };
const estMs = (r: SimResult): number =>
  (r.faults * COST_US.fault + r.ioctls * COST_US.ioctl + r.copied * COST_US.copied + r.zeroed * COST_US.zeroed) / 1000;

// ---- main ----

interface Policy {
  name: string;
  make(t: Trace): FaultAroundPolicy;
}

const fixed = (bytes: number): Policy => ({
  name: `fixed-${bytes >= MiB ? `${bytes / MiB}m` : `${bytes / 1024}k`}`,
  make: () => new FixedFaultAround(bytes),
});
const adaptive = (name: string, o: Partial<AdaptiveFaultAroundOptions> = {}, zeroAware = false): Policy => ({
  name,
  make: (t) =>
    new AdaptiveFaultAround({
      pageSizeBytes: PS,
      ...o,
      ...(zeroAware ? { isZero: (off: number, len: number) => zeroRange(t.zero, off, len) } : {}),
    }),
});

function zeroRange(zero: Uint8Array, off: number, len: number): boolean {
  for (let p = off / PS; p < (off + len) / PS; p++) if (!zero[p]) return false;
  return true;
}

type Row = ReturnType<typeof row>;

function row(policy: string, t: Trace, r: SimResult) {
  return {
    trace: t.name,
    policy,
    faults: r.faults,
    touched: r.touched,
    copied: r.copied,
    zeroed: r.zeroed,
    installedPerTouched: (r.copied + r.zeroed) / r.touched,
    copiedPerTouchedData: r.copied / (r.touched - r.touchedZero),
    ioctls: r.ioctls,
    ioctlsPerFault: r.ioctls / r.faults,
    estMs: estMs(r),
  };
}

/** Counts with thousands separators; ratios and ms to three significant digits (1.09, 11.2, 52.9, 1,404). */
const count = (n: number): string => n.toLocaleString('en-US');
const sig3 = (x: number): string => (x >= 100 ? count(Math.round(x)) : x.toFixed(x >= 10 ? 1 : 2));

/** Every policy on every trace, one row each (the default policy, adaptive, in bold). */
function policiesTable(rows: Row[]): string {
  return mdTable(
    ['trace', 'policy', 'faults', 'installed/touched', 'copied/touched data', 'ioctls', 'ioctls/fault', 'est ms'],
    rows.map((r) => [
      r.trace,
      r.policy === 'adaptive' ? '**adaptive**' : r.policy,
      count(r.faults),
      sig3(r.installedPerTouched),
      sig3(r.copiedPerTouchedData),
      count(r.ioctls),
      sig3(r.ioctlsPerFault),
      sig3(r.estMs),
    ]),
  );
}

/** One line per setting, the traces side by side: `cols` picks the figures shown per trace. */
function acrossTraces(rows: Row[], settingHead: string, cols: Array<[head: string, cell: (r: Row) => string]>): string {
  const settings = [...new Set(rows.map((r) => r.policy))];
  const head = [settingHead, ...TRACE_NAMES.flatMap((t) => cols.map(([h]) => `${t} ${h}`))];
  return mdTable(
    head,
    settings.map((s) => [
      s,
      ...TRACE_NAMES.flatMap((t) => {
        const r = rows.find((x) => x.trace === t && x.policy === s)!;
        return cols.map(([, cell]) => cell(r));
      }),
    ]),
  );
}

function printTable(title: string, rows: Row[]): void {
  process.stdout.write(`\n== ${title}\n`);
  if (rows.length === 0) return;
  const head = Object.keys(rows[0]!) as Array<keyof Row>;
  const cells = rows.map((r) =>
    head.map((h) => {
      const v = r[h];
      return typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : String(v);
    }),
  );
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  process.stdout.write(`| ${head.map((h, i) => h.padEnd(width[i]!)).join(' | ')} |\n| ${width.map((w) => '-'.repeat(w)).join(' | ')} |\n`);
  for (const c of cells) process.stdout.write(`| ${c.map((x, i) => x.padEnd(width[i]!)).join(' | ')} |\n`);
}
function main(): void {
  const argv = process.argv.slice(2);
  const arg = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const fixtureDir = arg('--fixture') ?? path.resolve(ROOT, '../shared/fixtures/real-guest-128m');
  const dataDir = arg('--data-dir') ?? path.join(os.tmpdir(), 'fc-uffd-bench');
  fs.mkdirSync(dataDir, { recursive: true });
  const ts = traces(dataDir, fixtureDir);
  const windowSizes: Record<string, Record<string, number>> = {};

  // 1. Every policy on every trace.
  const policies: Policy[] = [
    fixed(4096),
    fixed(64 * 1024),
    fixed(256 * 1024),
    fixed(2 * MiB),
    adaptive('adaptive'),
    adaptive('adaptive+zero-aware', {}, true),
  ];
  const rows1: Row[] = [];
  for (const t of ts)
    for (const p of policies) {
      const r = simulate(t, p.make(t));
      rows1.push(row(p.name, t, r));
      if (p.name === 'adaptive') {
        const sizes = [...r.windows.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => [`${(k * PS) / 1024}k`, v] as const);
        windowSizes[t.name] = Object.fromEntries(sizes);
        process.stdout.write(`window sizes (${t.name}, adaptive): ${sizes.map(([k, v]) => `${k}:${v}`).join(' ')}\n`);
      }
    }
  printTable('policies x traces (installed/touched counts zero pages; copied/touched-data: guest memory per data page touched)', rows1);

  // 2. Tunables, one at a time around the default.
  const sweep: Policy[] = [
    ...[1, 2, 4, 16].map((n) => adaptive(`initial ${n}p`, { initialPages: n })),
    ...[1, 4, 16, 64].map((n) => adaptive(`seq initial ${n}p`, { seqInitialPages: n })),
    ...[0.25, 0.5, 0.75, 1.01].map((x) => adaptive(`seq share ${x}`, { seqShare: x })),
    ...[4, 16, 64].map((n) => adaptive(`history ${n}`, { history: n })),
    ...[256 * 1024, MiB, 4 * MiB].map((b) => adaptive(`max ${b / 1024}k`, { maxBytes: b })),
    ...[1, 4, 16].map((n) => adaptive(`streams ${n}`, { streams: n })),
    ...[0, 1, 16].map((n) => adaptive(`skip ${n}p`, { skipPages: n })),
    ...[0, 512 * 1024].map((b) => adaptive(`4x below ${b / 1024}k`, { fastGrowthBelowBytes: b })),
  ];
  const rows2: Row[] = [];
  for (const t of ts) for (const p of sweep) rows2.push(row(p.name, t, simulate(t, p.make(t))));
  printTable('adaptive tunables, one changed at a time', rows2);

  // 3. Zero gaps inside a data run installed as copied zeros (item 3).
  const rows3: Row[] = [];
  for (const t of ts)
    for (const p of [fixed(256 * 1024), fixed(2 * MiB), adaptive('adaptive')])
      for (const gap of [0, 1, 2, 4, 8, 16]) rows3.push(row(`${p.name} gap<=${gap}`, t, simulate(t, p.make(t), gap)));
  printTable('zero gaps of <= N pages inside a data run copied as data (N=0: split, as today)', rows3);
  process.stdout.write(`\ncost model (est ms, to rank only): ${JSON.stringify(COST_US)} µs\n`);

  const missing = TRACE_NAMES.filter((n) => !ts.some((t) => t.name === n));
  if (missing.length > 0) {
    process.stdout.write(`results not written: trace ${missing.join(', ')} missing (give --fixture the real guest's directory)\n`);
    process.exitCode = 1;
    return;
  }
  const costModel = `\`est ms\`: ${COST_US.fault} µs a fault, ${COST_US.ioctl} µs an ioctl, ${COST_US.copied} µs a copied page, ${COST_US.zeroed} µs a zero page (to rank policies, not a measurement).`;
  const perTrace: Array<[string, (r: Row) => string]> = [
    ['faults', (r) => count(r.faults)],
    ['inst/touched', (r) => sig3(r.installedPerTouched)],
    ['est ms', (r) => sig3(r.estMs)],
  ];
  const written = writeResults(
    'fault-around-sim',
    {
      costModelUs: COST_US,
      traces: ts.map((t) => ({ name: t.name, what: t.what })),
      adaptiveWindowSizes: windowSizes,
      policies: rows1,
      tunables: rows2,
      zeroGaps: rows3,
    },
    `Every policy on every trace (installed/touched counts zero pages; copied/touched data: guest memory per data page touched). ${costModel}\n\n${policiesTable(rows1)}\n\n` +
      `Faults by window size, adaptive: ${TRACE_NAMES.map(
        (t) =>
          `${t} ${Object.entries(windowSizes[t] ?? {})
            .map(([k, v]) => `${k} ${count(v)}`)
            .join(', ')}`,
      ).join('; ')}.`,
    {
      sweeps: `The adaptive policy's tunables, one changed at a time from the default (inst/touched: pages installed per page touched). ${costModel}\n\n${acrossTraces(rows2, 'setting', perTrace)}`,
      'zero-gaps': `Zero gaps of at most N pages inside a data run copied as data (gap<=0: split by kind, as served today).\n\n${acrossTraces(
        rows3,
        'policy',
        [
          ['ioctls', (r) => count(r.ioctls)],
          ['copied', (r) => count(r.copied)],
        ],
      )}`,
    },
  );
  process.stdout.write(`results: ${[written.jsonPath, ...written.markdownPaths].map((f) => path.relative(ROOT, f)).join(', ')}\n`);
}

main();
