// The fault-path suite's committed results (bench/run.ts): the JSON document it builds, and the
// markdown generated from it — the whole run (<suite>.md), one fragment per scenario
// (<suite>.<scenario>.md) and the memory verdict (<suite>.memory.md).
import { fmt } from './stats.js';
import { mdTable, writeResults, type WrittenResults } from './results.js';

interface Cell {
  median: number;
  min: number;
  max: number;
}

interface VariantRow {
  variant: { name: string };
  runs: number;
  failures: string[];
  figures: Partial<Record<string, Cell | null>>;
}

interface ScenarioRow {
  name: string;
  what: string;
  skipped?: string;
  workload?: { memOrigin: string; pattern: string; pageSize: string; vcpus: number; kvm?: boolean };
  variants: VariantRow[];
}

interface RatioRow {
  name: string;
  scenario: string;
  ratio: number;
  range: [number, number];
  target?: string;
  met: boolean | null;
}

export interface FaultpathDoc {
  startedAt: string;
  settings: { runs: number; quick: boolean };
  scenarios: ScenarioRow[];
  ratios: RatioRow[];
  memory: { perProcessAnonMiB: number | null; perVmAnonMiB: number | null };
}

/** The columns of a scenario table: figure key in the JSON, header. */
const COLUMNS = [
  ['handshakeToDoneMs', 'done ms'],
  ['touchP50Us', 'lat p50 µs'],
  ['touchP99Us', 'lat p99 µs'],
  ['faults', 'faults'],
  ['bytesPerFault', 'B/fault'],
  ['installedPerTouch', 'inst/touch'],
  ['cpuUsPerFault', 'cpu µs/fault'],
  ['handlerPeakAnonKiB', 'anon KiB'],
] as const;

function scenarioMarkdown(s: ScenarioRow, ratios: RatioRow[], runs: number): string {
  const title = `**${s.name}**: ${s.what}`;
  if (s.skipped) return `${title}\n\nSkipped: ${s.skipped}`;
  const w = s.workload!;
  const pattern = w.pattern.startsWith('trace:') ? 'a recorded fault trace' : w.pattern;
  const cols = COLUMNS.filter(([k]) => s.variants.some((v) => v.figures[k]));
  const rows = s.variants.map((v) => [
    `${v.variant.name}${v.failures.length ? ` (${v.failures.length} of ${v.runs} failed)` : ''}`,
    ...cols.map(([k]) => {
      const c = v.figures[k];
      return c ? `${fmt(c.median)} [${fmt(c.min)}–${fmt(c.max)}]` : '-';
    }),
  ]);
  const parts = [
    title,
    `Image: ${w.memOrigin}; ${pattern}, ${w.pageSize} pages, ${w.vcpus} vCPU${w.kvm ? ', KVM guest' : ''}. Cells: median [min–max] over ${runs} runs.`,
    mdTable(['variant', ...cols.map(([, h]) => h)], rows),
  ];
  const mine = ratios.filter((q) => q.scenario === s.name);
  if (mine.length)
    parts.push(
      mdTable(
        ['ratio (median ours / median baseline)', 'ratio', 'range', 'target'],
        mine.map((q) => [q.name, `${q.ratio.toFixed(2)}x`, `${q.range[0].toFixed(2)}–${q.range[1].toFixed(2)}`, q.target ? `${q.target}: ${q.met ? 'met' : 'missed'}` : '']),
      ),
    );
  return parts.join('\n\n');
}

function memoryMarkdown(m: FaultpathDoc['memory']): string {
  const lines = [];
  if (m.perProcessAnonMiB !== null) lines.push(`- Handler anonymous RSS, largest median over the scenarios: **${m.perProcessAnonMiB.toFixed(1)} MiB** per process (target < 64 MiB).`);
  if (m.perVmAnonMiB !== null) lines.push(`- Anonymous RSS per extra VM (multi-vm: 8 VMs vs 1 in one process): **${m.perVmAnonMiB.toFixed(2)} MiB** (target < 1 MiB).`);
  return lines.length ? lines.join('\n') : 'No memory figures in this run (the multi-vm scenario did not run).';
}

/** Writes the suite's JSON and markdown; `suite` is `faultpath` for a whole run, the scenario's name for `--only`. */
export function writeFaultpathResults(suite: string, doc: FaultpathDoc): WrittenResults {
  const runs = doc.settings.runs;
  const header = `Fault-path benchmark${doc.settings.quick ? ' (--quick: fewer runs and touches)' : ''}, run ${doc.startedAt.slice(0, 16).replace('T', ' ')} UTC.`;
  const sections = doc.scenarios.map((s) => scenarioMarkdown(s, doc.ratios, runs));
  const whole = [header, ...sections, '**Memory**', memoryMarkdown(doc.memory)].join('\n\n');
  const parts: Record<string, string> = {};
  if (doc.scenarios.length > 1) {
    doc.scenarios.forEach((s, i) => (parts[s.name] = sections[i]!));
    parts.memory = memoryMarkdown(doc.memory);
  }
  return writeResults(suite, doc, whole, parts);
}
