import { IntervalSet } from '../memory/intervals.js';
import type { PageSource } from '../memory/source.js';
import type { InstallKind, PageView } from './install-plan.js';

/**
 * What one VM's fault loop knows about each snapshot page: installed or not, and the balloon's
 * doing. Offsets are snapshot offsets.
 * - installed: one bit per page, set on install, cleared by REMOVE. Trusted only to skip
 *   neighbours: the faulting page is always installed (EEXIST costs one ioctl), because a page can
 *   be zapped without our knowing (a REMOVE's zap runs after we read the event).
 * - dead: ranges the balloon removed; served as zeros forever, even after the guest wrote and the
 *   balloon removed them again.
 * - removedUntouched: removed and not installed since, what `pack --removed` may drop. Any install
 *   takes a page out, even a neighbour's: the guest can write an installed page without faulting.
 */
export class PageState implements PageView {
  private readonly installed: Uint8Array;
  private readonly dead = new IntervalSet();
  private readonly removedUntouched = new IntervalSet();

  constructor(
    private readonly source: PageSource,
    private readonly pageSizeBytes: number,
  ) {
    this.installed = new Uint8Array(Math.ceil(source.sizeBytes / pageSizeBytes / 8));
  }

  isInstalled(offset: number): boolean {
    const p = offset / this.pageSizeBytes;
    return (this.installed[p >>> 3]! & (1 << (p & 7))) !== 0;
  }

  isRemoved(offset: number): boolean {
    return this.dead.rangeCount > 0 && this.dead.has(offset);
  }

  kindOf(offset: number): InstallKind {
    if (this.isRemoved(offset)) return 'removed';
    return this.source.isZero(offset, this.pageSizeBytes) ? 'zero' : 'data';
  }

  /** [start, end) was installed (by us, or found mapped: EEXIST). */
  markInstalled(start: number, end: number): void {
    this.setBits(start, end, true);
    if (this.removedUntouched.rangeCount > 0 && this.removedUntouched.intersects(start, end)) this.removedUntouched.delete(start, end);
  }

  /** The balloon removed [start, end): zeros from now on, and not installed any more. */
  markRemoved(start: number, end: number): void {
    this.dead.add(start, end);
    this.removedUntouched.add(start, end);
    this.setBits(start, end, false);
  }

  removedRanges(): Array<[start: number, end: number]> {
    return this.removedUntouched.toArray();
  }

  private setBits(start: number, end: number, on: boolean): void {
    const last = Math.ceil(end / this.pageSizeBytes);
    for (let p = Math.floor(start / this.pageSizeBytes); p < last; p++) {
      if (on) this.installed[p >>> 3]! |= 1 << (p & 7);
      else this.installed[p >>> 3]! &= ~(1 << (p & 7));
    }
  }
}
