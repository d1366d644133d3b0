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
  /** Ioctls and pages of on-demand installs (faulting pages and their fault-around windows; prefetch not counted). */
  'faultIoctls',
  'faultPagesInstalled',
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
/**
 * Fault-around window sizes: bucket i counts windows of at most WINDOW_BUCKET_BYTES[i] (and more than
 * the bucket before), the last bucket every larger window (fixed windows go up to 1 GiB).
 */
export const WINDOW_BUCKET_BYTES = [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048].map((k) => k * 1024);
const WINDOW_BASE = HIST_BASE + HIST_BUCKETS;
const SLOTS = WINDOW_BASE + WINDOW_BUCKET_BYTES.length + 1;

export interface LatencySummary {
  count: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
}

/** What fault-around cost: on-demand installs per fault. */
export interface FaultAroundCost {
  /** Pages installed on demand per fault (1: no fault-around, or every neighbour already there). */
  amplification: number;
  ioctlsPerFault: number;
  /** Windows per size bucket: counts[i] for WINDOW_BUCKET_BYTES[i], the last for larger ones. */
  windowCounts: number[];
}

export type StatsSnapshot = Record<CounterName, number> & { latency: LatencySummary; faultAround: FaultAroundCost };

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

  /** One served fault's fault-around window. */
  recordWindow(lenBytes: number): void {
    let i = 0;
    while (i < WINDOW_BUCKET_BYTES.length && lenBytes > WINDOW_BUCKET_BYTES[i]!) i++;
    this.slots[WINDOW_BASE + i]! += 1;
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
      faultAround: {
        amplification: out.faults === 0 ? 0 : out.faultPagesInstalled / out.faults,
        ioctlsPerFault: out.faults === 0 ? 0 : out.faultIoctls / out.faults,
        windowCounts: Array.from(this.slots.subarray(WINDOW_BASE, SLOTS)),
      },
    };
  }
}
