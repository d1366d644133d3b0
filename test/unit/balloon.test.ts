// REMOVE events on their own: host ranges mapped to snapshot ranges per region, streaks ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BalloonRemoves } from '../../src/serve/balloon.js';
import { EXISTS_STREAK_LIMIT, ExistsStreaks } from '../../src/serve/exists-streak.js';
import { PageState } from '../../src/serve/page-state.js';
import { VmStats } from '../../src/serve/stats.js';
import { GuestMemory } from '../../src/memory/regions.js';
import { FakeSource, HOST, PS } from '../helpers/fake-uffd.js';

test('a REMOVE across two regions marks each overlapped snapshot range removed, counts its bytes, and ends streaks in it', () => {
  // Region A: host [HOST, +16 pages) = file [0, 16); region B: host [HOST + 32 pages, +16) = file [16, 32).
  const memory = new GuestMemory(
    [
      { hostAddr: HOST, sizeBytes: 16 * PS, fileOffset: 0 },
      { hostAddr: HOST + 32 * PS, sizeBytes: 16 * PS, fileOffset: 16 * PS },
    ],
    PS,
  );
  const pages = new PageState(new FakeSource(32 * PS), PS);
  pages.markInstalled(0, 32 * PS);
  const streaks = new ExistsStreaks(PS);
  for (let i = 0; i < EXISTS_STREAK_LIMIT; i++) {
    streaks.count(HOST + 14 * PS);
    streaks.count(HOST + 2 * PS);
  }
  const stats = new VmStats();
  // Host pages 12..35: region A's pages 12..15 (file 12..15), the gap, region B's 32..35 (file 16..19).
  new BalloonRemoves(memory, pages, streaks, stats, undefined).apply(HOST + 12 * PS, HOST + 36 * PS);
  assert.deepEqual(pages.removedRanges(), [[12 * PS, 20 * PS]]);
  assert.equal(stats.get('removeEvents'), 1);
  assert.equal(stats.get('bytesRemoved'), 8 * PS);
  assert.equal(pages.kindOf(12 * PS), 'removed');
  assert.equal(pages.isInstalled(12 * PS), false);
  assert.equal(pages.kindOf(11 * PS), 'data');
  assert.equal(streaks.size, 1, 'the streak of host page 14 ended, that of page 2 did not');
});
