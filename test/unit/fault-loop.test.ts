// The fault loop's policy, driven with a fake uffd: no kernel involved.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultLoop, VmGoneError } from '../../src/serve/fault-loop.js';
import { EXISTS_STREAK_LIMIT } from '../../src/serve/exists-streak.js';
import { VmStats } from '../../src/serve/stats.js';
import { GuestMemory } from '../../src/memory/regions.js';
import { FixedFaultAround } from '../../src/serve/fault-around.js';
import { ERRNO } from '../../src/kernel/errors.js';
import { events, FakeSource, FakeUffd, HOST, PS } from '../helpers/fake-uffd.js';
import { FcUffdError } from '../../src/errors.js';

function setup(faultAroundBytes = PS, zeroPages = new Set<number>(), sizeBytes = 64 * PS, prefetchPages?: number[]) {
  const source = new FakeSource(sizeBytes, zeroPages);
  const uffd = new FakeUffd();
  const stats = new VmStats();
  const memory = new GuestMemory([{ hostAddr: HOST, sizeBytes, fileOffset: 0 }], PS);
  const loop = new FaultLoop({
    memory,
    source,
    uffd,
    stats,
    faultAround: new FixedFaultAround(faultAroundBytes, PS),
    recordWorkingSet: true,
    ...(prefetchPages ? { prefetchPages: Uint32Array.from(prefetchPages) } : {}),
  });
  const run = (list: Parameters<typeof events>[0]) => loop.handleBatch(events(list), list.length, performance.now());
  return { source, uffd, stats, loop, run };
}

test('a fault copies its page from the source and wakes the thread in the same ioctl', () => {
  const { uffd, stats, run } = setup();
  run([{ fault: HOST + 5 * PS + 123 }]);
  assert.deepEqual(uffd.calls, [{ op: 'copy', dst: HOST + 5 * PS, len: PS, wake: true }]);
  assert.equal(uffd.mapped.get(HOST + 5 * PS), 6);
  assert.equal(stats.get('faults'), 1);
  assert.equal(stats.get('pagesCopied'), 1);
  assert.equal(stats.snapshot().latency.count, 1);
});

test('zero pages are answered with UFFDIO_ZEROPAGE', () => {
  const { uffd, stats, run } = setup(PS, new Set([7]));
  run([{ fault: HOST + 7 * PS }]);
  assert.equal(uffd.calls[0]!.op, 'zeropage');
  assert.equal(uffd.mapped.get(HOST + 7 * PS), 0);
  assert.equal(stats.get('pagesZeroed'), 1);
});

test('fault-around installs the aligned block in runs by kind, the faulting run first', () => {
  const { uffd, run } = setup(8 * PS, new Set([10, 11]));
  run([{ fault: HOST + 13 * PS }]);
  // Block [8, 16): faulting run 13..15, then 8..9 data, 10..11 zero, 12 data.
  assert.deepEqual(
    uffd.calls.map((c) => [c.op, (c.dst - HOST) / PS, c.len / PS]),
    [
      ['copy', 13, 3],
      ['copy', 8, 2],
      ['zeropage', 10, 2],
      ['copy', 12, 1],
    ],
  );
  for (let p = 8; p < 16; p++) assert.ok(uffd.mapped.has(HOST + p * PS), `page ${p}`);
  // A later fault in the block re-installs nothing but its own page (EEXIST), then wakes it.
  uffd.calls.length = 0;
  run([{ fault: HOST + 9 * PS }]);
  assert.deepEqual(
    uffd.calls.map((c) => c.op),
    ['copy', 'wake'],
  );
});

test('EEXIST on the faulting page wakes the waiter; partial progress resumes after the existing page', () => {
  const { uffd, stats, run } = setup(4 * PS);
  uffd.mapped.set(HOST + 1 * PS, 99);
  run([{ fault: HOST + 0 }]);
  // Run 0..3: copies page 0, stops at 1 (exists), resumes at 2.
  assert.deepEqual(
    uffd.calls.map((c) => [c.op, (c.dst - HOST) / PS, c.len / PS]),
    [
      ['copy', 0, 4],
      ['copy', 1, 3],
      ['copy', 2, 2],
    ],
  );
  assert.equal(uffd.mapped.get(HOST + 1 * PS), 99, 'an existing page is never overwritten');
  assert.equal(stats.get('eexist'), 1);
  uffd.calls.length = 0;
  uffd.mapped.set(HOST + 8 * PS, 1);
  run([{ fault: HOST + 8 * PS }]);
  assert.deepEqual(uffd.calls.map((c) => c.op).slice(-1), ['wake']);
});

