// One fault served, on its own, against the fake uffd: region and offset, the window asked once,
// the faulting run first, the wake of a page found mapped, and what goes back to the loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultServer, type FaultWindow } from '../../src/serve/fault-server.js';
import { ExistsStreaks } from '../../src/serve/exists-streak.js';
import type { FaultAroundPolicy } from '../../src/serve/fault-around.js';
import { Installer } from '../../src/serve/installer.js';
import { PageState } from '../../src/serve/page-state.js';
import { VmStats } from '../../src/serve/stats.js';
import { GuestMemory } from '../../src/memory/regions.js';
import { ERRNO } from '../../src/kernel/errors.js';
import { FakeSource, FakeUffd, HOST, PS } from '../helpers/fake-uffd.js';

// Region A: host [HOST, +16 pages) = file pages [0, 16); region B: host [HOST + 32 pages, +16) = file pages [16, 32).
const B_HOST = HOST + 32 * PS;

/** A fixed 4-page aligned window that notes each question and reuses its answer object, as the real policies do. */
class CountingPolicy implements FaultAroundPolicy {
  readonly asked: Array<[fault: number, regionStart: number, regionEnd: number]> = [];
  private readonly w: FaultWindow = { startOffset: 0, lenBytes: 0 };
  window(f: number, lo: number, hi: number): FaultWindow {
    this.asked.push([f / PS, lo / PS, hi / PS]);
    this.w.startOffset = Math.max(lo, f - (f % (4 * PS)));
    this.w.lenBytes = Math.min(hi, this.w.startOffset + 4 * PS) - this.w.startOffset;
    return this.w;
  }
}

function setup() {
  const source = new FakeSource(32 * PS, new Set([18]));
  const uffd = new FakeUffd();
  const stats = new VmStats();
  const memory = new GuestMemory(
    [
      { hostAddr: HOST, sizeBytes: 16 * PS, fileOffset: 0 },
      { hostAddr: B_HOST, sizeBytes: 16 * PS, fileOffset: 16 * PS },
    ],
    PS,
  );
  const pages = new PageState(source, PS);
  const installer = new Installer({ uffd, source, pages, stats, pageSizeBytes: PS });
  const existsStreak = new ExistsStreaks(PS);
  const policy = new CountingPolicy();
  let nowMs = 0;
  const server = new FaultServer({ memory, source, uffd, stats, faultAround: policy, pages, installer, existsStreak, now: () => nowMs });
  const setNow = (ms: number) => (nowMs = ms);
  return { source, uffd, stats, pages, existsStreak, policy, server, setNow };
}

const ioctls = (uffd: FakeUffd) => uffd.calls.map((c) => [c.op, (c.dst - HOST) / PS, c.len / PS]);

test("a fault in the second region: its snapshot offset, the window asked within the region's bounds, the faulting run first, then the rest by kind", () => {
  const { source, uffd, stats, policy, server, setNow } = setup();
  setNow(5);
  assert.equal(server.serve(B_HOST + 1 * PS + 7, 4, undefined), 'served');
  assert.deepEqual(policy.asked, [[17, 16, 32]]);
  // Window file [16, 20) = host pages 32..35; page 18 (host 34) is a zero page.
  assert.deepEqual(ioctls(uffd), [
    ['copy', 33, 1],
    ['copy', 32, 1],
    ['zeropage', 34, 1],
    ['copy', 35, 1],
  ]);
  assert.equal(uffd.mapped.get(B_HOST + PS), (17 % 250) + 1, 'snapshot page 17, not host page 33');
  assert.deepEqual(source.prepared, [[16 * PS, 4 * PS]], 'one read-ahead request, for the window');
  const snap = stats.snapshot();
  assert.equal(snap.latency.count, 1);
  assert.equal(
    snap.faultAround.windowCounts.reduce((a, n) => a + n, 0),
    1,
  );
});

test('a retry installs the window of its first try without asking the policy; the first try leaves a copy of it', () => {
  const { uffd, policy, server } = setup();
  uffd.script = [ERRNO.EAGAIN];
  assert.equal(server.serve(HOST + 6 * PS, 0, undefined), 'retry');
  const first = server.lastWindowCopy();
  assert.deepEqual(first, { startOffset: 4 * PS, lenBytes: 4 * PS });
  // Another fault reuses the policy's object: the copy must not change with it.
  assert.equal(server.serve(HOST + 12 * PS, 0, undefined), 'served');
  assert.deepEqual(first, { startOffset: 4 * PS, lenBytes: 4 * PS });
  uffd.calls.length = 0;
  assert.equal(server.serve(HOST + 6 * PS, 0, first), 'served');
  assert.deepEqual(
    policy.asked.map((a) => a[0]),
    [6, 12],
    'asked once per fault',
  );
  assert.deepEqual(ioctls(uffd), [
    ['copy', 6, 2],
    ['copy', 4, 2],
  ]);
});

test('bytes the source does not hold yet: wait, nothing installed, no latency recorded', () => {
  const { source, uffd, stats, server } = setup();
  source.fetching = true;
  assert.equal(server.serve(HOST + 2 * PS, 0, undefined), 'wait');
  assert.equal(uffd.mapped.size, 0);
  assert.equal(stats.snapshot().latency.count, 0);
});

test('a faulting page found mapped is woken and counted against its EEXIST streak; an install of it ends the streak', () => {
  const { uffd, existsStreak, server } = setup();
  uffd.mapped.set(HOST + 2 * PS, 99);
  assert.equal(server.serve(HOST + 2 * PS, 0, undefined), 'served');
  assert.deepEqual(
    uffd.calls.filter((c) => c.op === 'wake'),
    [{ op: 'wake', dst: HOST + 2 * PS, len: PS }],
  );
  assert.equal(uffd.mapped.get(HOST + 2 * PS), 99, 'a mapped page is never overwritten');
  assert.equal(existsStreak.size, 1);
  uffd.mapped.delete(HOST + 2 * PS);
  assert.equal(server.serve(HOST + 2 * PS, 0, undefined), 'served');
  assert.equal(uffd.mapped.get(HOST + 2 * PS), 3);
  assert.equal(existsStreak.size, 0);
});

test('a refused neighbour run stops the rest of the window; the fault is still served', () => {
  const { uffd, stats, server } = setup();
  uffd.refuse.set(B_HOST, ERRNO.ENOENT);
  // Window file [16, 20), fault on 19: run 19, then 16..17 (data) refused on 16, so 18 (zero) is not tried.
  assert.equal(server.serve(B_HOST + 3 * PS, 0, undefined), 'served');
  assert.equal(stats.get('speculativeErrors'), 1);
  assert.deepEqual(ioctls(uffd), [
    ['copy', 35, 1],
    ['copy', 32, 2],
  ]);
  assert.ok(uffd.mapped.has(B_HOST + 3 * PS) && !uffd.mapped.has(B_HOST + 2 * PS));
});

test('a fault between the regions is a per-VM error naming the address', () => {
  const { server } = setup();
  assert.throws(
    () => server.serve(HOST + 20 * PS, 0, undefined),
    (err: Error & { code?: string }) => err.code === 'VM_FAULT_OUTSIDE_REGIONS' && err.message.includes((HOST + 20 * PS).toString(16)),
  );
});
