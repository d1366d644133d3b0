import fs from 'node:fs';
import type { TestContext } from 'node:test';

const NR = '/proc/sys/vm/nr_hugepages';

function freeHugePages(): number {
  const m = /HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/**
 * Reserves `count` more 2 MiB huge pages for a test (as root) and returns a function that gives
 * them back, or a reason string when this host cannot.
 */
export function reserveHugePages(count: number): { release: () => void } | string {
  let before: number;
  try {
    before = Number(fs.readFileSync(NR, 'utf8').trim());
  } catch (err) {
    return `cannot read ${NR}: ${(err as Error).message}`;
  }
  const freeBefore = freeHugePages();
  if (freeBefore >= count) return { release: () => {} };
  try {
    fs.writeFileSync(NR, String(before + count - freeBefore));
  } catch (err) {
    return `cannot reserve huge pages via ${NR} (needs root): ${(err as Error).message}`;
  }
  if (freeHugePages() < count) {
    fs.writeFileSync(NR, String(before));
    return `the kernel reserved only ${freeHugePages()} of ${count} huge pages (memory too fragmented?)`;
  }
  return { release: () => fs.writeFileSync(NR, String(before)) };
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
