/** How a page is installed: snapshot bytes, a zero page, or a zero page because the balloon removed it. */
export type InstallKind = 'data' | 'zero' | 'removed';

/**
 * Why a run is installed: the faulting page (and the following pages of the same kind, in the same
 * ioctl), the rest of the fault-around window, or a working-set prefetch. Prefetch installs do not
 * wake (one wake covers a whole step) and are not recorded as touches.
 */
export type RunOrigin = 'fault' | 'fault-around' | 'prefetch';

/** Consecutive pages of one kind installed by one ioctl (more when the kernel stops part-way). */
export interface InstallRun {
  /** Snapshot offset of the first page. For a 'fault' run, the faulting page. */
  readonly startOffset: number;
  readonly lenBytes: number;
  readonly kind: InstallKind;
  readonly origin: RunOrigin;
  /**
   * True when no page of the run was faulted on: a refusal stops speculating, never the VM. A
   * 'fault' run is speculative past its first page only (see Installer).
   */
  readonly speculative: boolean;
}

/** What the planner needs to know about a page (snapshot offset, page aligned). */
export interface PageView {
  isInstalled(offset: number): boolean;
  kindOf(offset: number): InstallKind;
}

/**
 * The installs for one fault, in order: first the faulting page together with the following pages of
 * the window that are of the same kind and not installed (one ioctl, with wake: the vCPU resumes
 * after it), then the rest of the window in runs by kind, skipping installed pages. Pure: it reads
 * `pages` and decides, the Installer acts.
 */
export function planFaultInstall(
  faultOffset: number,
  window: { startOffset: number; lenBytes: number },
  pageSizeBytes: number,
  pages: PageView,
): InstallRun[] {
  const ps = pageSizeBytes;
  const windowEnd = window.startOffset + window.lenBytes;
  const kind = pages.kindOf(faultOffset);
  let faultRunEnd = faultOffset + ps;
  while (faultRunEnd < windowEnd && !pages.isInstalled(faultRunEnd) && pages.kindOf(faultRunEnd) === kind) faultRunEnd += ps;
  const runs: InstallRun[] = [{ startOffset: faultOffset, lenBytes: faultRunEnd - faultOffset, kind, origin: 'fault', speculative: false }];
  const inFaultRun = (offset: number): boolean => offset >= faultOffset && offset < faultRunEnd;
  let p = window.startOffset;
  while (p < windowEnd) {
    if (inFaultRun(p) || pages.isInstalled(p)) {
      p += ps;
      continue;
    }
    const k = pages.kindOf(p);
    let e = p + ps;
    while (e < windowEnd && !inFaultRun(e) && !pages.isInstalled(e) && pages.kindOf(e) === k) e += ps;
    runs.push({ startOffset: p, lenBytes: e - p, kind: k, origin: 'fault-around', speculative: true });
    p = e;
  }
  return runs;
}
