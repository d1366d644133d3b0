// npm run bench: the fault path against its baselines, every figure measured in the same run, on the
// same workload, through the same Firecracker emulator. See bench/README.md for what each scenario
// and column means. Flags: --runs N, --quick, --only a,b, --full, --smoke, --out FILE, --suite NAME, --data-dir DIR.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_FAULT_AROUND_BYTES } from '../src/server/server.js';
import { EMULATOR_PATH } from '../tools/emulator/run.js';
import { reserveHugePages, type HugePageReservation } from '../tools/hugepages.js';
import { clusteredTrace, demoImage, realGuest, warmPageCache, type Image } from './lib/data.js';
import { fmt, spread, type Spread } from './lib/stats.js';
import { renderFragment, type SuiteDoc } from './lib/fragment.js';
import { faultPathParts } from './lib/fault-path-parts.js';
import { C_HANDLER, OUR_CLI, failedTrial, runTrial, type TrialResult, type Variant, type Workload } from './lib/trial.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// ---- variants: who serves the faults ----
const FA = DEFAULT_FAULT_AROUND_BYTES;
const V = {
  ours: { name: 'ours', handler: 'ours', backend: 'uffd', cache: 'warm' },
  ours4k: { name: 'ours-4k', handler: 'ours', faultAroundBytes: 4096, backend: 'uffd', cache: 'warm' },
  oursCold: { name: 'ours-cold', handler: 'ours', backend: 'uffd', cache: 'cold' },
  c4k: { name: 'c-4k', handler: 'c', backend: 'uffd', cache: 'warm' },
  cFa: { name: 'c-fa', handler: 'c', faultAroundBytes: FA, backend: 'uffd', cache: 'warm' },
  cPop: { name: 'c-populate', handler: 'c', populateAll: true, backend: 'uffd', cache: 'warm' },
  fileWarm: { name: 'file-warm', handler: 'none', backend: 'file', cache: 'warm' },
  fileCold: { name: 'file-cold', handler: 'none', backend: 'file', cache: 'cold' },
  oursPrefetch: { name: 'ours-prefetch', handler: 'ours', prefetch: true, backend: 'uffd', cache: 'warm' },
  oursPrefetchCold: { name: 'ours-prefetch-cold', handler: 'ours', prefetch: true, backend: 'uffd', cache: 'cold' },
  oursChunked: { name: 'ours-chunked', handler: 'ours', chunked: true, backend: 'uffd', cache: 'warm' },
  oursTrace: { name: 'ours-trace', handler: 'ours', trace: true, backend: 'uffd', cache: 'warm' },
  ours4kTrace: { name: 'ours-4k-trace', handler: 'ours', faultAroundBytes: 4096, trace: true, backend: 'uffd', cache: 'warm' },
  // The same two on a handler that served two VMs before (Variant.warmupVms): tracing's cost apart from V8's warm-up of its code.
  ours4kWarm: { name: 'ours-4k-warm', handler: 'ours', faultAroundBytes: 4096, backend: 'uffd', cache: 'warm', warmupVms: 2 },
  ours4kTraceWarm: {
    name: 'ours-4k-trace-warm',
    handler: 'ours',
    faultAroundBytes: 4096,
    trace: true,
    backend: 'uffd',
    cache: 'warm',
    warmupVms: 2,
  },
  oursChunkedPrefetch: { name: 'ours-chunked-prefetch', handler: 'ours', chunked: true, prefetch: true, backend: 'uffd', cache: 'warm' },
} satisfies Record<string, Variant>;
// Issue 11: fixed windows against the adaptive one, by the names the issue's targets use.
const W = {
  fixed4k: { name: 'fixed-4k', handler: 'ours', faultAroundBytes: 4096, backend: 'uffd', cache: 'warm' },
  fixed256k: { name: 'fixed-256k', handler: 'ours', faultAroundBytes: 256 * 1024, backend: 'uffd', cache: 'warm' },
  fixed2m: { name: 'fixed-2m', handler: 'ours', faultAroundBytes: 2 * MiB, backend: 'uffd', cache: 'warm' },
  c4k: { name: 'c-handler-4k', handler: 'c', backend: 'uffd', cache: 'warm' },
  adaptive: { name: 'adaptive', handler: 'ours', faultAroundFlag: 'adaptive', backend: 'uffd', cache: 'warm' },
  // The same on a handler that served two VMs before (see Variant.warmupVms).
  fixed4kWarm: { name: 'fixed-4k-warm', handler: 'ours', faultAroundBytes: 4096, backend: 'uffd', cache: 'warm', warmupVms: 2 },
  adaptiveWarm: { name: 'adaptive-warm', handler: 'ours', faultAroundFlag: 'adaptive', backend: 'uffd', cache: 'warm', warmupVms: 2 },
} satisfies Record<string, Variant>;
const ADAPTIVE_VARIANTS = [W.fixed256k, W.fixed4k, W.fixed2m, W.c4k, W.adaptive, W.fixed4kWarm, W.adaptiveWarm];
const faVariant = (bytes: number): Variant => ({
  name: `ours-fa-${bytes >= MiB ? `${bytes / MiB}m` : `${bytes / 1024}k`}`,
  handler: 'ours',
  faultAroundBytes: bytes,
  backend: 'uffd',
  cache: 'warm',
});

