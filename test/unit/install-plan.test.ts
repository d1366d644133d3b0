import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planFaultInstall, type InstallKind, type PageView } from '../../src/serve/install-plan.js';

const PS = 4096;

const KINDS: Record<string, InstallKind> = { d: 'data', z: 'zero', r: 'removed' };

/** Pages by index: 'd' data, 'z' zero, 'r' removed; upper case: installed. */
function view(map: string): PageView {
  return {
    isInstalled: (off) => /[A-Z]/.test(map[off / PS]!),
    kindOf: (off) => KINDS[map[off / PS]!.toLowerCase()]!,
  };
}

const short = (runs: ReturnType<typeof planFaultInstall>) =>
  runs.map((r) => [r.startOffset / PS, r.lenBytes / PS, r.kind, r.origin, r.speculative]);

test('the faulting run first (the fault and the same-kind pages after it), then the rest of the window by kind', () => {
  const runs = planFaultInstall(2 * PS, { startOffset: 0, lenBytes: 8 * PS }, PS, view('dddzzddr'));
  assert.deepEqual(short(runs), [
    [2, 1, 'data', 'fault', false],
    [0, 2, 'data', 'fault-around', true],
    [3, 2, 'zero', 'fault-around', true],
    [5, 2, 'data', 'fault-around', true],
    [7, 1, 'removed', 'fault-around', true],
  ]);
});

test('installed pages are skipped and split runs; the faulting page is planned even when marked installed', () => {
  const runs = planFaultInstall(4 * PS, { startOffset: 0, lenBytes: 8 * PS }, PS, view('dDddDddd'));
  assert.deepEqual(short(runs), [
    [4, 4, 'data', 'fault', false],
    [0, 1, 'data', 'fault-around', true],
    [2, 2, 'data', 'fault-around', true],
  ]);
});

test('a one-page window plans the faulting page alone', () => {
  assert.deepEqual(short(planFaultInstall(3 * PS, { startOffset: 3 * PS, lenBytes: PS }, PS, view('dddd'))), [
    [3, 1, 'data', 'fault', false],
  ]);
});