test('EAGAIN defers the fault; it is retried after more events and then served', () => {
  const { uffd, stats, loop, run } = setup();
  uffd.script = [ERRNO.EAGAIN, ERRNO.EAGAIN];
  run([{ fault: HOST + 3 * PS }]);
  assert.equal(loop.pendingCount, 1);
  assert.ok(loop.waitBudgetUs() > 0, 'a deferred fault bounds the wait');
  loop.retryDeferred();
  assert.equal(loop.pendingCount, 1);
  const secondBudget = loop.waitBudgetUs();
  assert.ok(secondBudget > 50 && secondBudget <= 5000, `backoff grows, capped: ${secondBudget}`);
  loop.retryDeferred();
  assert.equal(loop.pendingCount, 0);
  assert.equal(loop.waitBudgetUs(), -1);
  assert.equal(uffd.mapped.get(HOST + 3 * PS), 4);
  assert.equal(stats.get('eagain'), 2);
  assert.equal(stats.get('deferrals'), 1, 'one fault was deferred (twice)');
});

test('REMOVE is applied before the faults read with it: removed pages read as zeros, forever', () => {
  const { uffd, stats, loop, run } = setup(4 * PS);
  run([{ fault: HOST + 2 * PS }]);
  assert.equal(uffd.mapped.get(HOST + 2 * PS), 3);
  // The balloon drops pages 0..7; the kernel unmaps them. A fault on page 2 is read BEFORE the REMOVE.
  for (let p = 0; p < 8; p++) uffd.mapped.delete(HOST + p * PS);
  run([{ fault: HOST + 2 * PS }, { remove: [HOST, HOST + 8 * PS] }]);
  assert.equal(uffd.mapped.get(HOST + 2 * PS), 0, 'snapshot data must never come back after REMOVE');
  assert.equal(uffd.mapped.get(HOST + 0), 0, 'fault-around neighbours in the removed range are zero too');
  assert.equal(stats.get('removeEvents'), 1);
  assert.equal(stats.get('bytesRemoved'), 8 * PS);
  assert.ok(stats.get('zeroPagesForRemoved') >= 4);
  // The guest writes page 2 (no fault: it is mapped); then the balloon removes it again.
  uffd.mapped.delete(HOST + 2 * PS);
  run([{ remove: [HOST + 2 * PS, HOST + 3 * PS] }, { fault: HOST + 2 * PS }]);
  assert.equal(uffd.mapped.get(HOST + 2 * PS), 0);
  // Pages installed since their removal are not in the export; 4..7 were never installed again.
  assert.deepEqual(loop.removedRanges(), [[4 * PS, 8 * PS]]);
});

test('a fatal errno stops the VM with the op, address and errno', () => {
  const { uffd, run } = setup();
  uffd.script = [ERRNO.EFAULT];
  assert.throws(
    () => run([{ fault: HOST + PS }]),
    (err: FcUffdError) => err.code === 'VM_IOCTL' && /UFFDIO_COPY .* 0x7f0000001000 failed: EFAULT/.test(err.message),
  );
});

test('a page the kernel keeps answering EEXIST for while its vCPU keeps faulting (hugetlbfs, empty pool) ends the VM instead of a wake-refault loop', () => {
  const { uffd, stats, run } = setup();
  uffd.poolEmpty = true;
  // The vCPU is woken after each EEXIST, finds nothing mapped and faults again: the hang seen in
  // the load test (120 000 faults a minute on one page).
  let faults = 0;
  const error = (() => {
    for (; faults < 10 * EXISTS_STREAK_LIMIT; faults++) {
      try {
        run([{ fault: HOST + 3 * PS }]);
      } catch (err) {
        return err as FcUffdError;
      }
    }
    return undefined;
  })();
  assert.ok(error, `still answering wake after ${faults} faults on a page that never got mapped`);
  assert.equal(error.code, 'VM_PAGE_NOT_INSTALLED');
  assert.match(error.message, /0x7f0000003000 .* EEXIST .* huge page pool/);
  assert.equal(faults, EXISTS_STREAK_LIMIT, 'the VM ends as soon as the streak cannot be a race');
  assert.ok(!uffd.mapped.has(HOST + 3 * PS));
  assert.equal(stats.get('eexist'), EXISTS_STREAK_LIMIT + 1);
});

