import type { GuestMemory } from '../memory/regions.js';
import type { TraceRecorder } from '../trace/recorder.js';
import type { ExistsStreaks } from './exists-streak.js';
import type { PageState } from './page-state.js';
import type { VmStats } from './stats.js';

/**
 * The balloon's REMOVE events: a host range the guest gave back is, in every region it overlaps,
 * served as zeros from now on (PageState.markRemoved), and its pages may fault again (their EEXIST
 * streaks end). The fault loop applies every REMOVE of a batch before serving any fault of it.
 */
export class BalloonRemoves {
  constructor(
    private readonly memory: GuestMemory,
    private readonly pages: PageState,
    private readonly existsStreak: ExistsStreaks,
    private readonly stats: VmStats,
    private readonly trace: TraceRecorder | undefined,
  ) {}

  /** The VMM's REMOVE of host addresses [start, end). */
  apply(start: number, end: number): void {
    this.stats.add('removeEvents');
    if (this.existsStreak.size > 0) this.existsStreak.endRange(start, end);
    for (const r of this.memory.regions) {
      const s = Math.max(start, r.hostAddr);
      const e = Math.min(end, r.hostAddr + r.sizeBytes);
      if (s >= e) continue;
      const fs = s - r.hostAddr + r.fileOffset;
      const fe = e - r.hostAddr + r.fileOffset;
      this.pages.markRemoved(fs, fe);
      this.stats.add('bytesRemoved', fe - fs);
      this.trace?.remove(fs, fe - fs);
    }
  }
}
