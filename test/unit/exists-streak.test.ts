// The EEXIST streak guard on its own: a page answered EEXIST fault after fault is not mapped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXISTS_STREAK_LIMIT, ExistsStreaks } from '../../src/serve/exists-streak.js';
import { FcUffdError } from '../../src/errors.js';

const PS = 4096;

test('a page may be answered EEXIST EXISTS_STREAK_LIMIT times in a row; one more ends the VM with VM_PAGE_NOT_INSTALLED', () => {
  const s = new ExistsStreaks(PS);
  for (let i = 0; i < EXISTS_STREAK_LIMIT; i++) s.count(0x1000);
  assert.throws(
    () => s.count(0x1000),
    (e: unknown) => e instanceof FcUffdError && e.code === 'VM_PAGE_NOT_INSTALLED' && /faulted on 65 times/.test(e.message),
  );
});

test('an install ends the streak of its page only', () => {
  const s = new ExistsStreaks(PS);
  for (let i = 0; i < EXISTS_STREAK_LIMIT; i++) {
    s.count(0x1000);
    s.count(0x2000);
  }
  s.end(0x1000);
  assert.equal(s.size, 1);
  s.count(0x1000);
  assert.throws(() => s.count(0x2000), { code: 'VM_PAGE_NOT_INSTALLED' });
});

test('a REMOVE ends the streaks of the pages in its range, not of others', () => {
  const s = new ExistsStreaks(PS);
  for (let i = 0; i < EXISTS_STREAK_LIMIT; i++) for (const p of [0x1000, 0x2000, 0x3000]) s.count(p);
  s.endRange(0x1000, 0x3000);
  assert.equal(s.size, 1, 'only 0x3000 (the range end is exclusive) keeps its streak');
  s.count(0x1000);
  s.count(0x2000);
  assert.throws(() => s.count(0x3000), { code: 'VM_PAGE_NOT_INSTALLED' });
});
