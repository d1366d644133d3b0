/**
 * Per-VM counters in a SharedArrayBuffer: the VM's worker writes them on the fault path (plain
 * stores, no messages), the main thread reads them whenever it likes (metrics, summaries). Values
 * are Float64 so byte counts stay exact up to 2^53.
 */
export const COUNTERS = [
  'faults',
  'pagesCopied',
  'pagesZeroed',
  'bytesCopied',
  'installIoctls',
  'eexist',
  'eagain',
  'deferrals',
  'maxDeferralUs',
  'speculativeErrors',
  'prefetchedPages',
  'removeEvents',
  'bytesRemoved',
  'zeroPagesForRemoved',
  'latencySumUs',
  'latencyMaxUs',
] as const;
export type CounterName = (typeof COUNTERS)[number];

const INDEX = Object.fromEntries(COUNTERS.map((name, i) => [name, i])) as Record<CounterName, number>;
/** Service latency histogram: bucket b holds latencies in [2^(b/8), 2^((b+1)/8)) ns, ~9 % wide. */
const HIST_BUCKETS = 256;
const HIST_BASE = 32;
const SLOTS = HIST_BASE + HIST_BUCKETS;

export interface LatencySummary {
  count: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
}

export type StatsSnapshot = Record<CounterName, number> & { latency: LatencySummary };

export class VmStats {
  readonly slots: Float64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(SLOTS * 8)) {
    this.slots = new Float64Array(buffer);
  }

  add(name: CounterName, n = 1): void {
    this.slots[INDEX[name]]! += n;
  }

  max(name: CounterName, value: number): void {
    if (value > this.slots[INDEX[name]]!) this.slots[INDEX[name]] = value;
  }

  get(name: CounterName): number {
    return this.slots[INDEX[name]]!;
  }

  recordLatency(us: number): void {
    const ns = Math.max(1, us * 1000);
    const bucket = Math.min(HIST_BUCKETS - 1, Math.floor(Math.log2(ns) * 8));
    this.slots[HIST_BASE + bucket]! += 1;
    this.slots[INDEX.latencySumUs]! += us;
    if (us > this.slots[INDEX.latencyMaxUs]!) this.slots[INDEX.latencyMaxUs] = us;
  }

  /** Latency at quantile q (0..1), as the geometric middle of its histogram bucket. */
  quantileUs(q: number): number {
    let total = 0;
    for (let b = 0; b < HIST_BUCKETS; b++) total += this.slots[HIST_BASE + b]!;
    if (total === 0) return 0;
    const rank = Math.ceil(q * total);
    let seen = 0;
    for (let b = 0; b < HIST_BUCKETS; b++) {
      seen += this.slots[HIST_BASE + b]!;
      if (seen >= rank) return Math.min(2 ** ((b + 0.5) / 8) / 1000, this.get('latencyMaxUs'));
    }
    return this.get('latencyMaxUs');
  }

  snapshot(): StatsSnapshot {
    const out = Object.fromEntries(COUNTERS.map((name) => [name, this.get(name)])) as Record<CounterName, number>;
    let count = 0;
    for (let b = 0; b < HIST_BUCKETS; b++) count += this.slots[HIST_BASE + b]!;
    return {
      ...out,
      latency: {
        count,
        p50Us: this.quantileUs(0.5),
        p90Us: this.quantileUs(0.9),
        p99Us: this.quantileUs(0.99),
        maxUs: this.get('latencyMaxUs'),
        meanUs: count === 0 ? 0 : this.get('latencySumUs') / count,
      },
    };
  }
}
