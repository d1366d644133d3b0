import type { PageSource } from '../memory/source.js';
import type { InstallKind } from './install-plan.js';
import type { PageView } from './install-plan.js';

/**
 * One read-ahead request per fault, made before its first copy: the window (on a cold page cache
 * the copy would otherwise fault the source in read-around windows, one synchronous read each)
 * and, when this fault continues a sequential stream, the next window too — 96 % of a real guest's
 * restore faults land within 64 KiB of the previous one. Scattered faults read no further ahead.
 */
export class ReadAhead {
  /** End of the last fault's window: a fault whose window starts there continues a sequential stream. */
  private lastWindowEnd = -1;

  constructor(
    private readonly source: PageSource,
    private readonly pages: PageView,
    private readonly pageSizeBytes: number,
  ) {}

  /** Before installing the window [start, start + len) of a fault whose own page is of `faultKind`. */
  request(start: number, len: number, faultKind: InstallKind, regionEnd: number): void {
    const end = start + len;
    const stream = start === this.lastWindowEnd && end < regionEnd && !this.pages.isInstalled(end);
    const aheadStart = faultKind === 'data' && len > this.pageSizeBytes ? start : end;
    const aheadEnd = stream ? Math.min(regionEnd, end + len) : end;
    if (aheadEnd > aheadStart) this.source.prepare(aheadStart, aheadEnd - aheadStart);
  }

  /** The fault's window was served: the next fault continues the stream if its window starts at `end`. */
  served(end: number): void {
    this.lastWindowEnd = end;
  }
}
