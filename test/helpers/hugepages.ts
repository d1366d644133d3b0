import type { TestContext } from 'node:test';
import { reserveHugePages } from '../../tools/hugepages.js';

/**
 * Reserves `count` huge pages for test `t` (tools/hugepages.ts: the pool grows by `count` and
 * shrinks by as much after), or skips it with the host's reason. Returns the function that gives
 * them back, or undefined when the test was skipped.
 */
export function hugePagesOrSkip(t: TestContext, count: number): (() => void) | undefined {
  const reservation = reserveHugePages(count);
  if (typeof reservation === 'string') {
    t.skip(`no huge pages on this host: ${reservation}`);
    return undefined;
  }
  return reservation.release;
}
