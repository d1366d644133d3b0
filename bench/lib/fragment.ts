// The markdown fragment of a bench suite (bench/results/<suite>.md), generated from its JSON only:
// docs quote it between `<!-- bench:<suite> -->` markers (bench/render-docs.ts), never retyped.
import { fmt, type Spread } from './stats.js';

/** The parts of bench/run.ts's results document a fragment reads. */
export interface SuiteDoc {
  startedAt: string;
  command: string;
  host: { cpus: number; model?: string | undefined; kernel: string; node: string };
  settings: { runs: number };
  scenarios: Array<{
    name: string;
    what: string;
    skipped?: string;
    variants: Array<{ variant: { name: string }; runs: number; failures: string[]; figures: Record<string, Spread | null> }>;
  }>;
  ratios: RunRatio[];
  /** Earlier runs of the same suite and command (oldest first): their ratios, to show the noise. */
  earlier?: Array<{ startedAt: string; loadAvg1?: number; ratios: RunRatio[] }>;
  /** 1-minute load average when the run started (the machine is shared). */
  loadAvg1?: number;
}

export interface RunRatio {
  name: string;
  scenario: string;
  ours: string;
  base: string;
  ratio: number;
  range: [number, number];
  target?: string;
  met: boolean | null;
}

const COLUMNS: Array<[key: string, head: string]> = [
  ['handshakeToDoneMs', 'done ms'],
  ['touchP99Us', 'lat p99 µs'],
  ['faults', 'faults'],
  ['installedPerTouch', 'installed / touched'],
  ['ioctlsPerFault', 'ioctls / fault'],
];

function cell(s: Spread | null | undefined): string {
  return s ? `${fmt(s.median)} [${fmt(s.min)}-${fmt(s.max)}]` : '-';
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

/** Markdown: per scenario a table of medians [min-max], then the targeted ratios of this run and the earlier ones. */
export function renderFragment(doc: SuiteDoc): string {
  const out: string[] = [];
  const date = doc.startedAt.slice(0, 16).replace('T', ' ');
  out.push(
    `Measured ${date} UTC with \`${doc.command}\` (${doc.settings.runs} runs per variant, medians [min-max]; ${doc.host.cpus} CPUs, shared${doc.loadAvg1 !== undefined ? `, load ${doc.loadAvg1.toFixed(1)} at start` : ''}; Node ${doc.host.node}, Linux ${doc.host.kernel}).`,
  );
  for (const s of doc.scenarios) {
    out.push('', `**${s.name}**: ${s.what}`, '');
    if (s.skipped) {
      out.push(`Skipped: ${s.skipped}`);
      continue;
    }
    out.push(row(['variant', ...COLUMNS.map(([, h]) => h)]), row(['---', ...COLUMNS.map(() => '---')]));
    for (const v of s.variants)
      out.push(
        row([
          `${v.variant.name}${v.failures.length ? ` (${v.failures.length} of ${v.runs} failed)` : ''}`,
          ...COLUMNS.map(([k]) => cell(v.figures[k])),
        ]),
      );
  }
  const targeted = doc.ratios.filter((r) => r.target !== undefined);
  const runs = [...(doc.earlier ?? []), { startedAt: doc.startedAt, loadAvg1: doc.loadAvg1, ratios: doc.ratios }];
  out.push('', 'Targets (median ratio [best-worst pairing of runs]):', '');
  out.push(
    row(['scenario', 'ratio', 'target', ...runs.map((r, i) => `run ${i + 1} (${r.startedAt.slice(11, 16)})`)]),
    row(['---', '---', '---', ...runs.map(() => '---')]),
  );
  for (const t of targeted) {
    const cells = runs.map((r) => {
      const q = r.ratios.find((x) => x.scenario === t.scenario && x.name === t.name && x.ours === t.ours && x.base === t.base);
      return q ? `${q.ratio.toFixed(2)}x [${q.range[0].toFixed(2)}-${q.range[1].toFixed(2)}] ${q.met ? 'met' : '**missed**'}` : '-';
    });
    out.push(row([t.scenario, `${t.name.replace(/^adaptive: /, '')} (${t.ours} / ${t.base})`, t.target!, ...cells]));
  }
  return `${out.join('\n')}\n`;
}