interface Scenario {
  name: string;
  what: string;
  variants: Variant[];
  /** Builds the workload; a string is the reason to skip. */
  prepare(ctx: Ctx): Workload | string;
  /** Also run with --quick / by default / only with --full. */
  tier: 'smoke' | 'default' | 'full';
  hugePages?: number;
  /** Runs per variant (default: --runs). */
  runs?: number;
  deadlineMs?: number;
}

interface Ctx {
  dataDir: string;
  fixtureDir: string;
  quick: boolean;
  origins: Map<string, string>;
}

function image(ctx: Ctx, sizeBytes: number): Image {
  const img = demoImage(ctx.dataDir, sizeBytes);
  ctx.origins.set(img.path, img.origin);
  return img;
}

/** The sparse working set: the real trace when the fixture is there, else a clustered trace over a demo image. */
function sparseReal(ctx: Ctx): Workload {
  const real = realGuest(ctx.dataDir, ctx.fixtureDir);
  if (typeof real !== 'string') {
    ctx.origins.set(real.image.path, real.image.origin);
    return { mem: real.image.path, pageSize: '4k', vcpus: 1, pattern: `trace:${real.trace}` };
  }
  process.stdout.write(`note: ${real}; using a generated 128 MiB image and a clustered 37 % trace instead\n`);
  const img = image(ctx, 128 * MiB);
  return { mem: img.path, pageSize: '4k', vcpus: 1, pattern: `trace:${clusteredTrace(ctx.dataDir, img.sizeBytes, 0.37)}` };
}

function kvmAvailable(mem: string): string | undefined {
  const r = spawnSync(EMULATOR_PATH, ['--backend', 'file', '--mem', mem, '--kvm', '--touch-pages', '1', '--json'], { encoding: 'utf8' });
  if (r.status === 0) return undefined;
  return r.status === 3 ? `KVM unavailable: ${r.stderr.trim()}` : `KVM probe failed (exit ${r.status}): ${r.stderr.trim()}`;
}

const FA_CURVE = [4096, 16384, 65536, 262144, 2 * MiB];

/**
 * Suites with a script of their own (they start servers, and have a matrix of their own), run from
 * here by name with --only or --full; each writes its committed suite (bench/results/NAME.json and
 * its fragments) itself, given this run's --runs.
 */
const SCRIPT_SUITES = [
  {
    name: 'remote',
    script: 'dist/bench/remote.js',
    what: 'issue 9: the real guest restored from a local directory, nginx (HTTP) and Ceph RGW (S3) through a link at 1 ms and 20 ms RTT (bench/README.md)',
  },
] as const;

