// Summaries over the runs of one figure: the median says what to expect, p99 and the spread say how
// much noise this machine added, so a ratio is only read as a win when the spreads do not overlap.

/** Nearest-rank quantile of already sorted values (q in [0, 1]). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

export interface Spread {
  n: number;
  median: number;
  p99: number;
  min: number;
  max: number;
  /** Interquartile range: 75th minus 25th percentile. */
  iqr: number;
}

export function spread(values: readonly number[]): Spread | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return {
    n: v.length,
    median: median(v),
    p99: quantile(v, 0.99),
    min: v[0]!,
    max: v[v.length - 1]!,
    iqr: quantile(v, 0.75) - quantile(v, 0.25),
  };
}

function median(sorted: readonly number[]): number {
  const m = sorted.length >> 1;
  return sorted.length % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
}

/** Formats a number for a table cell with about three significant digits. */
export function fmt(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  if (a >= 1e6) return `${(x / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(x / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}
