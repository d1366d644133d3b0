// Benchmark results have one source: a suite writes bench/results/<suite>.json (committed) and the
// markdown fragments generated from that JSON; README.md and docs/ quote fragments only between
// `<!-- bench:<name> -->` markers, copied in by tools/render-docs.ts (never retyped).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../../src/atomic-write.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const RESULTS_DIR = path.join(ROOT, 'bench/results');

const SUITE_NAME = /^[a-z0-9][a-z0-9-]*$/;
// Read when a bench imports this module, i.e. as it starts: the machine is shared, so every fragment
// says how busy it was.
const LOAD_AVG_1_AT_START = os.loadavg()[0]!;

/** The command that made these results, as a reader would type it from the repository root. */
export function benchCommand(): string {
  const script = path.relative(ROOT, process.argv[1] ?? '');
  return ['node', script, ...process.argv.slice(2)].join(' ');
}

/** A markdown table; cells are escaped for `|`. */
export function mdTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const cell = (c: string): string => c.replace(/\|/g, '\\|');
  const line = (cells: readonly string[]): string => `| ${cells.map(cell).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

export interface WrittenResults {
  jsonPath: string;
  markdownPaths: string[];
}

/**
 * Writes bench/results/<suite>.json and bench/results/<suite>.md, plus <suite>.<part>.md for each
 * part (a smaller fragment a doc quotes on its own, e.g. one scenario's table). Each fragment ends
 * with where it came from: the JSON file, the command and the date.
 */
export function writeResults(suite: string, json: object, markdown: string, parts: Record<string, string> = {}): WrittenResults {
  if (!SUITE_NAME.test(suite)) throw new Error(`suite name '${suite}' must be lower-case letters, digits and dashes`);
  for (const part of Object.keys(parts))
    if (!SUITE_NAME.test(part)) throw new Error(`fragment part '${part}' must be lower-case letters, digits and dashes`);
  const command = benchCommand();
  const generatedAt = new Date().toISOString();
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const jsonPath = path.join(RESULTS_DIR, `${suite}.json`);
  writeFileAtomic(jsonPath, `${JSON.stringify({ suite, command, generatedAt, host: hostInfo(), results: json }, null, 1)}\n`);
  const footer = `\n\n<sub>From \`bench/results/${suite}.json\`, made by \`${command}\` on ${generatedAt.slice(0, 10)} (${hostInfo().cpus} CPUs, load ${LOAD_AVG_1_AT_START.toFixed(1)} at start, Linux ${os.release()}, Node ${process.version}).</sub>\n`;
  const markdownPaths: string[] = [];
  for (const [name, text] of [
    [suite, markdown],
    ...Object.entries(parts).map(([part, text]) => [`${suite}.${part}`, text] as const),
  ] as const) {
    const file = path.join(RESULTS_DIR, `${name}.md`);
    writeFileAtomic(file, `${text.trim()}${footer}`);
    markdownPaths.push(file);
  }
  return { jsonPath, markdownPaths };
}

function hostInfo(): { cpus: number; model: string | undefined; kernel: string; node: string; loadAvg1AtStart: number } {
  return {
    cpus: os.availableParallelism(),
    model: os.cpus()[0]?.model,
    kernel: os.release(),
    node: process.version,
    loadAvg1AtStart: LOAD_AVG_1_AT_START,
  };
}
