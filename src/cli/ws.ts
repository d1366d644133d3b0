import { checkOutputPath } from '../output-file.js';
import { FcUffdError } from '../errors.js';
import { comparePrediction, mergeWorkingSets, readWorkingSet, writeWorkingSet } from '../serve/working-set.js';
import { renderReportHtml } from '../report/html.js';
import { writeReportFile } from '../report/output.js';
import { buildWorkingSetReport } from '../report/working-set.js';
import { mib } from './format.js';

export function wsInspectCommand(file: string, flags: { against?: string; snapshotSize?: number; html?: string; force?: boolean }): void {
  const ws = readWorkingSet(file);
  if (flags.html !== undefined) {
    const against = flags.against !== undefined ? { ws: readWorkingSet(flags.against), name: flags.against } : undefined;
    const inputs = flags.against !== undefined ? [file, flags.against] : [file];
    writeReportFile(flags.html, renderReportHtml(buildWorkingSetReport(ws, file, against)), inputs, flags.force ?? false);
  }
  const bytes = ws.pages.length * ws.pageSizeBytes;
  const lines = [
    `${file}: working set of ${ws.pages.length} pages (${mib(bytes)} of ${ws.pageSizeBytes}-byte pages), ${ws.runs} run(s)`,
    `  snapshot      ${ws.snapshot}`,
  ];
  const sizeMatch = /^memfile:(\d+):/.exec(ws.snapshot);
  const snapshotBytes = flags.snapshotSize ?? (sizeMatch ? Number(sizeMatch[1]) : undefined);
  if (snapshotBytes) lines.push(`  coverage      ${((100 * bytes) / snapshotBytes).toFixed(1)}% of the snapshot`);
  if (ws.timesMs.length > 0) lines.push(`  first touches over ${ws.timesMs[ws.timesMs.length - 1]} ms after the handshake`);
  if (flags.against) {
    const actual = readWorkingSet(flags.against);
    const p = comparePrediction(ws, actual);
    lines.push(
      `  against ${flags.against} (${p.actual} pages touched):`,
      `    prefetched and used    ${p.used} (${pct(p.used, p.actual)} of the touched pages)`,
      `    prefetched and unused  ${p.unused} (${pct(p.unused, p.predicted)} of the prefetch)`,
      `    faulted anyway         ${p.missed}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * Merges recordings. The default keeps pages seen in at least half of the runs: measured
 * (bench/ws-merge.ts, bench/results/ws-merge.md) it keeps nearly all of what a union predicts right
 * at a small fraction of the union's wasted prefetch, and misses barely more than an intersection.
 */
export function wsMergeCommand(files: string[], flags: { output: string; minRuns?: number | 'all'; force: boolean }): void {
  checkOutputPath('--output', flags.output, { force: flags.force, inputs: files });
  const sets = files.map(readWorkingSet);
  const runs = sets.reduce((n, s) => n + s.runs, 0);
  const minRuns = flags.minRuns === 'all' ? runs : (flags.minRuns ?? Math.ceil(runs / 2));
  if (minRuns > runs)
    throw new FcUffdError(
      'CONFIG_INVALID',
      `--min-runs ${minRuns} is more than the ${runs} runs in these files: no page could be kept; use at most ${runs} (or all)`,
    );
  const merged = mergeWorkingSets(sets, minRuns);
  writeWorkingSet(flags.output, merged);
  process.stdout.write(`${flags.output}: ${merged.pages.length} pages touched in at least ${minRuns} of ${merged.runs} runs\n`);
}

function pct(n: number, d: number): string {
  return d === 0 ? '-' : `${((100 * n) / d).toFixed(1)}%`;
}