test('EEXIST for a mapped page raced for by many vCPUs, or faulted again after each REMOVE, is served every time', () => {
  const { uffd, run } = setup();
  uffd.mapped.set(HOST + 3 * PS, 4);
  const wakes = (): number => uffd.calls.filter((c) => c.op === 'wake').length;
  // 32 vCPUs raced for the page (one fault each, all answered EEXIST), twice over, a REMOVE between.
  for (let round = 0; round < 2; round++) {
    for (let v = 0; v < 32; v++) run([{ fault: HOST + 3 * PS }]);
    uffd.mapped.delete(HOST + 3 * PS);
    run([{ remove: [HOST + 3 * PS, HOST + 4 * PS] }, { fault: HOST + 3 * PS }]);
  }
  assert.equal(wakes(), 64, 'every EEXIST answered with a wake');
  // An install that succeeds starts the count over too.
  uffd.mapped.delete(HOST + 3 * PS);
  for (let i = 0; i < EXISTS_STREAK_LIMIT; i++) run([{ fault: HOST + 3 * PS }]);
  uffd.mapped.delete(HOST + 3 * PS);
  run([{ fault: HOST + 3 * PS }]);
  for (let i = 0; i < EXISTS_STREAK_LIMIT; i++) run([{ fault: HOST + 3 * PS }]);
});

test('ESRCH means the VMM is gone, not an error', () => {
  const { uffd, run } = setup();
  uffd.script = [ERRNO.ESRCH];
  assert.throws(() => run([{ fault: HOST }]), VmGoneError);
});

test('a fatal errno on a speculative neighbour only stops fault-around', () => {
  const { uffd, stats, run } = setup(4 * PS);
  uffd.script = [null, ERRNO.ENOENT];
  run([{ fault: HOST + 3 * PS }]);
  assert.ok(uffd.mapped.has(HOST + 3 * PS), 'the faulting page is served');
  assert.ok(!uffd.mapped.has(HOST), 'the refused neighbour run is abandoned');
  assert.equal(stats.get('speculativeErrors'), 1);
});

test('faults outside every region and unexpected events are clear per-VM errors', () => {
  const { run } = setup();
  assert.throws(() => run([{ fault: HOST + 64 * PS }]), { code: 'VM_FAULT_OUTSIDE_REGIONS' });
  assert.throws(
    () => run([{ unmap: true }]),
    (err: FcUffdError) => err.code === 'VM_UNEXPECTED_EVENT' && /unmap/.test(err.message),
  );
});

test('recording keeps the pages installed on demand in first-install order, neighbours included', () => {
  const { run, loop } = setup(4 * PS);
  run([{ fault: HOST + 9 * PS }, { fault: HOST + 2 * PS }, { fault: HOST + 10 * PS }]);
  assert.deepEqual([...loop.recordedTouches().pages], [9, 10, 11, 8, 2, 3, 0, 1]);
});

test('prefetch: coalesced installs without wake-ups, one wake per step, present and removed pages skipped', () => {
  const { uffd, stats, loop, run } = setup(PS, new Set([21]), 64 * PS, [20, 21, 22, 23, 5, 40, 41, 50]);
  run([{ fault: HOST + 22 * PS }, { remove: [HOST + 50 * PS, HOST + 51 * PS] }]);
  uffd.calls.length = 0;
  assert.equal(loop.prefetchReady, true);
  assert.equal(loop.waitBudgetUs(), 0, 'while a step can run the loop only peeks at the uffd');
  loop.prefetchStep();
  assert.deepEqual(
    uffd.calls.map((c) => [c.op, (c.dst - HOST) / PS, c.len / PS, c.wake]),
    [
      ['copy', 20, 1, false],
      ['zeropage', 21, 1, false],
      ['copy', 23, 1, false],
      ['copy', 5, 1, false],
      ['copy', 40, 2, false],
      ['wake', 5, 37, undefined],
    ],
  );
  assert.equal(uffd.mapped.has(HOST + 50 * PS), false, 'a removed page is never prefetched');
  assert.equal(stats.get('prefetchedPages'), 6);
  assert.equal(loop.prefetchReady, false);
  assert.equal(loop.waitBudgetUs(), -1);
});

