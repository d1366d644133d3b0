// The control API's restore body: fault_around is a power of two or "adaptive", nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRestoreRequest } from '../../src/daemon/request.js';

const body = (extra: Record<string, unknown>): string => JSON.stringify({ mem: '/m', ...extra });

test('fault_around: "adaptive" and powers of two are accepted', () => {
  assert.equal(parseRestoreRequest(body({ fault_around: 'adaptive' })).fault_around, 'adaptive');
  assert.equal(parseRestoreRequest(body({ fault_around: 65536 })).fault_around, 65536);
  assert.equal(parseRestoreRequest(body({})).fault_around, undefined);
});

test('fault_around: other words, sizes as strings, non-powers of two and out-of-range sizes are refused, naming both forms', () => {
  for (const v of ['adaptiv', 'Adaptive ', '64k', 3000, 1024, 4 * 1024 * 1024, -4096, null, true]) {
    assert.throws(
      () => parseRestoreRequest(body({ fault_around: v })),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'CONTROL_BAD_REQUEST');
        assert.match(err.message, /^fault_around must be "adaptive" or a power of two in 4096\.\.2097152, got /);
        return true;
      },
      JSON.stringify(v),
    );
  }
});
