import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkWorkingSetFits,
  comparePrediction,
  decodeWorkingSet,
  encodeWorkingSet,
  mergeWorkingSets,
  type WorkingSet,
} from '../../src/serve/working-set.js';

const ws = (pages: number[], times?: number[], snapshot = 'memfile:1:aa'): WorkingSet => ({
  snapshot,
  pageSizeBytes: 4096,
  runs: 1,
  pages: Uint32Array.from(pages),
  timesMs: Uint32Array.from(times ?? pages.map((_, i) => i)),
});

test('encode/decode round trip, and unknown versions are refused', () => {
  const a = ws([5, 6, 7, 100, 3], [0, 1, 1, 9, 20]);
  const b = decodeWorkingSet(encodeWorkingSet(a));
  assert.deepEqual([...b.pages], [5, 6, 7, 100, 3]);
  assert.deepEqual([...b.timesMs], [0, 1, 1, 9, 20]);
  assert.equal(b.snapshot, a.snapshot);
  const future = JSON.parse(encodeWorkingSet(a)) as Record<string, unknown>;
  future.version = 2;
  assert.throws(() => decodeWorkingSet(JSON.stringify(future)), { code: 'WORKING_SET', message: /version 2 is not supported/ });
  assert.throws(() => decodeWorkingSet('{"format":"something-else"}'), { code: 'WORKING_SET' });
  const cut = JSON.parse(encodeWorkingSet(a)) as Record<string, unknown>;
  cut.count = 9;
  assert.throws(() => decodeWorkingSet(JSON.stringify(cut)), /expected 36/);
});

test('a count, page size or run count that is not a sane whole number is refused with WORKING_SET', () => {
  const file = JSON.parse(encodeWorkingSet(ws([1]))) as Record<string, unknown>;
  // The fuzzer's find: a count of 1.5 with 6 bytes of pages once reached new Uint32Array(1.5), a RangeError.
  const bad: Array<[string, unknown, RegExp]> = [
    ['count', 1.5, /count 1.5 is not a whole number/],
    ['count', -1, /count -1/],
    ['pageSizeBytes', 0, /page size 0 bytes/],
    ['pageSizeBytes', 3 * 2 ** 32, /not a power of two up to 1 GiB/],
    ['pageSizeBytes', 4095, /4095/],
    ['runs', 0, /runs 0/],
    ['runs', 'two', /runs two/],
  ];
  for (const [key, value, message] of bad)
    assert.throws(() => decodeWorkingSet(JSON.stringify({ ...file, [key]: value, pages: 'AAAAAAAA' })), { code: 'WORKING_SET', message });
  const { runs: _runs, ...noRuns } = file;
  assert.equal(decodeWorkingSet(JSON.stringify(noRuns)).runs, 1);
});

test('a working set of another snapshot or page size is refused', () => {
  assert.throws(() => checkWorkingSetFits(ws([1]), 'memfile:1:bb'), { code: 'WORKING_SET_MISMATCH' });
  assert.throws(() => checkWorkingSetFits(ws([1]), 'memfile:1:aa', 2 * 1024 * 1024), { code: 'WORKING_SET_MISMATCH' });
  checkWorkingSetFits(ws([1]), 'memfile:1:aa', 4096);
});

test('merge: union by mean first-touch time, intersection with min-runs', () => {
  const a = ws([1, 2, 3], [0, 10, 20]);
  const b = ws([3, 2, 4], [0, 12, 30]);
  const union = mergeWorkingSets([a, b]);
  assert.deepEqual([...union.pages], [1, 3, 2, 4]); // mean times 0, 10, 11, 30
  assert.equal(union.runs, 2);
  const both = mergeWorkingSets([a, b], 2);
  assert.deepEqual([...both.pages], [3, 2]);
  assert.throws(() => mergeWorkingSets([a, ws([1], [0], 'memfile:1:cc')]), { code: 'WORKING_SET_MISMATCH' });
});

test('prediction score: used, unused, missed', () => {
  assert.deepEqual(comparePrediction(ws([1, 2, 3, 4]), ws([3, 4, 5])), { predicted: 4, actual: 3, used: 2, unused: 2, missed: 1 });
});
