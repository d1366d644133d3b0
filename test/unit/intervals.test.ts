import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IntervalSet } from '../../src/memory/intervals.js';

test('add coalesces overlapping and touching ranges', () => {
  const s = new IntervalSet();
  s.add(10, 20);
  s.add(30, 40);
  s.add(20, 25);
  assert.deepEqual(s.toArray(), [
    [10, 25],
    [30, 40],
  ]);
  s.add(24, 31);
  assert.deepEqual(s.toArray(), [[10, 40]]);
  s.add(0, 5);
  s.add(50, 60);
  assert.deepEqual(s.toArray(), [
    [0, 5],
    [10, 40],
    [50, 60],
  ]);
  assert.equal(s.size, 45);
});

test('delete splits and trims', () => {
  const s = new IntervalSet();
  s.add(0, 100);
  s.delete(10, 20);
  s.delete(90, 200);
  s.delete(-5, 1);
  assert.deepEqual(s.toArray(), [
    [1, 10],
    [20, 90],
  ]);
  assert.equal(s.has(0), false);
  assert.equal(s.has(1), true);
  assert.equal(s.has(10), false);
  assert.equal(s.has(89), true);
  assert.equal(s.intersects(10, 20), false);
  assert.equal(s.intersects(15, 21), true);
});

test('matches a per-point model under random operations', () => {
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const s = new IntervalSet();
  const model = new Uint8Array(512);
  for (let i = 0; i < 3000; i++) {
    const a = rand(512);
    const b = Math.min(512, a + 1 + rand(40));
    if (rand(3) === 0) {
      s.delete(a, b);
      model.fill(0, a, b);
    } else {
      s.add(a, b);
      model.fill(1, a, b);
    }
  }
  for (let x = 0; x < 512; x++) assert.equal(s.has(x), model[x] === 1, `point ${x}`);
  const ranges = s.toArray();
  for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i - 1]![1] < ranges[i]![0], 'disjoint and coalesced');
});
