import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FixedFaultAround, faultAroundPolicyFor } from '../../src/serve/fault-around.js';

const PS = 4096;
const KiB = 1024;

test('FixedFaultAround: the aligned block around the fault', () => {
  const p = new FixedFaultAround(64 * KiB, PS);
  assert.deepEqual(p.window(5 * PS, 0, 1024 * PS), { startOffset: 0, lenBytes: 64 * KiB });
  assert.deepEqual(p.window(17 * PS, 0, 1024 * PS), { startOffset: 16 * PS, lenBytes: 64 * KiB });
});

test('FixedFaultAround: clipped to the region, and a region starting inside a block starts the window', () => {
  const p = new FixedFaultAround(64 * KiB, PS);
  assert.deepEqual(p.window(30 * PS, 0, 31 * PS), { startOffset: 16 * PS, lenBytes: 15 * PS }, 'clipped at the region end');
  // Region [3, 40) pages: the block of page 5 is [0, 16), it starts at the region and still spans 16 pages.
  assert.deepEqual(p.window(5 * PS, 3 * PS, 40 * PS), { startOffset: 3 * PS, lenBytes: 16 * PS });
});

test('FixedFaultAround: the page size (or less) installs the faulting page only; not a power of two is refused', () => {
  assert.deepEqual(new FixedFaultAround(PS, PS).window(7 * PS, 0, 64 * PS), { startOffset: 7 * PS, lenBytes: PS });
  assert.deepEqual(new FixedFaultAround(0, PS).window(7 * PS, 0, 64 * PS), { startOffset: 7 * PS, lenBytes: PS });
  assert.throws(() => new FixedFaultAround(48 * KiB, PS), { code: 'CONFIG' });
});

test('every window contains the faulting page and stays inside the region', () => {
  const policy = faultAroundPolicyFor({ faultAround: 256 * KiB }, PS);
  for (let regionStart = 0; regionStart < 80; regionStart += 7) {
    for (let fault = regionStart; fault < regionStart + 200; fault += 3) {
      const w = policy.window(fault * PS, regionStart * PS, (regionStart + 200) * PS);
      assert.ok(w.startOffset <= fault * PS && fault * PS < w.startOffset + w.lenBytes, `fault ${fault} in its window`);
      assert.ok(w.startOffset >= regionStart * PS && w.startOffset + w.lenBytes <= (regionStart + 200) * PS);
      assert.equal(w.startOffset % PS, 0);
    }
  }
});
