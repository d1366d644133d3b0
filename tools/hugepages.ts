import fs from 'node:fs';

// 2 MiB huge pages for tests and benchmarks, from the kernel's pool (/proc/sys/vm/nr_hugepages).
const NR = '/proc/sys/vm/nr_hugepages';

function freeHugePages(): number {
  const m = /HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

function poolSize(): number {
  return Number(fs.readFileSync(NR, 'utf8').trim());
}

export interface HugePageReservation {
  /** Pages this reservation added to the pool (0 without root: free pages were used as they were). */
  readonly addedPages: number;
  /** Grows the pool again if fewer than `count` pages are free now (others took some); a reason when it cannot. */
  topUp: () => string | undefined;
  /** Shrinks the pool by what this reservation added, from what the pool is then. Idempotent. */
  release: () => void;
}

/**
 * Reserves `count` more 2 MiB huge pages, or returns why this host cannot.
 *
 * As root the pool grows by `count` whatever is free: free pages may be another run's (other
 * worktrees run their suites on this machine at the same time, and the pool is the kernel's, shared
 * by all). Using them emptied the pool under a running test once, and UFFDIO_COPY into hugetlbfs then
 * answers EEXIST for pages it cannot allocate. Giving back shrinks the pool by what was added, from
 * what it is then, never to a size read at the start: a concurrent reservation survives. Without
 * root, free pages are used if there are enough.
 */
export function reserveHugePages(count: number): HugePageReservation | string {
  let before: number;
  try {
    before = poolSize();
  } catch (err) {
    return `cannot read ${NR}: ${(err as Error).message}`;
  }
  try {
    fs.writeFileSync(NR, String(before + count));
  } catch (err) {
    if (freeHugePages() < count) return `cannot reserve huge pages via ${NR} (needs root): ${(err as Error).message}`;
    return {
      addedPages: 0,
      topUp: () =>
        freeHugePages() >= count
          ? undefined
          : `only ${freeHugePages()} of ${count} huge pages are free and ${NR} is not writable (needs root)`,
      release: () => undefined,
    };
  }
  let added = Math.max(0, poolSize() - before);
  const release = (): void => {
    if (added === 0) return;
    try {
      fs.writeFileSync(NR, String(Math.max(0, poolSize() - added)));
    } catch {
      /* the pool stays as it is: nothing else to do */
    }
    added = 0;
  };
  if (added < count) {
    const got = added;
    release();
    return `the kernel added only ${got} of ${count} huge pages (memory too fragmented?)`;
  }
  return {
    get addedPages() {
      return added;
    },
    topUp: () => {
      const free = freeHugePages();
      if (free >= count) return undefined;
      const pool = poolSize();
      try {
        fs.writeFileSync(NR, String(pool + count - free));
      } catch (err) {
        return `cannot top up huge pages via ${NR}: ${(err as Error).message}`;
      }
      added += Math.max(0, poolSize() - pool);
      return freeHugePages() >= count
        ? undefined
        : `only ${freeHugePages()} of ${count} huge pages free after topping up (memory too fragmented?)`;
    },
    release,
  };
}
