// Small fragments of a bench/run.ts suite (bench/results/<suite>.<part>.md) that README.md and the docs
// quote on their own: each holds exactly the figures one paragraph of prose needs, generated from the
// suite's JSON. Parts exist only for the fault-path scenarios a run included (the adaptive suite has none).
import { fmt, type Spread } from './stats.js';
import type { RunRatio } from './fragment.js';

/** The parts of bench/run.ts's results document these fragments read. */
export interface FaultPathDoc {
  startedAt: string;
  command: string;
  loadAvg1?: number;
  settings: { runs: number };
  scenarios: Array<{
    name: string;
    skipped?: string;
    variants: Array<{ variant: { name: string }; figures: Record<string, Spread | null> }>;
  }>;
  ratios: RunRatio[];
  memory: { perProcessAnonMiB: number | null; perVmAnonMiB: number | null };
}

/** Scenarios whose figures the fault-path parts report (the others belong to their own suites). */
export const FAULT_PATH_SCENARIOS = [
  'sparse-real',
  'latency-random-256m',
  'sparse-1g',
  'seq-1g',
  'random-1g-4vcpu',
  'seq-128m-2m-pages',
  'kvm-sparse-real',
  'multi-vm',
  'seq-2g',
];

const TABLE_COLUMNS: Array<[key: string, head: string]> = [
  ['handshakeToDoneMs', 'done ms'],
  ['faults', 'faults'],
  ['touchP50Us', 'lat p50 µs'],
  ['touchP99Us', 'lat p99 µs'],
  ['cpuUsPerFault', 'cpu µs/f'],
  ['handlerPeakAnonKiB', 'anon KiB'],
];

const row = (cells: string[]): string => `| ${cells.join(' | ')} |`;
const x = (r: number): string => `${r.toFixed(2)}x`;

function provenance(suite: string, doc: FaultPathDoc): string {
  const load = doc.loadAvg1 !== undefined ? `, load ${doc.loadAvg1.toFixed(1)} at start on a shared machine` : '';
  return `<sub>From \`bench/results/${suite}.json\` (suite \`${suite}\`, its command there and in bench/README.md), ${doc.startedAt.slice(0, 16).replace('T', ' ')} UTC, medians of ${doc.settings.runs} runs${load}.</sub>`;
}

