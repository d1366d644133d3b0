import { pageNotInstalled } from './vm-errors.js';

/**
 * Faults in a row on one page that the kernel answered EEXIST, with no install or REMOVE of that page
 * between, after which the page is taken to be not mapped. A mapped page is faulted on again only by
 * vCPUs that raced for it before it was mapped: at most one fault each (Firecracker: 32 vCPUs).
 */
export const EXISTS_STREAK_LIMIT = 64;
/** Pages tracked for EEXIST streaks; past this the record starts over (a streak lost only delays the verdict). */
const EXISTS_STREAK_PAGES_MAX = 4096;

/**
 * Host page -> faults in a row answered EEXIST. UFFDIO_COPY into hugetlbfs answers EEXIST when no
 * huge page can be allocated; trusting it, the loop would wake the vCPU into the same fault
 * forever (seen: 120 000 faults a minute on one page, the guest hung). See EXISTS_STREAK_LIMIT.
 * Empty on a healthy VM, so the fault path's check (`size > 0`) costs one load.
 */
export class ExistsStreaks {
  private readonly streak = new Map<number, number>();

  constructor(private readonly pageSizeBytes: number) {}

  get size(): number {
    return this.streak.size;
  }

  /** One more fault on `page` answered EEXIST; throws VM_PAGE_NOT_INSTALLED once that cannot be a race any more. */
  count(page: number): void {
    const streak = (this.streak.get(page) ?? 0) + 1;
    if (streak > EXISTS_STREAK_LIMIT) throw pageNotInstalled(page, this.pageSizeBytes, streak);
    if (this.streak.size >= EXISTS_STREAK_PAGES_MAX) this.streak.clear();
    this.streak.set(page, streak);
  }

  /** `page` was installed: its streak ends. */
  end(page: number): void {
    this.streak.delete(page);
  }

  /** The balloon removed [start, end) (host addresses): a removed page faults again legitimately. */
  endRange(start: number, end: number): void {
    for (const page of this.streak.keys()) if (page >= start && page < end) this.streak.delete(page);
  }
}
