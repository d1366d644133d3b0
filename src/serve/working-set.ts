import fs from 'node:fs';
import { FcUffdError } from '../errors.js';
import { writeFileAtomic } from '../atomic-write.js';
import { isPowerOfTwo } from '../memory/sizes.js';

/**
 * The pages a VM touched after a restore, in first-touch order: recorded on one restore, installed
 * ahead of the guest on the next (REAP-style prefetch). Pages are snapshot page indices
 * (file offset / page size).
 */
export interface WorkingSet {
  /** Identity of the snapshot it was recorded against (ServedSnapshot.identity). */
  snapshot: string;
  pageSizeBytes: number;
  /** Page indices in first-touch order, each once. */
  pages: Uint32Array;
  /** Milliseconds after the handshake of each page's first touch (coarse: whole ms). */
  timesMs: Uint32Array;
  /** How many recorded runs were merged into this set (1 for a single recording). */
  runs: number;
}

const FORMAT = 'fc-uffd-working-set';
const VERSION = 1;

interface WorkingSetFile {
  format: typeof FORMAT;
  version: number;
  snapshot: string;
  pageSizeBytes: number;
  runs: number;
  count: number;
  /** base64 of little-endian u32 page indices. */
  pages: string;
  /** base64 of little-endian u32 first-touch times (ms). */
  timesMs: string;
}

function toBase64(a: Uint32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

function fromBase64(s: string, count: number, what: string): Uint32Array {
  const b = Buffer.from(s, 'base64');
  if (b.byteLength !== count * 4)
    throw new FcUffdError('WORKING_SET', `working set: ${what} holds ${b.byteLength} bytes, expected ${count * 4}`);
  const out = new Uint32Array(count);
  Buffer.from(out.buffer).set(b);
  return out;
}

/** Serialises a working set: a small JSON document (about 5.4 bytes per page). */
export function encodeWorkingSet(ws: WorkingSet): string {
  const file: WorkingSetFile = {
    format: FORMAT,
    version: VERSION,
    snapshot: ws.snapshot,
    pageSizeBytes: ws.pageSizeBytes,
    runs: ws.runs,
    count: ws.pages.length,
    pages: toBase64(ws.pages),
    timesMs: toBase64(ws.timesMs),
  };
  return `${JSON.stringify(file)}\n`;
}

export function decodeWorkingSet(text: string): WorkingSet {
  let f: Partial<WorkingSetFile>;
  try {
    f = JSON.parse(text) as Partial<WorkingSetFile>;
  } catch (err) {
    throw new FcUffdError('WORKING_SET', `not a working-set file: ${(err as Error).message}`);
  }
  if (f.format !== FORMAT) throw new FcUffdError('WORKING_SET', `not a working-set file (format ${JSON.stringify(f.format)})`);
  if (f.version !== VERSION)
    throw new FcUffdError('WORKING_SET', `working-set format version ${f.version} is not supported (this build reads version ${VERSION})`);
  if (
    typeof f.snapshot !== 'string' ||
    typeof f.count !== 'number' ||
    typeof f.pageSizeBytes !== 'number' ||
    typeof f.pages !== 'string' ||
    typeof f.timesMs !== 'string'
  )
    throw new FcUffdError('WORKING_SET', 'working-set file is missing fields');
  // JSON numbers may be fractional, negative or huge; a count of 1.5 would otherwise reach new Uint32Array().
  if (!Number.isSafeInteger(f.count) || f.count < 0)
    throw new FcUffdError('WORKING_SET', `working set: count ${f.count} is not a whole number of pages`);
  if (!isPowerOfTwo(f.pageSizeBytes))
    throw new FcUffdError('WORKING_SET', `working set: page size ${f.pageSizeBytes} bytes is not a power of two up to 1 GiB`);
  if (f.runs !== undefined && (!Number.isSafeInteger(f.runs) || f.runs < 1))
    throw new FcUffdError('WORKING_SET', `working set: runs ${f.runs} is not a positive whole number`);
  return {
    snapshot: f.snapshot,
    pageSizeBytes: f.pageSizeBytes,
    runs: f.runs ?? 1,
    pages: fromBase64(f.pages, f.count, 'pages'),
    timesMs: fromBase64(f.timesMs, f.count, 'timesMs'),
  };
}

export function readWorkingSet(file: string): WorkingSet {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new FcUffdError('WORKING_SET', `cannot read working set ${file}: ${(err as Error).message}`);
  }
  try {
    return decodeWorkingSet(text);
  } catch (err) {
    if (err instanceof FcUffdError) throw new FcUffdError(err.code, `${file}: ${err.message}`, err.details);
    throw err;
  }
}

export function writeWorkingSet(file: string, ws: WorkingSet): void {
  writeFileAtomic(file, encodeWorkingSet(ws));
}

/** Refuses a working set recorded against another snapshot or page size. */
export function checkWorkingSetFits(ws: WorkingSet, snapshotIdentity: string, pageSizeBytes?: number): void {
  if (ws.snapshot !== snapshotIdentity)
    throw new FcUffdError(
      'WORKING_SET_MISMATCH',
      `the working set was recorded against snapshot ${ws.snapshot}, not the one served (${snapshotIdentity})`,
    );
  if (pageSizeBytes !== undefined && ws.pageSizeBytes !== pageSizeBytes)
    throw new FcUffdError('WORKING_SET_MISMATCH', `the working set has ${ws.pageSizeBytes}-byte pages, the VM uses ${pageSizeBytes}`);
}

/**
 * Merges recordings of several runs. `frequency` keeps pages touched in at least `minRuns` runs
 * (1: the union), ordered by their mean first-touch time; `intersection` is frequency with
 * minRuns = number of runs.
 */
export function mergeWorkingSets(sets: WorkingSet[], minRuns = 1): WorkingSet {
  const first = sets[0];
  if (!first) throw new FcUffdError('WORKING_SET', 'nothing to merge');
  for (const s of sets) checkWorkingSetFits(s, first.snapshot, first.pageSizeBytes);
  const seen = new Map<number, { runs: number; timeSum: number }>();
  for (const s of sets) {
    s.pages.forEach((page, i) => {
      const e = seen.get(page) ?? { runs: 0, timeSum: 0 };
      e.runs += s.runs;
      e.timeSum += s.timesMs[i]! * s.runs;
      seen.set(page, e);
    });
  }
  const kept = [...seen.entries()].filter(([, e]) => e.runs >= minRuns).map(([page, e]) => ({ page, t: e.timeSum / e.runs }));
  kept.sort((a, b) => a.t - b.t || a.page - b.page);
  return {
    snapshot: first.snapshot,
    pageSizeBytes: first.pageSizeBytes,
    runs: sets.reduce((n, s) => n + s.runs, 0),
    pages: Uint32Array.from(kept, (k) => k.page),
    timesMs: Uint32Array.from(kept, (k) => Math.round(k.t)),
  };
}

export interface Prediction {
  predicted: number;
  actual: number;
  /** Predicted and touched. */
  used: number;
  /** Predicted, never touched: prefetch work and memory wasted. */
  unused: number;
  /** Touched but not predicted: faults a prefetch would not have saved. */
  missed: number;
}

/** How well `predicted` foresaw the pages of `actual` (a recording of a run without prefetch). */
export function comparePrediction(predicted: WorkingSet, actual: WorkingSet): Prediction {
  const p = new Set(predicted.pages);
  let used = 0;
  for (const page of actual.pages) if (p.has(page)) used++;
  return { predicted: p.size, actual: actual.pages.length, used, unused: p.size - used, missed: actual.pages.length - used };
}
