// The memory map of a working set (`fc-uffd ws inspect --html`): which pages it holds, and with
// another recording, which of them that run used, which it did not, and what it faulted on anyway.
import { comparePrediction, type WorkingSet } from '../serve/working-set.js';
import { binPages, HEAT_OFFSET_BINS, HEAT_TIME_BINS, mapBins, type ReportData, type Section } from './model.js';

const CATEGORIES = [
  { name: 'not in the set', color: '#eef0f3' },
  { name: 'in the working set', color: '#4e79a7' },
  { name: 'predicted and used', color: '#59a14f' },
  { name: 'predicted, unused', color: '#edc948' },
  { name: 'missed (touched, not predicted)', color: '#e15759' },
];

/** Snapshot bytes: from a memory-file identity (memfile:<size>:...), else up to the last page of either set. */
function snapshotBytes(ws: WorkingSet, against?: WorkingSet): number {
  const m = /^memfile:(\d+):/.exec(ws.snapshot);
  if (m) return Number(m[1]);
  let max = 0;
  for (const set of against ? [ws, against] : [ws]) for (const p of set.pages) if (p > max) max = p;
  return (max + 1) * ws.pageSizeBytes;
}

export function buildWorkingSetReport(ws: WorkingSet, name: string, against?: { ws: WorkingSet; name: string }): ReportData {
  const ps = ws.pageSizeBytes;
  const sizeBytes = snapshotBytes(ws, against?.ws);
  const pages = Math.ceil(sizeBytes / ps);
  const state = new Uint8Array(pages);
  for (const p of ws.pages) if (p < pages) state[p] = 1;
  const summary: Array<[string, string]> = [
    [
      'pages',
      `${ws.pages.length.toLocaleString('en')} of ${ps}-byte pages (${((ws.pages.length * ps) / 2 ** 20).toFixed(1)} MiB, ${((100 * ws.pages.length) / pages).toFixed(1)} % of the snapshot)`,
    ],
    ['runs merged', String(ws.runs)],
    ['snapshot', ws.snapshot],
  ];
  if (ws.timesMs.length > 0) summary.push(['first touches over', `${ws.timesMs[ws.timesMs.length - 1]} ms after the handshake`]);
  if (against) {
    for (const p of ws.pages) if (p < pages) state[p] = 3;
    for (const p of against.ws.pages) if (p < pages) state[p] = state[p] === 3 ? 2 : 4;
    const score = comparePrediction(ws, against.ws);
    const pct = (n: number, d: number): string => (d === 0 ? '-' : `${((100 * n) / d).toFixed(1)} %`);
    summary.push(
      ['scored against', `${against.name} (${score.actual.toLocaleString('en')} pages touched)`],
      ['predicted and used', `${score.used.toLocaleString('en')} (${pct(score.used, score.actual)} of the touched pages)`],
      ['predicted, unused', `${score.unused.toLocaleString('en')} (${pct(score.unused, score.predicted)} of the prediction)`],
      ['missed', score.missed.toLocaleString('en')],
    );
  }
  const bins = mapBins(pages);
  const timeMaxMs = ws.timesMs.length > 0 ? Math.max(1, ws.timesMs[ws.timesMs.length - 1]!) : 1;
  const cells = new Map<number, number>();
  for (let i = 0; i < ws.pages.length; i++) {
    const t = Math.min(HEAT_TIME_BINS - 1, Math.floor(((ws.timesMs[i] ?? 0) / timeMaxMs) * HEAT_TIME_BINS));
    const o = Math.min(HEAT_OFFSET_BINS - 1, Math.floor((ws.pages[i]! / pages) * HEAT_OFFSET_BINS));
    const key = t * HEAT_OFFSET_BINS + o;
    cells.set(key, (cells.get(key) ?? 0) + 1);
  }
  const flat: number[] = [];
  for (const [key, n] of cells) flat.push(Math.floor(key / HEAT_OFFSET_BINS), key % HEAT_OFFSET_BINS, n);
  const sections: Section[] = [
    {
      kind: 'map',
      title: 'Memory map of the working set',
      sizeBytes,
      pageSizeBytes: ps,
      bins,
      categories: CATEGORIES,
      counts: binPages(state, CATEGORIES.length, bins),
    },
    {
      kind: 'heat',
      title: 'First touch: offset over time',
      timeMaxUs: timeMaxMs * 1000,
      sizeBytes,
      timeBins: HEAT_TIME_BINS,
      offsetBins: HEAT_OFFSET_BINS,
      layers: [{ name: 'pages first touched', color: '#4e79a7', cells: flat }],
    },
  ];
  return { title: `Working set ${name}`, subtitle: `${ws.pages.length.toLocaleString('en')} pages`, summary, sections, notes: [] };
}