const SCENARIOS: Scenario[] = [
  {
    name: 'smoke',
    what: 'sequential, 32 MiB generated image, 1 vCPU (keeps the suite from rotting; run by npm test)',
    tier: 'smoke',
    variants: [V.ours, V.ours4k, V.c4k, V.cPop, V.fileWarm, V.fileCold],
    prepare: (ctx) => ({ mem: image(ctx, 32 * MiB).path, pageSize: '4k', vcpus: 1, pattern: 'seq' }),
  },
  {
    name: 'sparse-real',
    what: 'sparse clustered working set: the real restore trace (12,201 faults, 37 % of 128 MiB), 1 vCPU',
    tier: 'default',
    variants: [
      V.ours,
      V.ours4k,
      V.c4k,
      V.cFa,
      V.cPop,
      V.fileWarm,
      V.fileCold,
      V.oursCold,
      V.oursPrefetch,
      V.oursPrefetchCold,
      V.oursChunked,
      V.oursChunkedPrefetch,
    ],
    prepare: sparseReal,
  },
  {
    name: 'trace-cost',
    what: 'serve --trace on and off on the real trace, 1 vCPU: default fault-around, and 4k (every page a fault: the worst case)',
    tier: 'default',
    variants: [V.ours, V.oursTrace, V.ours4k, V.ours4kTrace, V.ours4kWarm, V.ours4kTraceWarm],
    prepare: sparseReal,
  },
  {
    name: 'fault-around',
    what: 'the fault-around curve: ours with 4k..2m on the real trace, 1 vCPU',
    tier: 'default',
    variants: [...FA_CURVE.map(faVariant), { ...W.adaptive, name: 'ours-fa-adaptive' }],
    prepare: sparseReal,
  },
  {
    name: 'latency-random-256m',
    what: 'single-page fault latency: 16,384 random touches over 256 MiB, 1 vCPU',
    tier: 'default',
    variants: [V.ours4k, V.c4k, V.ours, V.cFa, V.fileWarm, V.fileCold],
    prepare: (ctx) => ({
      mem: image(ctx, 256 * MiB).path,
      pageSize: '4k',
      vcpus: 1,
      pattern: 'random',
      touchPages: ctx.quick ? 4096 : 16384,
    }),
  },
  {
    name: 'random-5pct-512m',
    what: 'random 5 % of 512 MiB (6,553 distinct pages, in random order), 1 vCPU: what fault-around costs a random guest',
    tier: 'default',
    variants: ADAPTIVE_VARIANTS,
    prepare: (ctx) => ({ mem: image(ctx, 512 * MiB).path, pageSize: '4k', vcpus: 1, pattern: 'random', touchPages: 6553 }),
  },
  {
    name: 'dense-seq-128m',
    what: 'every page of 128 MiB in order, 1 vCPU: what a growing window costs against the largest fixed one',
    tier: 'default',
    variants: ADAPTIVE_VARIANTS,
    prepare: (ctx) => ({ mem: image(ctx, 128 * MiB).path, pageSize: '4k', vcpus: 1, pattern: 'seq' }),
  },
  {
    name: 'sparse-1g',
    what: 'sparse clustered working set, generated: 15 % of 1 GiB in runs of 1-64 pages, 1 vCPU',
    tier: 'default',
    variants: [V.ours, V.cFa, V.cPop, V.fileWarm, V.fileCold, V.oursCold],
    prepare: (ctx) => {
      const img = image(ctx, GiB);
      return { mem: img.path, pageSize: '4k', vcpus: 1, pattern: `trace:${clusteredTrace(ctx.dataDir, img.sizeBytes, 0.15)}` };
    },
  },
  {
    name: 'seq-1g',
    what: 'sequential touch of every page of 1 GiB, 1 vCPU',
    tier: 'default',
    variants: [V.ours, V.cFa, V.cPop, V.fileWarm, V.fileCold],
    prepare: (ctx) => ({ mem: image(ctx, GiB).path, pageSize: '4k', vcpus: 1, pattern: 'seq' }),
  },
  {
    name: 'random-1g-4vcpu',
    what: 'random touches, 4 vCPU threads each on its quarter of 1 GiB, 8,192 touches each',
    tier: 'default',
    variants: [V.ours, V.ours4k, V.c4k, V.cFa, V.cPop, V.fileWarm, V.fileCold],
    prepare: (ctx) => ({ mem: image(ctx, GiB).path, pageSize: '4k', vcpus: 4, pattern: 'random', touchPages: ctx.quick ? 2048 : 8192 }),
  },
  {
    name: 'seq-128m-2m-pages',
    what: 'sequential, 128 MiB of 2 MiB hugetlbfs pages, 1 vCPU (File backend: not possible with hugetlbfs)',
    tier: 'default',
    hugePages: 64,
    deadlineMs: 20000,
    variants: [V.ours, V.c4k, V.cPop],
    prepare: (ctx) => ({ mem: image(ctx, 128 * MiB).path, pageSize: '2m', vcpus: 1, pattern: 'seq' }),
  },
  {
    name: 'kvm-sparse-real',
    what: 'the real trace replayed inside a KVM guest (EPT faults resolved by the kernel), 1 vCPU',
    tier: 'default',
    variants: [V.ours, V.ours4k, V.c4k, V.cFa, V.fileWarm, V.fileCold],
    prepare: (ctx) => {
      const w = sparseReal(ctx);
      const why = kvmAvailable(w.mem);
      return why ?? { ...w, kvm: true };
    },
  },
  {
    name: 'multi-vm',
    what: 'one handler process, 1 VM vs 8 VMs restored at once (64 MiB each, sequential): per-VM memory',
    tier: 'default',
    variants: [V.ours, { ...V.ours, name: 'ours-8vm', vms: 8 }],
    prepare: (ctx) => ({ mem: image(ctx, 64 * MiB).path, pageSize: '4k', vcpus: 1, pattern: 'seq' }),
  },
  {
    name: 'seq-2g',
    what: 'sequential touch of every page of 2 GiB, 1 vCPU',
    tier: 'full',
    runs: 3,
    variants: [V.ours, V.cFa, V.cPop, V.fileWarm, V.fileCold],
    prepare: (ctx) => ({ mem: image(ctx, 2 * GiB).path, pageSize: '4k', vcpus: 1, pattern: 'seq' }),
  },
];

// ---- figures ----
const FIGURES = [
  ['handshakeToDoneMs', 'done ms', 'handshake to workload done'],
  ['touchP50Us', 'lat p50 µs', 'first-touch latency p50, measured by the vCPU thread'],
  ['touchP99Us', 'lat p99 µs', 'first-touch latency p99'],
  ['faults', 'faults', 'faults the handler served'],
  ['faultsPerSec', 'faults/s', 'faults served per second of workload'],
  ['bytesPerFault', 'B/fault', 'bytes installed per fault'],
  ['installedPerTouch', 'inst/touch', 'pages installed (copied + zero) per page the workload touched'],
  ['ioctlsPerFault', 'ioctl/f', 'install ioctls per fault (ours)'],
  ['cpuUsPerFault', 'cpu µs/f', 'handler CPU per fault (user + system, all threads)'],
  ['handlerPeakAnonKiB', 'anon KiB', 'handler peak anonymous RSS (its own memory, no file cache)'],
  ['handlerPeakRssKiB', 'hwm KiB', 'handler VmHWM (incl. the file pages it mapped)'],
] as const satisfies readonly (readonly [keyof TrialResult, string, string])[];
type FigureKey = (typeof FIGURES)[number][0];

