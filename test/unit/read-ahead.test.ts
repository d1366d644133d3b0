// Read-ahead on its own: which snapshot ranges a fault asks the source to prepare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadAhead } from '../../src/serve/read-ahead.js';
import { FakeSource, PS } from '../helpers/fake-uffd.js';

function setup(installed = new Set<number>()) {
  const source = new FakeSource(1024 * PS);
  const pages = { isInstalled: (off: number) => installed.has(off / PS), kindOf: () => 'data' as const };
  return { source, ra: new ReadAhead(source, pages, PS) };
}

test('a scattered one-page fault asks for nothing (the copy reads its page)', () => {
  const { source, ra } = setup();
  ra.request(100 * PS, PS, 'data', 1024 * PS);
  assert.deepEqual(source.prepared, []);
});

test('a data fault with a larger window asks for the window; a zero fault does not', () => {
  const { source, ra } = setup();
  ra.request(64 * PS, 64 * PS, 'data', 1024 * PS);
  ra.request(256 * PS, 64 * PS, 'zero', 1024 * PS);
  assert.deepEqual(source.prepared, [[64 * PS, 64 * PS]]);
});

test('a fault whose window starts where the last one ended also asks for the next window, never past the region', () => {
  const { source, ra } = setup();
  ra.request(0, 64 * PS, 'data', 1024 * PS);
  ra.served(64 * PS);
  ra.request(64 * PS, 64 * PS, 'data', 1024 * PS);
  ra.served(128 * PS);
  ra.request(128 * PS, 64 * PS, 'data', 224 * PS);
  assert.deepEqual(source.prepared, [
    [0, 64 * PS],
    [64 * PS, 128 * PS],
    [128 * PS, 96 * PS],
  ]);
});

test('a stream whose next page is installed already reads no further ahead', () => {
  const { source, ra } = setup(new Set([128]));
  ra.request(0, 64 * PS, 'data', 1024 * PS);
  ra.served(64 * PS);
  ra.request(64 * PS, 64 * PS, 'data', 1024 * PS);
  assert.deepEqual(source.prepared.at(-1), [64 * PS, 64 * PS]);
});