export function faultPathParts(suite: string, doc: FaultPathDoc): Record<string, string> {
  const present = doc.scenarios.filter((s) => FAULT_PATH_SCENARIOS.includes(s.name));
  if (present.length === 0) return {};
  const fig = (scenario: string, variant: string, key: string): Spread | null | undefined =>
    doc.scenarios.find((s) => s.name === scenario && !s.skipped)?.variants.find((v) => v.variant.name === variant)?.figures[key];
  const ratio = (scenario: string, ours: string, base: string, name?: string): RunRatio | undefined =>
    doc.ratios.find(
      (r) => r.scenario === scenario && r.ours === ours && r.base === base && (name === undefined || r.name.startsWith(name)),
    );
  const parts: Record<string, string> = {};
  const foot = provenance(suite, doc);

  const tables: string[] = [];
  for (const s of present) {
    if (s.skipped) {
      tables.push(`**${s.name}**: skipped: ${s.skipped}`);
      continue;
    }
    const lines = [row(['variant', ...TABLE_COLUMNS.map(([, h]) => h)]), row(['---', ...TABLE_COLUMNS.map(() => '---')])];
    for (const v of s.variants)
      lines.push(
        row([
          v.variant.name,
          ...TABLE_COLUMNS.map(([k], i) => {
            const f = v.figures[k];
            if (!f) return '-';
            return i === 0 ? `${fmt(f.median)} [${fmt(f.min)}-${fmt(f.max)}]` : fmt(f.median);
          }),
        ]),
      );
    tables.push(`**${s.name}**\n\n${lines.join('\n')}`);
  }
  parts.tables = `${tables.join('\n\n')}\n\n${foot}`;

  const rs = doc.ratios.filter((r) => FAULT_PATH_SCENARIOS.includes(r.scenario));
  if (rs.length)
    parts.ratios = [
      row(['scenario', 'ratio (median of ours / median of baseline)', 'value [range]', 'target']),
      row(['---', '---', '---', '---']),
      ...rs.map((r) =>
        row([
          r.scenario,
          r.name,
          `${x(r.ratio)} [${r.range[0].toFixed(2)}-${r.range[1].toFixed(2)}]`,
          r.target ? `${r.target} ${r.met ? 'met' : 'MISSED'}` : '',
        ]),
      ),
      '',
      foot,
    ].join('\n');

  const pf4k = ratio('sparse-real', 'ours-prefetch', 'ours-4k', 'prefetch: workload');
  const pfWarm = ratio('sparse-real', 'ours-prefetch', 'file-warm');
  const pfCold = ratio('sparse-real', 'ours-prefetch-cold', 'file-cold');
  const faults = (v: string): string => {
    const m = fig('sparse-real', v, 'faults')?.median;
    return m === undefined ? '-' : Math.round(m).toLocaleString('en-US');
  };
  const pfFaults = ratio('sparse-real', 'ours-prefetch', 'ours', 'prefetch: faults');
  const target = (r: RunRatio | undefined): string => (r?.target ? ` (target ${r.target}: ${r.met ? 'met' : 'MISSED'})` : '');
  if (pf4k && pfWarm && pfCold)
    parts.prefetch = `Working-set prefetch on the real restore trace: ${x(pf4k.ratio)} the workload time of page-by-page on-demand serving${target(pf4k)}, ${x(pfWarm.ratio)} Firecracker's \`File\` backend with a warm page cache${target(pfWarm)} and ${x(pfCold.ratio)} with both cold${target(pfCold)}; faults ${faults('ours')} -> ${faults('ours-prefetch')} against on-demand serving with the same fault-around${target(pfFaults)}, ${faults('ours-4k')} -> ${faults('ours-prefetch')} against page by page.\n\n${foot}`;

  const { perProcessAnonMiB, perVmAnonMiB } = doc.memory;
  if (perVmAnonMiB !== null && perProcessAnonMiB !== null)
    parts.memory = `Handler anonymous RSS: ${perProcessAnonMiB.toFixed(1)} MiB per process (largest median over the scenarios of this run; target < 64: ${perProcessAnonMiB < 64 ? 'met' : 'MISSED'}), ${perVmAnonMiB.toFixed(2)} MiB per extra VM (\`multi-vm\`: 8 VMs at once against 1; target < 1: ${perVmAnonMiB < 1 ? 'met' : 'MISSED'}).\n\n${foot}`;

  const lines: string[] = [];
  for (const scenario of ['latency-random-256m', 'sparse-real']) {
    const p50 = ratio(scenario, 'ours-4k', 'c-4k', 'latency p50');
    const p99 = ratio(scenario, 'ours-4k', 'c-4k', 'latency p99');
    const cpu = (v: string): string => fmt(fig(scenario, v, 'cpuUsPerFault')?.median);
    if (p50 && p99)
      lines.push(
        `- \`${scenario}\`, page by page (ours-4k / c-4k): latency p50 ${x(p50.ratio)}, p99 ${x(p99.ratio)}; handler CPU ${cpu('ours-4k')} vs ${cpu('c-4k')} µs per fault.`,
      );
    const fa = ratio(scenario, 'ours', 'c-fa');
    const cpuOurs = fig(scenario, 'ours', 'cpuUsPerFault')?.median;
    const cpuC = fig(scenario, 'c-fa', 'cpuUsPerFault')?.median;
    if (fa && cpuOurs !== undefined && cpuC !== undefined)
      lines.push(
        `- \`${scenario}\`, same fault-around (ours / c-fa): workload time ${x(fa.ratio)}; handler CPU ${fmt(cpuOurs)} vs ${fmt(cpuC)} µs per fault (${x(cpuOurs / cpuC)}).`,
      );
  }
  if (lines.length) parts['vs-c'] = `Our handler against the C baseline, same run:\n\n${lines.join('\n')}\n\n${foot}`;
  return parts;
}
