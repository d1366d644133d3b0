/** A fault not served yet. */
export interface PendingFault {
  address: number;
  readAtMs: number;
  /** When it was first put off (EAGAIN, or its bytes still being fetched). */
  deferredAtMs?: number;
  /**
   * The fault-around window chosen at its first try. A retry installs the same one: the policy is
   * asked once per fault, so an adaptive policy never takes a retry for a stream going on.
   */
  window?: { startOffset: number; lenBytes: number };
}

/** EAGAIN retries back off from 50 µs to at most 5 ms: short enough that a deferred vCPU is never parked long. */
const BACKOFF_MIN_US = 50;
const BACKOFF_MAX_US = 5000;

/**
 * Faults put off: `deferred` after EAGAIN (retried after every wait, with a backoff that resets on
 * progress: EAGAIN lasts as long as any REMOVE is pending, and a vCPU must not wait on a poll that
 * will not wake), `waiting` for bytes the source is fetching (retried when it signals).
 */
export class PendingFaults {
  private deferred: PendingFault[] = [];
  private waiting: PendingFault[] = [];
  private backoff = BACKOFF_MIN_US;

  get count(): number {
    return this.deferred.length + this.waiting.length;
  }

  get hasDeferred(): boolean {
    return this.deferred.length > 0;
  }

  get backoffUs(): number {
    return this.backoff;
  }

  /** Every fault put off, for a diagnosis (a VM that ends with faults unserved). */
  list(): Array<PendingFault & { waiting: boolean }> {
    return [...this.deferred.map((f) => ({ ...f, waiting: false })), ...this.waiting.map((f) => ({ ...f, waiting: true }))];
  }

  /** One line per fault put off (address, why, for how long): for the log of a VM that ends with faults unserved. */
  describe(nowMs: number): string[] {
    return this.list().map(
      (f) =>
        `0x${f.address.toString(16)} ${f.waiting ? 'waiting for the source' : `deferred after EAGAIN (retry backoff ${this.backoff} µs)`} for ${Math.round(nowMs - (f.deferredAtMs ?? f.readAtMs))} ms`,
    );
  }

  defer(f: PendingFault): void {
    this.deferred.push(f);
  }

  wait(f: PendingFault): void {
    this.waiting.push(f);
  }

  /** Serves every deferred fault again (those still refused are deferred anew), then adjusts the backoff. */
  retryDeferred(serve: (f: PendingFault) => void): void {
    if (this.deferred.length === 0) return;
    const pending = this.deferred;
    this.deferred = [];
    for (const f of pending) serve(f);
    // Progress means the address space settled: retry the rest soon. No progress: back off.
    const progressed = this.deferred.length < pending.length;
    this.backoff = progressed || this.deferred.length === 0 ? BACKOFF_MIN_US : Math.min(this.backoff * 2, BACKOFF_MAX_US);
  }

  /** Serves every fault that waited for the source again. */
  retryWaiting(serve: (f: PendingFault) => void): void {
    const pending = this.waiting;
    this.waiting = [];
    for (const f of pending) serve(f);
  }
}
