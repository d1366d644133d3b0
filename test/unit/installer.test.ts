// The Installer against the fake uffd: partial progress, one errno classification, typed outcomes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Installer } from '../../src/serve/installer.js';
import { PageState } from '../../src/serve/page-state.js';
import { TouchRecorder } from '../../src/serve/recorder.js';
import { VmStats } from '../../src/serve/stats.js';
import { VmGoneError } from '../../src/serve/vm-errors.js';
import type { InstallRun } from '../../src/serve/install-plan.js';
import { ERRNO } from '../../src/kernel/errors.js';
import { FakeSource, FakeUffd, HOST, PS } from '../helpers/fake-uffd.js';

const REGION = { hostAddr: HOST, sizeBytes: 64 * PS, fileOffset: 0 };

function setup() {
  const source = new FakeSource(64 * PS, new Set([10]));
  const uffd = new FakeUffd();
  const stats = new VmStats();
  const pages = new PageState(source, PS);
  const recorder = new TouchRecorder(64 * PS, PS, () => 0);
  const installer = new Installer({ uffd, source, pages, stats, pageSizeBytes: PS, recorder });
  return { source, uffd, stats, pages, recorder, installer };
}

const run = (start: number, n: number, o: Partial<InstallRun> = {}): InstallRun => ({
  startOffset: start * PS,
  lenBytes: n * PS,
  kind: 'data',
  origin: 'fault',
  speculative: false,
  ...o,
});

test('copies a run in one ioctl, marks it installed, records it', () => {
  const { uffd, stats, pages, recorder, installer } = setup();
  assert.deepEqual(installer.install(REGION, run(4, 3)), { status: 'done', faultPageExisted: false });
  assert.deepEqual(uffd.calls, [{ op: 'copy', dst: HOST + 4 * PS, len: 3 * PS, wake: true }]);
  assert.ok(pages.isInstalled(4 * PS) && pages.isInstalled(6 * PS) && !pages.isInstalled(7 * PS));
  assert.equal(stats.get('pagesCopied'), 3);
  assert.deepEqual([...recorder.touches().pages], [4, 5, 6]);
});

test('EEXIST on the faulting page is reported (its waiter needs a wake); the rest of the run is installed', () => {
  const { uffd, stats, installer } = setup();
  uffd.mapped.set(HOST + 4 * PS, 9);
  assert.deepEqual(installer.install(REGION, run(4, 3)), { status: 'done', faultPageExisted: true });
  assert.equal(stats.get('eexist'), 1);
  assert.equal(uffd.mapped.get(HOST + 4 * PS), 9);
  assert.ok(uffd.mapped.has(HOST + 6 * PS));
});

test('zero and removed runs use UFFDIO_ZEROPAGE; prefetch runs neither wake nor record', () => {
  const { uffd, stats, recorder, installer } = setup();
  installer.install(REGION, run(10, 1, { kind: 'zero', origin: 'prefetch', speculative: true }));
  installer.install(REGION, run(11, 2, { kind: 'removed', origin: 'fault-around', speculative: true }));
  assert.deepEqual(uffd.calls, [
    { op: 'zeropage', dst: HOST + 10 * PS, len: PS, wake: false },
    { op: 'zeropage', dst: HOST + 11 * PS, len: 2 * PS, wake: true },
  ]);
  assert.equal(stats.get('zeroPagesForRemoved'), 2);
  assert.deepEqual([...recorder.touches().pages], [11, 12]);
});

test('EAGAIN is retry, a source without the bytes is wait', () => {
  const { uffd, source, stats, installer } = setup();
  uffd.script = [ERRNO.EAGAIN];
  assert.deepEqual(installer.install(REGION, run(1, 1)), { status: 'retry' });
  assert.equal(stats.get('eagain'), 1);
  source.fetching = true;
  assert.deepEqual(installer.install(REGION, run(1, 1)), { status: 'wait' });
});

test('a refusal past the faulting page or in a speculative run stops, it is never fatal', () => {
  const { uffd, stats, installer } = setup();
  uffd.refuse.set(HOST + 6 * PS, ERRNO.ENOENT);
  assert.deepEqual(installer.install(REGION, run(4, 4)), { status: 'stopped', faultPageExisted: false });
  assert.ok(uffd.mapped.has(HOST + 5 * PS) && !uffd.mapped.has(HOST + 7 * PS));
  assert.deepEqual(installer.install(REGION, run(6, 2, { origin: 'fault-around', speculative: true })), {
    status: 'stopped',
    faultPageExisted: false,
  });
  assert.equal(stats.get('speculativeErrors'), 2);
});

test('the faulting page refused is fatal (VM_IOCTL); ESRCH anywhere means the VMM is gone', () => {
  const { uffd, installer } = setup();
  uffd.refuse.set(HOST + 6 * PS, ERRNO.EFAULT);
  assert.throws(() => installer.install(REGION, run(6, 1)), { code: 'VM_IOCTL' });
  uffd.script = [ERRNO.ESRCH];
  assert.throws(() => installer.install(REGION, run(20, 1, { origin: 'prefetch', speculative: true })), VmGoneError);
});
