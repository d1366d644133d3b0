// The fault loop with the adaptive fault-around policy (as faultAroundPolicyFor builds it for
// `--fault-around adaptive`), driven with the fake uffd: what each fault installs, what it costs
// (the per-VM counters and window histogram), and how it combines with prefetch and retries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultLoop } from '../../src/serve/fault-loop.js';
import { VmStats, WINDOW_BUCKET_BYTES } from '../../src/serve/stats.js';
import { GuestMemory } from '../../src/memory/regions.js';
import { faultAroundPolicyFor, FixedFaultAround, type FaultAroundPolicy } from '../../src/serve/fault-around.js';
import { AdaptiveFaultAround } from '../../src/serve/adaptive-window.js';
import { ERRNO } from '../../src/kernel/errors.js';
import { events, FakeSource, FakeUffd, HOST, PS } from '../helpers/fake-uffd.js';

const MiB = 1024 * 1024;

function setup(o: { policy?: FaultAroundPolicy; sizeBytes?: number; prefetchPages?: number[] } = {}) {
  const sizeBytes = o.sizeBytes ?? 16 * MiB;
  const source = new FakeSource(sizeBytes, new Set());
  const uffd = new FakeUffd();
  const stats = new VmStats();
  const memory = new GuestMemory([{ hostAddr: HOST, sizeBytes, fileOffset: 0 }], PS);
  const faultAround = o.policy ?? faultAroundPolicyFor({ faultAround: 'adaptive' }, PS);
  const loop = new FaultLoop({
    memory,
    source,
    uffd,
    stats,
    faultAround,
    ...(o.prefetchPages ? { prefetchPages: Uint32Array.from(o.prefetchPages) } : {}),
  });
  const fault = (page: number) => loop.handleBatch(events([{ fault: HOST + page * PS }]), 1, performance.now());
  return { source, uffd, stats, loop, fault };
}

/** Installed length in pages of each ioctl that installed (copy or zeropage), in call order. */
const installs = (uffd: FakeUffd) => uffd.calls.filter((c) => c.op !== 'wake').map((c) => [(c.dst - HOST) / PS, c.len / PS]);

test('faultAroundPolicyFor: "adaptive" builds the adaptive policy, a size a fixed one', () => {
  assert.ok(faultAroundPolicyFor({ faultAround: 'adaptive' }, PS) instanceof AdaptiveFaultAround);
  const fixed = faultAroundPolicyFor({ faultAround: 64 * 1024 }, PS);
  assert.ok(fixed instanceof FixedFaultAround);
  assert.equal(fixed.blockBytes, 64 * 1024);
});

test('adaptive: scattered faults install only their own page, one ioctl each (amplification 1)', () => {
  const { uffd, stats, fault } = setup({ sizeBytes: 64 * MiB });
  // Pages far apart in no order: every fault starts a new stream.
  const pages = [9000, 120, 15000, 3333, 7777, 11111, 500, 14000, 2000, 6000, 12500, 4100];
  for (const p of pages) fault(p);
  assert.deepEqual(
    installs(uffd),
    pages.map((p) => [p, 1]),
  );
  const s = stats.snapshot();
  assert.equal(s.faults, pages.length);
  assert.equal(s.faultPagesInstalled, pages.length);
  assert.equal(s.faultIoctls, pages.length);
  assert.equal(s.faultAround.amplification, 1);
  assert.equal(s.faultAround.ioctlsPerFault, 1);
  assert.equal(s.faultAround.windowCounts[0], pages.length, 'every window in the 4k bucket');
});

test('adaptive: a sequential walk grows its window (4x, then 2x) up to 2 MiB and installs each page once', () => {
  const { uffd, stats, fault } = setup();
  const walkPages = (12 * MiB) / PS;
  // The guest touches the next page not yet installed, as a sequential vCPU does.
  for (let p = 0; p < walkPages;) {
    fault(p);
    p = Math.max(...installs(uffd).map(([start, len]) => start! + len!));
  }
  const lens = installs(uffd).map(([, len]) => len! * PS);
  assert.equal(lens[0], PS, 'a new stream starts at one page');
  assert.ok(lens[1]! > PS && lens[2]! > lens[1]!, `the next windows grow: ${lens.slice(0, 4).join(', ')}`);
  assert.ok(
    lens.every((l) => l <= 2 * MiB),
    'never more than 2 MiB',
  );
  assert.equal(lens.filter((l) => l === 2 * MiB).length >= 4, true, 'most of 12 MiB in 2 MiB windows');
  const s = stats.snapshot();
  assert.equal(s.faultPagesInstalled, walkPages, 'every page installed exactly once');
  assert.ok(s.faults < 16, `a 12 MiB walk takes few faults (${s.faults})`);
  assert.equal(s.faultAround.amplification, walkPages / s.faults);
  assert.ok(s.faultAround.windowCounts[WINDOW_BUCKET_BYTES.indexOf(2 * MiB)]! >= 4);
});

