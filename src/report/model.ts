// Turns a decoded trace into the few thousand numbers a report draws: every chart is binned here,
// in Node, so the page stays responsive whatever the trace's size (a 1 GiB snapshot with 100k
// faults embeds ~100 KiB of data).
import { FcUffdError } from '../errors.js';
import type { WorkingSet } from '../serve/working-set.js';
import {
  DEFER_WAIT,
  FETCH_SOURCE_NAMES,
  FLAG_FAULTED,
  FLAG_PREFETCH,
  FLAG_PREFETCH_LATE,
  FLAG_WRITE,
  K_DATA,
  K_REMOVED,
  K_ZERO,
  T_DEFER,
  T_FAULT,
  T_FETCH_DONE,
  T_FETCH_WANT,
  T_INSTALL,
  T_REMOVE,
  T_SERVED,
  type Trace,
} from '../trace/format.js';

/** Memory-map categories of a trace, in drawing order (index = the page state below). */
export const TRACE_MAP_CATEGORIES = [
  { name: 'not installed', color: '#eef0f3' },
  { name: 'zero page (around a fault)', color: '#b8c4d6' },
  { name: 'data (around a fault)', color: '#4e79a7' },
  { name: 'removed by the balloon', color: '#9c755f' },
  { name: 'prefetched and used', color: '#59a14f' },
  { name: 'prefetched, unused', color: '#edc948' },
  { name: 'faulted', color: '#e15759' },
  { name: 'prefetched (use unknown: pass --working-set)', color: '#8cd17d' },
] as const;
/** Page states (0: not installed) = indices of TRACE_MAP_CATEGORIES. */
const S_ZERO = 1;
const S_DATA = 2;
const S_REMOVED = 3;
const S_PF_USED = 4;
const S_PF_UNUSED = 5;
const S_FAULTED = 6;
const S_PF = 7;

/** Latency kinds of a served fault. */
export const LATENCY_KINDS = [
  { name: 'data', color: '#4e79a7' },
  { name: 'zero page', color: '#9aa9bf' },
  { name: 'removed (zero)', color: '#9c755f' },
  { name: 'waited on a fetch', color: '#e15759' },
  { name: 'deferred (EAGAIN)', color: '#f28e2b' },
] as const;

/** Histogram bins: 4 per octave from 1 µs, 112 bins (up to ~268 s). */
export const LATENCY_BINS_PER_OCTAVE = 4;
export const LATENCY_BINS = 112;
export const MAP_BINS_MAX = 4096;
export const HEAT_TIME_BINS = 240;
export const HEAT_OFFSET_BINS = 128;
export const WATERFALL_MAX = 400;

export interface MapSection {
  kind: 'map';
  title: string;
  sizeBytes: number;
  pageSizeBytes: number;
  bins: number;
  categories: Array<{ name: string; color: string }>;
  /** Pages per bin and category: counts[category][bin]. */
  counts: number[][];
}

export interface HeatSection {
  kind: 'heat';
  title: string;
  timeMaxUs: number;
  sizeBytes: number;
  timeBins: number;
  offsetBins: number;
  /** Layers drawn in order: flattened [timeBin, offsetBin, count] triples of non-empty cells. */
  layers: Array<{ name: string; color: string; cells: number[] }>;
}

export interface LatencySection {
  kind: 'latency';
  title: string;
  binsPerOctave: number;
  series: Array<{ name: string; color: string; counts: number[]; total: number }>;
}

export interface WaterfallSection {
  kind: 'waterfall';
  title: string;
  timeMaxUs: number;
  sources: Array<{ name: string; color: string }>;
  /** [chunk, wantUs, doneUs (-1: never arrived), bytes, source, faultsThatWaited] per fetch, by want time. */
  rows: number[][];
  omitted: number;
}

export type Section = MapSection | HeatSection | LatencySection | WaterfallSection;

export interface ReportData {
  title: string;
  subtitle: string;
  summary: Array<[label: string, value: string]>;
  sections: Section[];
  notes: string[];
}

const FETCH_COLORS = ['#59a14f', '#4e79a7', '#b07aa1', '#bab0ac'];

function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function fmtMs(us: number): string {
  return us >= 1e6 ? `${(us / 1e6).toFixed(2)} s` : `${(us / 1000).toFixed(1)} ms`;
}

