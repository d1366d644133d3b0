import fs from 'node:fs';
import type { TestContext } from 'node:test';

const NR = '/proc/sys/vm/nr_hugepages';

function freeHugePages(): number {
  const m = /HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

function poolSize(): number {
  return Number(fs.readFileSync(NR, 'utf8').trim());
}

/**
 * Reserves `count` more 2 MiB huge pages for a test and returns a function that gives them back, or
 * a reason string when this host cannot.
 *
 * As root the pool grows by `count` whatever is free: free pages may be another test run's (other
 * worktrees run their suites on this machine at the same time, and the pool is the kernel's, shared
 * by all). Using them emptied the pool under a running test once, and UFFDIO_COPY into hugetlbfs then
 * answers EEXIST for pages it cannot allocate. Giving back shrinks the pool by `count` from what it
 * is then, so a concurrent reservation survives. Without root, free pages are used if there are enough.
 */
export function reserveHugePages(count: number): { release: () => void } | string {
  let before: number;
  try {
    before = poolSize();
  } catch (err) {
    return `cannot read ${NR}: ${(err as Error).message}`;
  }
  try {
    fs.writeFileSync(NR, String(before + count));
  } catch (err) {
    if (freeHugePages() >= count) return { release: () => {} };
    return `cannot reserve huge pages via ${NR} (needs root): ${(err as Error).message}`;
  }
  const added = poolSize() - before;
  const giveBack = (n: number) => (): void => fs.writeFileSync(NR, String(Math.max(0, poolSize() - n)));
  if (added < count) {
    giveBack(Math.max(0, added))();
    return `the kernel added only ${added} of ${count} huge pages (memory too fragmented?)`;
  }
  return { release: giveBack(count) };
}

/**
 * Reserves `count` huge pages for test `t`, or skips it with the host's reason. Returns the
 * function that gives them back, or undefined when the test was skipped.
 */
export function hugePagesOrSkip(t: TestContext, count: number): (() => void) | undefined {
  const reservation = reserveHugePages(count);
  if (typeof reservation === 'string') {
    t.skip(`no huge pages on this host: ${reservation}`);
    return undefined;
  }
  return reservation.release;
}
