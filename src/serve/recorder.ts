/** What one VM touched, in first-touch order (see working-set.ts). */
export interface RecordedTouches {
  pages: Uint32Array;
  timesMs: Uint32Array;
}

/**
 * Records pages installed on demand: the faulting pages and their fault-around neighbours. The
 * neighbours count because the guest reads an installed page without faulting, so only what was
 * installed on demand tells what a prefetch must cover to spare the same faults.
 */
export class TouchRecorder {
  private readonly seen: Uint8Array;
  private readonly pages: number[] = [];
  private readonly timesMs: number[] = [];
  private readonly startMs: number;

  constructor(
    sizeBytes: number,
    private readonly pageSizeBytes: number,
    private readonly now: () => number,
  ) {
    this.seen = new Uint8Array(Math.ceil(sizeBytes / pageSizeBytes / 8));
    this.startMs = now();
  }

  record(offset: number, lenBytes: number): void {
    const t = Math.max(0, Math.round(this.now() - this.startMs));
    for (let page = offset / this.pageSizeBytes, end = (offset + lenBytes) / this.pageSizeBytes; page < end; page++) {
      const bit = 1 << (page & 7);
      if (this.seen[page >>> 3]! & bit) continue;
      this.seen[page >>> 3]! |= bit;
      this.pages.push(page);
      this.timesMs.push(t);
    }
  }

  touches(): RecordedTouches {
    return { pages: Uint32Array.from(this.pages), timesMs: Uint32Array.from(this.timesMs) };
  }
}
