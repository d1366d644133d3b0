// Which merge of several recorded working sets predicts the next restore best?
//   node dist/bench/ws-merge.js [--runs N] [--size-mib N]
//
// Restores of one snapshot touch a common core plus some pages of their own (different requests,
// timers, allocations). Model: every run replays the same core clusters (12 % of memory) plus its
// own extra clusters (3 %). Runs 1..N-1 are recorded; their working sets are merged as a union
// (pages seen in >= 1 run), by frequency (>= 2 runs) and as an intersection (all runs); each merge
// is scored against run N's recording (used / unused / missed) and replayed on run N's workload
// (faults and time from handshake to done, median of 5 replays).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runEmulator } from '../tools/emulator/run.js';
import { writeClusteredTrace } from '../tools/emulator/traces.js';
import { writeDemoImage } from '../tools/demo-image.js';
import { comparePrediction, mergeWorkingSets, readWorkingSet, writeWorkingSet } from '../src/serve/working-set.js';
import { startServe } from '../test/helpers/cli.js';
import { mdTable, writeResults } from './lib/results.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '4' }, 'size-mib': { type: 'string', default: '128' } } });
const runs = Number(values.runs);
const sizeBytes = Number(values['size-mib']) * 1024 * 1024;
if (runs < 3) throw new Error('--runs must be at least 3 (two to merge, one to predict)');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-ws-merge-'));
const mem = path.join(dir, 'memory.bin');
writeDemoImage(mem, sizeBytes, 17);
const core = path.join(dir, 'core.txt');
writeClusteredTrace(core, sizeBytes, { fraction: 0.12, seed: 101 });

/** Run k's trace: the core clusters, then its own, interleaved in blocks as a guest would mix them. */
function traceOf(k: number): string {
  const own = path.join(dir, `own-${k}.txt`);
  writeClusteredTrace(own, sizeBytes, { fraction: 0.03, seed: 1000 + k });
  const a = fs.readFileSync(core, 'utf8').trim().split('\n');
  const b = fs.readFileSync(own, 'utf8').trim().split('\n');
  const mixed: string[] = [];
  for (let i = 0, j = 0; i < a.length || j < b.length;) {
    mixed.push(...a.slice(i, i + 400));
    i += 400;
    mixed.push(...b.slice(j, j + 100));
    j += 100;
  }
  const file = path.join(dir, `run-${k}.txt`);
  fs.writeFileSync(file, `${mixed.join('\n')}\n`);
  return file;
}

async function restore(trace: string, serveArgs: string[]): Promise<{ faults: number; doneMs: number }> {
  const serve = await startServe(path.join(dir, 's.sock'), ['--mem', mem, '--fault-around', '64k', ...serveArgs]);
  try {
    const r = await runEmulator({ socket: serve.socket, mem, pattern: `trace:${trace}`, deadlineMs: 60000 });
    if (r.code !== 0 || !r.report) throw new Error(`restore failed (${r.code ?? r.signal}): ${r.stderr}`);
    const ended = await serve.waitForLog((l) => l.msg === 'VM ended');
    if (serveArgs.includes('--record-ws')) await serve.waitForLog((l) => l.msg === 'wrote working set');
    return { faults: ended.faults as number, doneMs: r.report.handshakeToDoneMs };
  } finally {
    await serve.stop();
  }
}

interface Merge {
  name: string;
  minRuns: number;
  pages: number;
  used: number;
  unused: number;
  missed: number;
  replayFaults: number;
  replayMs: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

try {
  const recorded: string[] = [];
  for (let k = 1; k <= runs; k++) {
    const ws = path.join(dir, `run-${k}.ws`);
    await restore(traceOf(k), ['--record-ws', ws]);
    recorded.push(ws);
  }
  const history = recorded.slice(0, -1).map(readWorkingSet);
  const actual = readWorkingSet(recorded[recorded.length - 1]!);
  const target = path.join(dir, `run-${runs}.txt`);
  const baseline = [];
  for (let i = 0; i < 5; i++) baseline.push(await restore(target, []));
  const onDemand = { faults: median(baseline.map((b) => b.faults)), doneMs: median(baseline.map((b) => b.doneMs)) };
  const merges: Merge[] = [];
  for (const [name, minRuns] of [
    ['union (>= 1 run)', 1],
    ['frequency (>= 2 runs)', 2],
    [`intersection (${runs - 1} runs)`, runs - 1],
  ] as const) {
    const merged = mergeWorkingSets(history, minRuns);
    const file = path.join(dir, `merged-${minRuns}.ws`);
    writeWorkingSet(file, merged);
    const p = comparePrediction(merged, actual);
    const replays = [];
    for (let i = 0; i < 5; i++) replays.push(await restore(target, ['--prefetch', file]));
    merges.push({
      name,
      minRuns,
      pages: p.predicted,
      used: p.used,
      unused: p.unused,
      missed: p.missed,
      replayFaults: median(replays.map((r) => r.faults)),
      replayMs: median(replays.map((r) => r.doneMs)),
    });
  }
  const result = { runs, sizeBytes, faultAroundBytes: 65536, replays: 5, onDemand, merges };
  const title = `Working-set merges: ${runs - 1} recorded runs predicting run ${runs} (${sizeBytes / 2 ** 20} MiB generated image, 64 KiB fault-around; replays: median of 5).`;
  const table = mdTable(
    ['merge', 'pages', 'used', 'unused', 'missed', 'replay faults', 'replay ms'],
    [
      ['on demand (no prefetch)', '-', '-', '-', '-', String(onDemand.faults), onDemand.doneMs.toFixed(1)],
      ...merges.map((m) => [
        m.name,
        String(m.pages),
        String(m.used),
        String(m.unused),
        String(m.missed),
        String(m.replayFaults),
        m.replayMs.toFixed(1),
      ]),
    ],
  );
  const [union, frequency, intersection] = merges as [Merge, Merge, Merge];
  const pct = (a: number, b: number): string => (b > 0 ? `${Math.round((100 * a) / b)} %` : 'n/a');
  const summary = `Measured: pages seen in at least 2 of ${runs - 1} recorded runs predicted a held-out run with ${pct(frequency.used, union.used)} of a union's hits and ${pct(frequency.unused, union.unused)} of its wasted prefetch, missing ${frequency.missed} pages where the intersection missed ${intersection.missed} and the union ${union.missed} (\`node dist/bench/ws-merge.js\`).`;
  writeResults('ws-merge', result, `${title}\n\n${table}\n\n${summary}`, { summary });
  process.stdout.write(`${title}\n${table}\n`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