test('prefetch pauses on EAGAIN and on bytes still being fetched, and resumes where it stopped', () => {
  const { uffd, source, loop } = setup(PS, new Set(), 64 * PS, [1, 2, 3]);
  uffd.script = [ERRNO.EAGAIN];
  loop.prefetchStep();
  assert.equal(loop.prefetchReady, false);
  assert.ok(loop.waitBudgetUs() > 0, 'EAGAIN: wait a backoff, then retry');
  loop.retryDeferred();
  source.fetching = true;
  loop.prefetchStep();
  assert.deepEqual(source.prepared, [[1 * PS, 3 * PS]], 'the source was told what comes next, as one run');
  assert.equal(loop.prefetchReady, false);
  assert.equal(loop.waitBudgetUs(), -1, 'blocked on the source: sleep until it wakes the loop');
  source.fetching = false;
  loop.sourceReady();
  loop.prefetchStep();
  for (const p of [1, 2, 3]) assert.ok(uffd.mapped.has(HOST + p * PS), `page ${p}`);
});

test('a fault reads its block ahead in one request; a sequential stream also the next block', () => {
  const { source, run } = setup(4 * PS, new Set(), 64 * PS);
  const blocks = (): number[][] => source.prepared.map(([off, len]) => [off / PS, len / PS]);
  run([{ fault: HOST + 21 * PS }]);
  run([{ fault: HOST + 40 * PS }]);
  assert.deepEqual(
    blocks(),
    [
      [20, 4],
      [40, 4],
    ],
    'each fault its own block; no stream yet',
  );
  run([{ fault: HOST + 44 * PS }]);
  assert.deepEqual(blocks().slice(2), [[44, 8]], 'block 44..47 follows 40..43: 48..51 is read ahead too, in the same request');
});

test('installs are split at 2 MiB boundaries, so chunked sources can always answer', () => {
  const pages = Array.from({ length: 40 }, (_, i) => 500 + i);
  const { uffd, loop } = setup(PS, new Set(), 1024 * PS, pages);
  loop.prefetchStep();
  const copies = uffd.calls.filter((c) => c.op === 'copy').map((c) => [(c.dst - HOST) / PS, c.len / PS]);
  assert.deepEqual(copies, [
    [500, 12],
    [512, 28],
  ]);
});

test('speculation is never fatal: a neighbour refused inside the faulting run (ENOENT on its third page) serves the fault and stops speculating', () => {
  const { uffd, stats, loop, run } = setup(4 * PS);
  uffd.refuse.set(HOST + 2 * PS, ERRNO.ENOENT);
  run([{ fault: HOST + 0 }]);
  // One run 0..3 with wake: the kernel copies pages 0 and 1, then refuses page 2.
  assert.deepEqual(
    uffd.calls.map((c) => [c.op, (c.dst - HOST) / PS, c.len / PS]),
    [
      ['copy', 0, 4],
      ['copy', 2, 2],
    ],
  );
  assert.equal(uffd.mapped.get(HOST), 1, 'the faulting page is served');
  assert.ok(!uffd.mapped.has(HOST + 3 * PS), 'no speculation after the refusal');
  assert.equal(stats.get('speculativeErrors'), 1);
  assert.equal(stats.snapshot().latency.count, 1, 'the fault counts as served');
  assert.equal(loop.pendingCount, 0);
});

test('the faulting page itself refused (ENOENT) still stops the VM', () => {
  const { uffd, run } = setup(4 * PS);
  uffd.refuse.set(HOST + PS, ERRNO.ENOENT);
  assert.throws(() => run([{ fault: HOST + PS }]), { code: 'VM_IOCTL' });
});