interface VariantSummary {
  variant: Variant;
  runs: number;
  failures: string[];
  figures: Record<FigureKey, Spread | null>;
  fileCachedPagesAfterDrop: number | null;
  trials: TrialResult[];
}

interface ScenarioResult {
  name: string;
  what: string;
  skipped?: string;
  workload?: Workload & { memOrigin: string };
  variants: VariantSummary[];
}

interface Ratio {
  name: string;
  scenario: string;
  figure: FigureKey;
  ours: string;
  base: string;
  /** ours median / base median */
  ratio: number;
  /** ours best over base worst .. ours worst over base best: where the noise puts it. */
  range: [number, number];
  target?: string;
}

function parseArgs(argv: string[]): {
  runs: number;
  quick: boolean;
  full: boolean;
  smoke: boolean;
  only?: string[];
  out?: string;
  suite?: string;
  dataDir: string;
} {
  const a = {
    runs: 5,
    quick: false,
    full: false,
    smoke: false,
    only: undefined as string[] | undefined,
    out: undefined as string | undefined,
    suite: undefined as string | undefined,
    dataDir: path.join(os.tmpdir(), 'fc-uffd-bench'),
  };
  let runsSet = false;
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${f} needs a value`);
      return v;
    };
    if (f === '--runs') {
      a.runs = Number(val());
      runsSet = true;
      if (!Number.isInteger(a.runs) || a.runs < 1) throw new Error('--runs must be a positive integer');
    } else if (f === '--quick') a.quick = true;
    else if (f === '--full') a.full = true;
    else if (f === '--smoke') a.smoke = true;
    else if (f === '--only') a.only = val().split(',');
    else if (f === '--out') a.out = val();
    else if (f === '--suite') {
      a.suite = val();
      if (!/^[a-z0-9-]+$/.test(a.suite)) throw new Error('--suite must be a name of [a-z0-9-]');
    } else if (f === '--data-dir') a.dataDir = val();
    else if (f === '--help') {
      process.stdout.write(
        'usage: node dist/bench/run.js [--runs N (5)] [--quick] [--full] [--smoke] [--only s1,s2] [--out FILE | --suite NAME] [--data-dir DIR]\n' +
          '--suite NAME: write bench/results/NAME.json and its markdown fragment NAME.md (committed; docs quote it between <!-- bench:NAME --> markers)\n' +
          `scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}\n` +
          `suites with a script of their own (with --only NAME, or --full):\n${SCRIPT_SUITES.map((s) => `  ${s.name}: ${s.what} (${s.script})\n`).join('')}`,
      );
      process.exit(0);
    } else throw new Error(`unknown flag ${f} (see --help)`);
  }
  if (a.quick && !runsSet) a.runs = 2;
  if (a.smoke && !runsSet) a.runs = 1;
  return a;
}

/**
 * Why variants asking for `--fault-around adaptive` cannot run (undefined: they can): the adaptive
 * window lands in the CLI after its policy (issue 11, phase 2), and until then `serve --help`
 * does not offer it.
 */
let adaptiveMissing: string | undefined | null = null;
function adaptiveUnsupported(): string | undefined {
  if (adaptiveMissing === null) {
    const help = spawnSync(process.execPath, [OUR_CLI, 'serve', '--help'], { encoding: 'utf8' }).stdout;
    // The --fault-around entry runs from its flag to the next option's.
    const entry = /--fault-around\b[\s\S]*?(?=\n\s+--|$)/.exec(help)?.[0] ?? '';
    adaptiveMissing = /adaptive/i.test(entry) ? undefined : '`fc-uffd serve --help` does not offer --fault-around adaptive yet';
  }
  return adaptiveMissing;
}

async function runScenario(s: Scenario, runs: number, ctx: Ctx, workDir: string): Promise<ScenarioResult> {
  const res: ScenarioResult = { name: s.name, what: s.what, variants: [] };
  if (s.variants.some((v) => v.faultAroundFlag === 'adaptive') && adaptiveUnsupported() !== undefined) {
    process.stdout.write(`  ${s.name}: variants with --fault-around adaptive skipped: ${adaptiveUnsupported()}\n`);
    s = { ...s, variants: s.variants.filter((v) => v.faultAroundFlag !== 'adaptive') };
  }
  const w = s.prepare(ctx);
  if (typeof w === 'string') {
    res.skipped = w;
    return res;
  }
  res.workload = { ...w, memOrigin: ctx.origins.get(w.mem) ?? w.mem };
  let huge: HugePageReservation | undefined;
  if (s.hugePages) {
    const r = reserveHugePages(s.hugePages);
    if (typeof r === 'string') {
      res.skipped = r;
      return res;
    }
    huge = r;
  }
  try {
    const trials = new Map<string, TrialResult[]>(s.variants.map((v) => [v.name, []]));
    warmPageCache(w.mem);
    let cold = false;
    const t0 = Date.now();
    for (let r = 0; r < (s.runs ?? runs); r++) {
      // Rotate the order every run so that no variant always runs right after a cold one, or first.
      const order = s.variants.map((_, i) => s.variants[(i + r) % s.variants.length]!);
      for (const v of order) {
        // Other processes on the machine may take or un-reserve huge pages meanwhile: top up before each trial.
        const short = huge?.topUp();
        if (short !== undefined) {
          trials.get(v.name)!.push({ ...failedTrial(), error: short });
          continue;
        }
        if (cold && v.cache === 'warm') warmPageCache(w.mem);
        cold = v.cache === 'cold';
        const t = await runTrial({ workload: w, variant: v, dir: workDir, deadlineMs: s.deadlineMs ?? 120000 });
        trials.get(v.name)!.push(t);
        if (!t.ok) process.stdout.write(`  ${s.name}/${v.name} run ${r + 1}: FAILED ${t.error ?? '(verification)'}\n`);
      }
    }
    process.stdout.write(
      `  ${s.name}: ${s.variants.length} variants x ${s.runs ?? runs} runs in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
    );
    for (const v of s.variants) {
      const ts = trials.get(v.name)!;
      const good = ts.filter((t) => t.ok);
      const figures = Object.fromEntries(FIGURES.map(([k]) => [k, spread(good.map((t) => t[k] ?? NaN))])) as Record<
        FigureKey,
        Spread | null
      >;
      res.variants.push({
        variant: v,
        runs: ts.length,
        failures: ts.filter((t) => !t.ok).map((t) => t.error ?? 'verification failed'),
        figures,
        fileCachedPagesAfterDrop:
          Math.max(...good.map((t) => t.fileCachedPagesAfterDrop ?? -1)) >= 0
            ? Math.max(...good.map((t) => t.fileCachedPagesAfterDrop ?? -1))
            : null,
        trials: ts,
      });
    }
  } finally {
    // By what this run added, from the pool as it is now: another run's reservation survives.
    huge?.release();
  }
  return res;
}

