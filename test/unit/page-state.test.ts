import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PageState } from '../../src/serve/page-state.js';
import { TouchRecorder } from '../../src/serve/recorder.js';
import { FakeSource, PS } from '../helpers/fake-uffd.js';

test('kinds: data, zero from the source, removed once the balloon took a page, forever', () => {
  const s = new PageState(new FakeSource(16 * PS, new Set([3])), PS);
  assert.equal(s.kindOf(0), 'data');
  assert.equal(s.kindOf(3 * PS), 'zero');
  s.markInstalled(0, 4 * PS);
  s.markRemoved(2 * PS, 6 * PS);
  assert.equal(s.kindOf(2 * PS), 'removed');
  assert.ok(s.isInstalled(PS) && !s.isInstalled(2 * PS), 'REMOVE clears installed');
  s.markInstalled(2 * PS, 3 * PS);
  assert.equal(s.kindOf(2 * PS), 'removed', 'installing a removed page keeps it removed');
  assert.deepEqual(s.removedRanges(), [[3 * PS, 6 * PS]], 'an installed page leaves the removed-untouched export');
});

test('the recorder keeps first installs in order, once each, with their time', () => {
  let t = 0;
  const r = new TouchRecorder(16 * PS, PS, () => t);
  t = 5;
  r.record(4 * PS, 2 * PS);
  t = 9;
  r.record(PS, 4 * PS);
  assert.deepEqual([...r.touches().pages], [4, 5, 1, 2, 3]);
  assert.deepEqual([...r.touches().timesMs], [5, 5, 9, 9, 9]);
});
