import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Installer } from '../../src/serve/installer.js';
import { PageState } from '../../src/serve/page-state.js';
import { Prefetcher } from '../../src/serve/prefetcher.js';
import { VmStats } from '../../src/serve/stats.js';
import { GuestMemory } from '../../src/memory/regions.js';
import { ERRNO } from '../../src/kernel/errors.js';
import { FakeSource, FakeUffd, HOST, PS } from '../helpers/fake-uffd.js';

function setup(prefetch: number[], sizeBytes = 64 * PS) {
  const source = new FakeSource(sizeBytes);
  const uffd = new FakeUffd();
  const stats = new VmStats();
  const memory = new GuestMemory([{ hostAddr: HOST, sizeBytes, fileOffset: 0 }], PS);
  const pages = new PageState(source, PS);
  const installer = new Installer({ uffd, source, pages, stats, pageSizeBytes: PS });
  const prefetcher = new Prefetcher({ memory, source, uffd, pages, installer, stats, prefetchPages: Uint32Array.from(prefetch) });
  return { source, uffd, stats, pages, prefetcher };
}

test('one step: coalesced installs without wake, one wake over the span, installed pages skipped', () => {
  const { uffd, stats, pages, prefetcher } = setup([4, 5, 6, 9, 2]);
  pages.markInstalled(5 * PS, 6 * PS);
  prefetcher.step();
  assert.deepEqual(
    uffd.calls.map((c) => [c.op, (c.dst - HOST) / PS, c.len / PS, c.wake]),
    [
      ['copy', 4, 1, false],
      ['copy', 6, 1, false],
      ['copy', 9, 1, false],
      ['copy', 2, 1, false],
      ['wake', 2, 8, undefined],
    ],
  );
  assert.equal(stats.get('prefetchedPages'), 4);
  assert.equal(prefetcher.ready, false, 'nothing left');
});

test('EAGAIN pauses until resume(); a fetching source blocks until sourceReady(); both resume at the same page', () => {
  const { uffd, source, prefetcher } = setup([1, 2, 3]);
  uffd.script = [ERRNO.EAGAIN];
  prefetcher.step();
  assert.ok(prefetcher.paused && !prefetcher.ready);
  prefetcher.resume();
  source.fetching = true;
  prefetcher.step();
  assert.equal(prefetcher.ready, false, 'blocked on the source');
  assert.equal(prefetcher.paused, false);
  source.fetching = false;
  prefetcher.sourceReady();
  prefetcher.step();
  assert.deepEqual(
    [1, 2, 3].map((p) => uffd.mapped.has(HOST + p * PS)),
    [true, true, true],
  );
});

test('a refused prefetch page is skipped, never fatal', () => {
  const { uffd, stats, prefetcher } = setup([1, 2, 3]);
  uffd.refuse.set(HOST + 2 * PS, ERRNO.ENOENT);
  prefetcher.step();
  assert.ok(uffd.mapped.has(HOST + PS) && !uffd.mapped.has(HOST + 3 * PS));
  assert.equal(stats.get('speculativeErrors'), 1);
});

const REGION_PAGES = (4 * 1024 * 1024) / PS;
const STEP_PAGES = (256 * 1024) / PS;

/**
 * A working set of one prefetch step's pages at the start of each of `regions` 4 MiB regions (a
 * step installs one region's), for a fetching source of `unitBytes` units that allows `units`
 * ahead. `ahead`: what it was told; `named()`: the units named so far.
 */
function fetchingSetup(regions: number, unitBytes: number, units: number) {
  const ws = Array.from({ length: regions }, (_, r) => Array.from({ length: STEP_PAGES }, (_, k) => r * REGION_PAGES + k)).flat();
  const s = setup(ws, regions * REGION_PAGES * PS);
  const ahead: Array<[number, number]> = [];
  s.source.fetchAhead = { unitBytes, units, prepare: (off, len) => ahead.push([off, len]) };
  const named = (): number[] => [...new Set(ahead.map(([off]) => Math.floor(off / unitBytes)))];
  return { ...s, ahead, named };
}

test('a fetching source is told the pages of as many of its units (chunks) ahead as it allows, one more as the cursor leaves one', () => {
  const { source, prefetcher, ahead, named } = fetchingSetup(20, REGION_PAGES * PS, 16);
  prefetcher.step();
  assert.deepEqual(
    named(),
    Array.from({ length: 16 }, (_, r) => r),
    'the first step names 16 regions, not the whole working set',
  );
  assert.deepEqual(
    ahead.slice(0, 2),
    [
      [0, STEP_PAGES * PS],
      [REGION_PAGES * PS, STEP_PAGES * PS],
    ],
    'as runs of pages',
  );
  assert.deepEqual(source.prepared, [], 'fetchAhead instead of prepare: not all 20 units, though within 16 MiB of pages');
  prefetcher.step();
  assert.deepEqual(
    named(),
    Array.from({ length: 17 }, (_, r) => r),
    'region 0 done: region 16 named',
  );
  while (prefetcher.ready) prefetcher.step();
  assert.deepEqual(
    named(),
    Array.from({ length: 20 }, (_, r) => r),
  );
});

test('big units, few allowed: a source of 16 MiB chunks that may hold 2 ahead is told the pages of 2 chunks, not 16 regions of 4 MiB', () => {
  // 32 regions of 4 MiB: 8 units of 16 MiB.
  const { prefetcher, ahead, named } = fetchingSetup(32, 4 * REGION_PAGES * PS, 2);
  prefetcher.step();
  assert.deepEqual(named(), [0, 1], 'the first step names 2 units');
  assert.equal(ahead.length, 8, 'the pages of their 8 regions');
  for (let k = 0; k < 3; k++) prefetcher.step();
  assert.deepEqual(named(), [0, 1], 'unit 0 not passed yet: nothing more named');
  prefetcher.step();
  assert.deepEqual(named(), [0, 1, 2], 'unit 0 passed: unit 2 named');
  while (prefetcher.ready) prefetcher.step();
  assert.deepEqual(named(), [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('a source that reads a local file (no fetchAhead) is told 16 MiB of working-set pages ahead, no more', () => {
  const ws = Array.from({ length: 6000 }, (_, k) => k);
  const { source, prefetcher } = setup(ws, 6000 * PS);
  prefetcher.step();
  assert.deepEqual(source.prepared, [[0, 4096 * PS]]);
});