function printScenario(r: ScenarioResult): void {
  process.stdout.write(`\n== ${r.name}: ${r.what}\n`);
  if (r.skipped) {
    process.stdout.write(`   SKIPPED: ${r.skipped}\n`);
    return;
  }
  const w = r.workload!;
  process.stdout.write(
    `   image: ${w.memOrigin}; pattern ${w.pattern.startsWith('trace:') ? `trace ${path.basename(w.pattern.slice(6))}` : w.pattern}, ${w.pageSize} pages, ${w.vcpus} vCPU${w.kvm ? ', KVM guest' : ''}\n`,
  );
  process.stdout.write("   cells: median [min-max] over runs; lat p99 is each run's p99, summarised the same way\n");
  const cols = FIGURES.filter(([k]) => r.variants.some((v) => v.figures[k] !== null));
  const head = ['variant', ...cols.map(([, h]) => h)];
  const rows = r.variants.map((v) => [
    `${v.variant.name}${v.failures.length ? ` (${v.failures.length} failed)` : ''}`,
    ...cols.map(([k]) => {
      const s = v.figures[k];
      return s ? `${fmt(s.median)} [${fmt(s.min)}-${fmt(s.max)}]` : '-';
    }),
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => `   ${cells.map((c, i) => c.padEnd(width[i]!)).join('  ')}\n`;
  process.stdout.write(line(head));
  for (const row of rows) process.stdout.write(line(row));
  for (const v of r.variants)
    if (v.fileCachedPagesAfterDrop !== null)
      process.stdout.write(`   ${v.variant.name}: at most ${v.fileCachedPagesAfterDrop} file pages still cached after the drop\n`);
}

function ratios(results: ScenarioResult[]): Ratio[] {
  const out: Ratio[] = [];
  const get = (r: ScenarioResult, name: string): VariantSummary | undefined => r.variants.find((v) => v.variant.name === name);
  const add = (r: ScenarioResult, name: string, figure: FigureKey, ours: string, base: string, target?: string): void => {
    const a = get(r, ours)?.figures[figure];
    const b = get(r, base)?.figures[figure];
    if (!a || !b || !(b.median > 0)) return;
    out.push({
      name,
      scenario: r.name,
      figure,
      ours,
      base,
      ratio: a.median / b.median,
      range: [a.min / b.max, a.max / b.min],
      ...(target ? { target } : {}),
    });
  };
  for (const r of results) {
    if (r.skipped) continue;
    add(
      r,
      'latency p50: ours (4k) / C handler (4k)',
      'touchP50Us',
      'ours-4k',
      'c-4k',
      r.name.startsWith('latency') ? '<= 1.05' : undefined,
    );
    add(r, 'latency p99: ours (4k) / C handler (4k)', 'touchP99Us', 'ours-4k', 'c-4k', r.name.startsWith('latency') ? '<= 1.3' : undefined);
    add(r, 'workload time: ours / C handler, same fault-around', 'handshakeToDoneMs', 'ours', 'c-fa');
    add(r, 'workload time: ours / File backend, warm cache', 'handshakeToDoneMs', 'ours', 'file-warm');
    add(
      r,
      'workload time: ours / File backend, cold cache',
      'handshakeToDoneMs',
      'ours',
      'file-cold',
      r.name.startsWith('sparse') ? '<= 1.0' : undefined,
    );
    add(
      r,
      'workload time: ours, cold / File backend, cold',
      'handshakeToDoneMs',
      'ours-cold',
      'file-cold',
      r.name.startsWith('sparse') ? '<= 1.0' : undefined,
    );
    add(r, 'workload time: ours / populate everything (C)', 'handshakeToDoneMs', 'ours', 'c-populate');
    // Working-set prefetch (issue 6): recorded on one restore, replayed on these.
    const sparse = r.name.startsWith('sparse');
    add(r, 'prefetch: workload time, ours-prefetch / ours on demand (default fault-around)', 'handshakeToDoneMs', 'ours-prefetch', 'ours');
    add(
      r,
      'prefetch: workload time, ours-prefetch / ours page by page (4k; REAP: 3.7x)',
      'handshakeToDoneMs',
      'ours-prefetch',
      'ours-4k',
      sparse ? '<= 0.27' : undefined,
    );
    add(
      r,
      'prefetch: workload time, ours-prefetch / File backend, warm',
      'handshakeToDoneMs',
      'ours-prefetch',
      'file-warm',
      sparse ? '<= 1.5' : undefined,
    );
    add(
      r,
      'prefetch: workload time, ours-prefetch cold / File backend, cold',
      'handshakeToDoneMs',
      'ours-prefetch-cold',
      'file-cold',
      sparse ? '<= 1.0' : undefined,
    );
    add(r, 'prefetch: faults, ours-prefetch / ours on demand', 'faults', 'ours-prefetch', 'ours', sparse ? '<= 0.1' : undefined);
    add(r, 'prefetch: faults, ours-prefetch / ours page by page', 'faults', 'ours-prefetch', 'ours-4k');
    // Restore timeline (issue 13): must be cheap enough to leave on.
    add(
      r,
      'trace: workload time, ours --trace / ours',
      'handshakeToDoneMs',
      'ours-trace',
      'ours',
      r.name === 'trace-cost' ? '<= 1.03' : undefined,
    );
    add(
      r,
      'trace: workload time, ours-4k --trace / ours-4k',
      'handshakeToDoneMs',
      'ours-4k-trace',
      'ours-4k',
      r.name === 'trace-cost' ? '<= 1.03' : undefined,
    );
    add(r, 'trace: handler CPU per fault, ours-4k --trace / ours-4k', 'cpuUsPerFault', 'ours-4k-trace', 'ours-4k');
    add(
      r,
      'trace, warm handler: workload time, ours-4k --trace / ours-4k',
      'handshakeToDoneMs',
      'ours-4k-trace-warm',
      'ours-4k-warm',
      r.name === 'trace-cost' ? '<= 1.03' : undefined,
    );
    add(r, 'trace, warm handler: handler CPU per fault, ours-4k --trace / ours-4k', 'cpuUsPerFault', 'ours-4k-trace-warm', 'ours-4k-warm');
    add(r, 'chunked: workload time, ours-chunked / ours (memory file)', 'handshakeToDoneMs', 'ours-chunked', 'ours');
    add(r, 'chunked: workload time, ours-chunked-prefetch / ours-chunked', 'handshakeToDoneMs', 'ours-chunked-prefetch', 'ours-chunked');
    // Issue 11: the adaptive window against fixed ones (targets on the scenarios they are judged on).
    const rnd = r.name === 'random-5pct-512m';
    add(
      r,
      'adaptive: installed per touch / page by page (= touched)',
      'installedPerTouch',
      'adaptive',
      'fixed-4k',
      rnd ? '<= 1.5' : undefined,
    );
    add(r, 'adaptive: latency p99 / C handler (4k)', 'touchP99Us', 'adaptive', 'c-handler-4k', rnd ? '<= 1.3' : undefined);
    add(r, 'adaptive: workload time / page by page (fixed-4k)', 'handshakeToDoneMs', 'adaptive', 'fixed-4k', rnd ? '<= 1.0' : undefined);
    add(
      r,
      'adaptive: workload time / fixed-2m',
      'handshakeToDoneMs',
      'adaptive',
      'fixed-2m',
      r.name === 'dense-seq-128m' ? '<= 1.0' : undefined,
    );
    add(r, 'adaptive: workload time / fixed-256k', 'handshakeToDoneMs', 'adaptive', 'fixed-256k');
    // The same targets on a handler that served two VMs before: what V8's warm-up costs a fresh process's first VM.
    add(
      r,
      'adaptive, warm handler: latency p99 / C handler (4k)',
      'touchP99Us',
      'adaptive-warm',
      'c-handler-4k',
      rnd ? '<= 1.3' : undefined,
    );
    add(
      r,
      'adaptive, warm handler: workload time / page by page (fixed-4k, warm)',
      'handshakeToDoneMs',
      'adaptive-warm',
      'fixed-4k-warm',
      rnd ? '<= 1.0' : undefined,
    );
    add(r, 'fixed-4k, warm handler: latency p99 / C handler (4k)', 'touchP99Us', 'fixed-4k-warm', 'c-handler-4k');
    add(r, 'adaptive: workload time / fixed 256k', 'handshakeToDoneMs', 'ours-fa-adaptive', 'ours-fa-256k', '<= 1.05');
    add(r, 'adaptive: installed per touch / page by page (= touched)', 'installedPerTouch', 'ours-fa-adaptive', 'ours-fa-4k', '<= 1.15');
    // Baselines the targets stand on: what fixed windows cost the same workload.
    add(r, 'fixed-256k: installed per touch / page by page', 'installedPerTouch', 'fixed-256k', 'fixed-4k');
    add(r, 'fixed-256k: workload time / page by page', 'handshakeToDoneMs', 'fixed-256k', 'fixed-4k');
    add(r, 'fixed-256k: latency p99 / C handler (4k)', 'touchP99Us', 'fixed-256k', 'c-handler-4k');
    add(r, 'fixed-4k: latency p99 / C handler (4k)', 'touchP99Us', 'fixed-4k', 'c-handler-4k');
    add(r, 'fixed-2m: workload time / fixed-256k', 'handshakeToDoneMs', 'fixed-2m', 'fixed-256k');
    if (r.name === 'seq-128m-2m-pages') add(r, 'workload time: ours / C handler (2 MiB pages)', 'handshakeToDoneMs', 'ours', 'c-4k');
  }
  return out;
}

function memoryVerdict(results: ScenarioResult[]): { perProcessAnonMiB: number | null; perVmAnonMiB: number | null } {
  const mv = results.find((r) => r.name === 'multi-vm' && !r.skipped);
  const one = mv?.variants.find((v) => v.variant.name === 'ours')?.figures.handlerPeakAnonKiB?.median;
  const eight = mv?.variants.find((v) => v.variant.name === 'ours-8vm')?.figures.handlerPeakAnonKiB?.median;
  // The target excludes caches: the chunked variants' anonymous memory is mostly decompressed chunks.
  const all = results
    .flatMap((r) =>
      r.variants
        .filter((v) => v.variant.handler === 'ours' && (v.variant.vms ?? 1) === 1 && !v.variant.chunked)
        .map((v) => v.figures.handlerPeakAnonKiB?.median ?? NaN),
    )
    .filter(Number.isFinite);
  return {
    perProcessAnonMiB: all.length ? Math.max(...all) / 1024 : null,
    perVmAnonMiB: one !== undefined && eight !== undefined ? (eight - one) / 7 / 1024 : null,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  for (const [what, p] of [
    ['our CLI (npm run build)', OUR_CLI],
    ['the emulator (make -C tools)', EMULATOR_PATH],
    ['the C handler (make -C tools)', C_HANDLER],
  ] as const)
    if (!fs.existsSync(p)) throw new Error(`${what} is missing: ${p}`);
  fs.mkdirSync(args.dataDir, { recursive: true });
  const ctx: Ctx = {
    dataDir: args.dataDir,
    fixtureDir: path.resolve(ROOT, '../shared/fixtures/real-guest-128m'),
    quick: args.quick,
    origins: new Map(),
  };
  const chosen = SCENARIOS.filter((s) =>
    args.only ? args.only.includes(s.name) : args.smoke ? s.tier === 'smoke' : s.tier === 'default' || (args.full && s.tier === 'full'),
  );
  if (args.only)
    for (const n of args.only)
      if (!SCENARIOS.some((s) => s.name === n) && !SCRIPT_SUITES.some((s) => s.name === n))
        throw new Error(`no scenario ${n} (see --help)`);
  const scripted = SCRIPT_SUITES.filter((s) => (args.only ? args.only.includes(s.name) : args.full));
  if (chosen.length === 0 && (args.suite !== undefined || args.out !== undefined))
    throw new Error(
      `--suite and --out are for the emulator scenarios; ${scripted.map((s) => `${s.name} writes bench/results/${s.name}.json`).join(', ')} itself`,
    );
  if (chosen.length > 0) await runEmulatorScenarios(chosen, args, ctx);
  for (const s of scripted) {
    process.stdout.write(`running ${s.name}: node ${s.script} --runs ${args.runs}\n`);
    const code = await runScript(s.script, ['--runs', String(args.runs)]);
    if (code !== 0) {
      process.stderr.write(`bench: ${s.name} failed (exit ${code})\n`);
      process.exit(code);
    }
  }
}

/**
 * Runs a suite's script and resolves with its exit code. Ctrl-C reaches it with the terminal's
 * process group, and a SIGTERM here is passed on: either way it stops its servers and link before
 * it exits (130 / 143), and this process waits for that rather than die first.
 */
function runScript(script: string, argv: string[]): Promise<number> {
  const child = spawn(process.execPath, [path.join(ROOT, script), ...argv], { stdio: 'inherit' });
  const onInt = (): void => undefined;
  const onTerm = (): void => void child.kill('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0));
    }),
  );
}

async function runEmulatorScenarios(chosen: Scenario[], args: ReturnType<typeof parseArgs>, ctx: Ctx): Promise<void> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-bench-run-'));
  const started = Date.now();
  const command = `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim();
  const loadAvg1 = os.loadavg()[0]!;
  process.stdout.write(
    `fc-uffd bench: ${chosen.length} scenarios, ${args.runs} runs each, fresh processes per trial; default fault-around ${FA / 1024} KiB; ${os.cpus().length} CPUs\n`,
  );
  const results: ScenarioResult[] = [];
  try {
    for (const s of chosen) {
      process.stdout.write(`running ${s.name}...\n`);
      results.push(await runScenario(s, args.runs, ctx, workDir));
    }
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  for (const r of results) printScenario(r);
  const rs = ratios(results);
  const mem = memoryVerdict(results);
  process.stdout.write('\n== ratios (median of ours / median of baseline; [range] = best..worst pairing of runs)\n');
  for (const q of rs)
    process.stdout.write(
      `   ${q.scenario.padEnd(20)} ${q.name.padEnd(52)} ${q.ratio.toFixed(2)}x [${q.range[0].toFixed(2)}-${q.range[1].toFixed(2)}]${q.target ? `  target ${q.target}: ${evalTarget(q) ? 'met' : 'MISSED'}` : ''}\n`,
    );
  if (mem.perProcessAnonMiB !== null)
    process.stdout.write(
      `   handler anonymous RSS, largest median over scenarios: ${mem.perProcessAnonMiB.toFixed(1)} MiB per process (target < 64)\n`,
    );
  if (mem.perVmAnonMiB !== null)
    process.stdout.write(`   handler anonymous RSS per extra VM (8 VMs vs 1): ${mem.perVmAnonMiB.toFixed(2)} MiB (target < 1)\n`);
  const elapsedS = (Date.now() - started) / 1000;
  const doc = {
    version: 1,
    startedAt: new Date(started).toISOString(),
    elapsedS,
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release(), node: process.version, memTotalBytes: os.totalmem() },
    settings: {
      runs: args.runs,
      quick: args.quick,
      full: args.full,
      smoke: args.smoke,
      only: args.only ?? null,
      defaultFaultAroundBytes: FA,
    },
    scenarios: results,
    ratios: rs.map((q) => ({ ...q, met: q.target ? evalTarget(q) : null })),
    memory: mem,
  };
  const out = args.suite
    ? path.join(ROOT, 'bench/results', `${args.suite}.json`)
    : (args.out ?? path.join(ROOT, 'bench/results', `${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const suite: SuiteDoc & typeof doc = { ...doc, command, loadAvg1, ...(args.suite ? { earlier: earlierRuns(out, command) } : {}) };
  fs.writeFileSync(out, `${JSON.stringify(suite, null, 1)}\n`);
  if (args.suite) fs.writeFileSync(out.replace(/\.json$/, '.md'), renderFragment(suite));
  if (args.suite)
    for (const [part, text] of Object.entries(faultPathParts(args.suite, suite)))
      fs.writeFileSync(out.replace(/\.json$/, `.${part}.md`), `${text}\n`);
  process.stdout.write(`\nresults: ${out}${args.suite ? ` and ${out.replace(/\.json$/, '.md')}` : ''} (${elapsedS.toFixed(0)} s)\n`);
  if (results.some((r) => r.variants.some((v) => v.failures.length > 0))) process.exitCode = 1;
}

/**
 * The ratios of the suite's previous runs with the same command (kept: the last two), so that its
 * fragment shows this run next to the earlier ones on a noisy machine; another command starts afresh.
 */
function earlierRuns(file: string, command: string): NonNullable<SuiteDoc['earlier']> {
  if (!fs.existsSync(file)) return [];
  const prev = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<SuiteDoc>;
  if (prev.command !== command || !prev.ratios || !prev.startedAt) return [];
  return [
    ...(prev.earlier ?? []),
    { startedAt: prev.startedAt, ...(prev.loadAvg1 !== undefined ? { loadAvg1: prev.loadAvg1 } : {}), ratios: prev.ratios },
  ].slice(-2);
}

function evalTarget(q: Ratio): boolean {
  const m = /^<= ([\d.]+)$/.exec(q.target ?? '');
  return m ? q.ratio <= Number(m[1]) : false;
}

main().catch((caught: unknown) => {
  const err = caught as Error;
  process.stderr.write(`bench: ${err.message}\n`);
  process.exitCode = 2;
});