function latencyBin(us: number): number {
  if (us < 1) return 0;
  return Math.min(LATENCY_BINS - 1, Math.floor(Math.log2(us) * LATENCY_BINS_PER_OCTAVE));
}

function percentile(hist: number[], total: number, q: number): number {
  let seen = 0;
  for (let b = 0; b < hist.length; b++) {
    seen += hist[b]!;
    if (seen >= q * total) return 2 ** ((b + 1) / LATENCY_BINS_PER_OCTAVE);
  }
  return 0;
}

/** Counts pages per bin and state. */
export function binPages(state: Uint8Array, categories: number, bins: number): number[][] {
  const counts = Array.from({ length: categories }, () => new Array<number>(bins).fill(0));
  const pages = state.length;
  for (let p = 0; p < pages; p++) counts[state[p]!]![Math.floor((p * bins) / pages)]!++;
  return counts;
}

export function mapBins(pages: number): number {
  return Math.max(1, Math.min(MAP_BINS_MAX, pages));
}

/** Everything a report of one traced restore shows. `ws`: the pages the guest is known to use. */
export function buildTraceReport(trace: Trace, name: string, ws?: WorkingSet): ReportData {
  const h = trace.header;
  const ps = h.pageSizeBytes;
  if (ws) {
    if (ws.pageSizeBytes !== ps)
      throw new FcUffdError('WORKING_SET_MISMATCH', `the working set has ${ws.pageSizeBytes}-byte pages, the trace ${ps}-byte pages`);
    if (ws.snapshot !== h.snapshot)
      throw new FcUffdError('WORKING_SET_MISMATCH', `the working set was recorded on ${ws.snapshot}, the trace on ${h.snapshot}`);
  }
  const pages = Math.ceil(h.snapshotSizeBytes / ps);
  const n = trace.count;
  // Records of one VM come from two writers only in principle (one thread today); order by time.
  const order = Uint32Array.from({ length: n }, (_, i) => i).sort((x, y) => trace.timeUs[x]! - trace.timeUs[y]!);

  const state = new Uint8Array(pages);
  const faultedPage = new Uint8Array(pages);
  const inWs = new Uint8Array(ws ? pages : 0);
  if (ws) for (const p of ws.pages) if (p < pages) inWs[p] = 1;

  const hist = LATENCY_KINDS.map(() => new Array<number>(LATENCY_BINS).fill(0));
  const allHist = new Array<number>(LATENCY_BINS).fill(0);
  const pendingDefer = new Map<number, number>();
  const fetches: number[][] = [];
  const fetchOfChunk = new Map<number, number[]>();
  let chunkSizeBytes = 0;

  let timeMaxUs = 0;
  let faults = 0;
  let writes = 0;
  let served = 0;
  let late = 0;
  let lastFaultUs = 0;
  let waited = 0;
  let pagesInstalled = 0;
  let pagesPrefetched = 0;
  let bytesCopied = 0;
  let zeroPages = 0;
  let removedBytes = 0;
  let removes = 0;
  let lastPrefetchUs = -1;
  let fetchBytes = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    const t = trace.timeUs[i]!;
    if (t > timeMaxUs) timeMaxUs = t;
  }
  const heatFaults = new Map<number, number>();
  const heatLate = new Map<number, number>();
  const heatPrefetch = new Map<number, number>();
  const tBin = (t: number): number => Math.min(HEAT_TIME_BINS - 1, Math.floor((t / Math.max(1, timeMaxUs)) * HEAT_TIME_BINS));
  const oBin = (off: number): number => Math.min(HEAT_OFFSET_BINS - 1, Math.floor((off / h.snapshotSizeBytes) * HEAT_OFFSET_BINS));
  const bump = (m: Map<number, number>, t: number, off: number, by: number): void => {
    const key = tBin(t) * HEAT_OFFSET_BINS + oBin(off);
    m.set(key, (m.get(key) ?? 0) + by);
  };

  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    const t = trace.timeUs[i]!;
    const a = trace.a[i]!;
    const b = trace.b[i]!;
    switch (trace.type[i]) {
      case T_FAULT:
        faults++;
        if (trace.flags[i]! & FLAG_WRITE) writes++;
        break;
      case T_SERVED: {
        served++;
        lastFaultUs = Math.max(lastFaultUs, t);
        const page = Math.floor(b / ps);
        if (page < pages) {
          state[page] = S_FAULTED;
          faultedPage[page] = 1;
        }
        const isLate = (trace.flags[i]! & FLAG_PREFETCH_LATE) !== 0;
        if (isLate) late++;
        bump(isLate ? heatLate : heatFaults, t, b, 1);
        const defer = pendingDefer.get(a);
        if (defer !== undefined) pendingDefer.delete(a);
        const kindIndex =
          defer === DEFER_WAIT ? 3 : defer !== undefined ? 4 : trace.kind[i] === K_ZERO ? 1 : trace.kind[i] === K_REMOVED ? 2 : 0;
        if (defer === DEFER_WAIT) waited++;
        const bin = latencyBin(trace.word1[i]!);
        hist[kindIndex]![bin]!++;
        allHist[bin]!++;
        break;
      }
      case T_INSTALL: {
        const flags = trace.flags[i]!;
        const kind = trace.kind[i]!;
        const first = Math.floor(a / ps);
        const end = Math.min(pages, Math.ceil((a + b) / ps));
        const prefetch = (flags & FLAG_PREFETCH) !== 0;
        pagesInstalled += end - first;
        if (kind === K_DATA) bytesCopied += b;
        else zeroPages += end - first;
        if (prefetch) {
          pagesPrefetched += end - first;
          lastPrefetchUs = t;
          bump(heatPrefetch, t, a, end - first);
        }
        for (let p = first; p < end; p++) {
          if (kind === K_REMOVED) state[p] = S_REMOVED;
          else if (prefetch) state[p] = ws ? (inWs[p] ? S_PF_USED : S_PF_UNUSED) : S_PF;
          else if (!(flags & FLAG_FAULTED) || state[p] !== S_FAULTED) state[p] = kind === K_ZERO ? S_ZERO : S_DATA;
        }
        break;
      }
      case T_REMOVE: {
        removes++;
        removedBytes += b;
        const end = Math.min(pages, Math.ceil((a + b) / ps));
        for (let p = Math.floor(a / ps); p < end; p++) state[p] = S_REMOVED;
        break;
      }
      case T_DEFER:
        if (!pendingDefer.has(a) || trace.kind[i] === DEFER_WAIT) pendingDefer.set(a, trace.kind[i]!);
        break;
      case T_FETCH_WANT: {
        const chunk = trace.word1[i]!;
        const row = [chunk, t, -1, 0, 1, 0];
        fetches.push(row);
        fetchOfChunk.set(chunk, row);
        break;
      }
      case T_FETCH_DONE: {
        const chunk = trace.word1[i]!;
        const row = fetchOfChunk.get(chunk);
        if (row && row[2] === -1) {
          row[2] = t;
          row[3] = a;
          row[4] = trace.kind[i]!;
        }
        fetchBytes += a;
        // Chunks are powers of two; only the last one can be shorter.
        if (a > chunkSizeBytes) chunkSizeBytes = 2 ** Math.ceil(Math.log2(a));
        break;
      }
    }
  }
  // Which chunk each waiting fault waited for: known once the chunk size is (from the fetches).
  if (chunkSizeBytes > 0 && waited > 0) {
    const pend = new Map<number, number>();
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      if (trace.type[i] === T_DEFER && trace.kind[i] === DEFER_WAIT) pend.set(trace.a[i]!, 1);
      else if (trace.type[i] === T_SERVED && pend.delete(trace.a[i]!)) {
        const f = fetchOfChunk.get(Math.floor(trace.b[i]! / chunkSizeBytes));
        if (f) f[5]!++;
      }
    }
  }

  let pagesFaulted = 0;
  for (let p = 0; p < pages; p++) pagesFaulted += faultedPage[p]!;
  const total = served;
  const summary: Array<[string, string]> = [
    ['faults', `${faults.toLocaleString('en')} (${writes.toLocaleString('en')} writes, ${(faults - writes).toLocaleString('en')} reads)`],
    ['pages faulted', `${pagesFaulted.toLocaleString('en')} (${fmtBytes(pagesFaulted * ps)})`],
    [
      'pages installed',
      `${pagesInstalled.toLocaleString('en')} (${fmtBytes(pagesInstalled * ps)}: ${fmtBytes(bytesCopied)} copied, ${zeroPages.toLocaleString('en')} zero pages)`,
    ],
    ['amplification', pagesFaulted > 0 ? `${(pagesInstalled / pagesFaulted).toFixed(2)} pages installed per page faulted` : '-'],
    ['time to last fault', fmtMs(lastFaultUs)],
    [
      'fault latency',
      total > 0
        ? `p50 ${percentile(allHist, total, 0.5).toFixed(0)} µs, p99 ${percentile(allHist, total, 0.99).toFixed(0)} µs (bin upper bounds)`
        : '-',
    ],
    [
      'prefetched',
      h.prefetchPages > 0
        ? `${pagesPrefetched.toLocaleString('en')} of ${h.prefetchPages.toLocaleString('en')} pages${lastPrefetchUs >= 0 ? `, last at ${fmtMs(lastPrefetchUs)}` : ''}; ${late.toLocaleString('en')} faults on pages prefetch had not reached`
        : 'no prefetch',
    ],
    ['balloon', `${removes.toLocaleString('en')} removes, ${fmtBytes(removedBytes)}`],
    [
      'chunk fetches',
      fetches.length > 0
        ? `${fetches.length.toLocaleString('en')} (${fmtBytes(fetchBytes)}), ${waited.toLocaleString('en')} faults waited on one`
        : 'none (memory file)',
    ],
    [
      'snapshot',
      `${h.snapshot} (${fmtBytes(h.snapshotSizeBytes)}, ${ps / 1024} KiB pages, fault-around ${h.faultAroundBytes === 0 ? 'adaptive' : fmtBytes(h.faultAroundBytes)})`,
    ],
  ];

  const bins = mapBins(pages);
  const cells = (m: Map<number, number>): number[] => {
    const out: number[] = [];
    for (const [key, count] of m) out.push(Math.floor(key / HEAT_OFFSET_BINS), key % HEAT_OFFSET_BINS, count);
    return out;
  };
  const sections: Section[] = [
    {
      kind: 'map',
      title: 'Memory map of the snapshot',
      sizeBytes: h.snapshotSizeBytes,
      pageSizeBytes: ps,
      bins,
      categories: [...TRACE_MAP_CATEGORIES],
      counts: binPages(state, TRACE_MAP_CATEGORIES.length, bins),
    },
    {
      kind: 'heat',
      title: 'Fault offset over time, with prefetch progress',
      timeMaxUs,
      sizeBytes: h.snapshotSizeBytes,
      timeBins: HEAT_TIME_BINS,
      offsetBins: HEAT_OFFSET_BINS,
      layers: [
        { name: 'prefetch installs (pages)', color: '#59a14f', cells: cells(heatPrefetch) },
        { name: 'faults', color: '#4e79a7', cells: cells(heatFaults) },
        { name: 'faults prefetch came too late for', color: '#e15759', cells: cells(heatLate) },
      ],
    },
    {
      kind: 'latency',
      title: 'Fault latency by kind (read from the uffd to installed)',
      binsPerOctave: LATENCY_BINS_PER_OCTAVE,
      series: LATENCY_KINDS.map((k, j) => ({ ...k, counts: hist[j]!, total: hist[j]!.reduce((x, y) => x + y, 0) })),
    },
  ];
  if (fetches.length > 0)
    sections.push({
      kind: 'waterfall',
      title: 'Chunk fetches',
      timeMaxUs,
      sources: FETCH_SOURCE_NAMES.map((name, j) => ({ name, color: FETCH_COLORS[j]! })),
      rows: fetches.slice(0, WATERFALL_MAX),
      omitted: Math.max(0, fetches.length - WATERFALL_MAX),
    });
  const notes: string[] = [];
  if (trace.tornBytes > 0) notes.push(`the trace ends in a torn record (${trace.tornBytes} bytes ignored): the handler stopped mid-write`);
  if (h.prefetchPages > 0 && !ws)
    notes.push(
      'prefetched pages are shown without telling used from unused: pass --working-set with a recording of what the guest touches',
    );
  return {
    title: `Restore of ${h.vmId} (pid ${h.pid})`,
    subtitle: `${name}, started ${new Date(h.startEpochMs).toISOString()}, ${n.toLocaleString('en')} records`,
    summary,
    sections,
    notes,
  };
}