test('adaptive: the window histogram buckets by the smallest power of two that holds the window', () => {
  const stats = new VmStats();
  for (const len of [PS, PS + 1, 3 * PS, 256 * 1024, 2 * MiB, 2 * MiB + PS, 1024 * MiB]) stats.recordWindow(len);
  const c = stats.snapshot().faultAround.windowCounts;
  assert.equal(c.length, WINDOW_BUCKET_BYTES.length + 1);
  assert.equal(c[0], 1, '4k');
  assert.equal(c[1], 1, '4k + 1 byte: 8k');
  assert.equal(c[2], 1, '12k: 16k');
  assert.equal(c[WINDOW_BUCKET_BYTES.indexOf(256 * 1024)], 1);
  assert.equal(c[WINDOW_BUCKET_BYTES.indexOf(2 * MiB)], 1);
  assert.equal(c[WINDOW_BUCKET_BYTES.length], 2, 'larger than 2 MiB: the last bucket');
});

test('adaptive + prefetch: prefetched pages are not fault costs, and a fault next to them still gets its window', () => {
  const prefetched = [0, 1, 2, 3, 100, 101];
  const { uffd, stats, loop, fault } = setup({ prefetchPages: prefetched });
  while (loop.prefetchReady) loop.prefetchStep();
  assert.equal(stats.get('prefetchedPages'), prefetched.length);
  assert.equal(stats.get('faultIoctls'), 0, 'prefetch ioctls are not counted as fault installs');
  assert.equal(stats.get('faultPagesInstalled'), 0);
  const prefetchIoctls = stats.get('installIoctls');
  uffd.calls.length = 0;
  // A fault on a prefetched page (the guest raced the prefetch's wake): EEXIST, then a wake; nothing more.
  fault(2);
  assert.deepEqual(
    uffd.calls.map((c) => c.op),
    ['copy', 'wake'],
  );
  assert.equal(stats.get('faultPagesInstalled'), 0);
  // A walk from a page away from the first prefetched ones: one page, then growing windows that
  // step over the prefetched pages 100-101.
  uffd.calls.length = 0;
  for (let p = 50; p < 120;) {
    fault(p);
    p = Math.max(...installs(uffd).map(([start, len]) => start! + len!));
  }
  const after = installs(uffd);
  assert.deepEqual(after[0], [50, 1]);
  assert.ok(after[1]![1]! > 1, `the continuing fault installs a grown window: ${JSON.stringify(after)}`);
  assert.ok(
    after.every(([start, len]) => start! + len! <= 100 || start! >= 102),
    'prefetched pages are skipped',
  );
  assert.equal(
    stats.get('faultPagesInstalled'),
    after.reduce((a, [, len]) => a + len!, 0),
  );
  assert.equal(stats.get('installIoctls'), prefetchIoctls + 1 + after.length, 'installIoctls counts prefetch and faults');
});

test('adaptive: a fault retried after EAGAIN keeps its first window (the policy is asked once per fault)', () => {
  const asked: number[] = [];
  const inner = faultAroundPolicyFor({ faultAround: 'adaptive' }, PS);
  const policy: FaultAroundPolicy = {
    window(f, lo, hi) {
      asked.push(f / PS);
      return inner.window(f, lo, hi);
    },
  };
  const { uffd, stats, loop, fault } = setup({ policy });
  fault(10);
  uffd.script = [ERRNO.EAGAIN, ERRNO.EAGAIN];
  fault(11);
  assert.equal(loop.pendingCount, 1);
  loop.retryDeferred();
  loop.retryDeferred();
  assert.equal(loop.pendingCount, 0);
  assert.deepEqual(asked, [10, 11], 'one window per fault, retries included');
  assert.equal(
    stats.snapshot().faultAround.windowCounts.reduce((a, n) => a + n, 0),
    2,
    'a window is recorded when its fault is served',
  );
});
