import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeTrace,
  encodeHeader,
  FLAG_FAULTED,
  FLAG_PREFETCH,
  FLAG_PREFETCH_LATE,
  FLAG_WRITE,
  K_ZERO,
  RECORD_BYTES,
  T_FAULT,
  T_INSTALL,
  T_SERVED,
  type TraceBlock,
  type TraceHeader,
} from '../../src/trace/format.js';
import { TraceRecorder } from '../../src/trace/recorder.js';
import { buildTraceReport } from '../../src/report/model.js';

const HEADER: Omit<TraceHeader, 'startEpochMs'> = {
  vmId: 'vm-1',
  pid: 42,
  snapshot: 'memfile:1048576:x',
  snapshotSizeBytes: 1 << 20,
  pageSizeBytes: 4096,
  faultAroundBytes: 16384,
  regions: [{ hostAddr: 0x10000000, sizeBytes: 1 << 20, fileOffset: 0 }],
  prefetchPages: 2,
};

function fileOf(blocks: TraceBlock[]): Buffer {
  return Buffer.concat([
    encodeHeader({ ...HEADER, startEpochMs: blocks[0]!.startEpochMs }),
    ...blocks.map((b) => Buffer.from(b.records.slice(0, b.count * RECORD_BYTES))),
  ]);
}

test('recorder records decode to what was recorded, flags and kinds included', () => {
  const blocks: TraceBlock[] = [];
  const rec = new TraceRecorder((b) => blocks.push({ ...b, records: b.records.slice(0) }), 4096, Uint32Array.of(3, 7));
  const readAt = performance.now();
  rec.fault(0x10003000, true, readAt);
  rec.install(3 * 4096, 4096, K_ZERO, true, true);
  rec.served(0x10003000, 3 * 4096, K_ZERO, readAt, performance.now());
  rec.install(8 * 4096, 8192, 0, false, false);
  rec.flush();
  assert.equal(blocks.length, 1);
  const t = decodeTrace(fileOf(blocks));
  assert.equal(t.count, 4);
  assert.deepEqual([...t.type], [T_FAULT, T_INSTALL, T_SERVED, T_INSTALL]);
  assert.equal(t.flags[0], FLAG_WRITE);
  assert.equal(t.a[0], 0x10003000);
  assert.equal(t.flags[1], FLAG_FAULTED);
  assert.equal(t.kind[2], K_ZERO);
  assert.equal(t.b[2], 3 * 4096);
  assert.equal(t.flags[2], FLAG_PREFETCH_LATE, 'page 3 was in the prefetch set');
  assert.equal(t.flags[3], FLAG_PREFETCH);
  assert.ok(t.timeUs[2]! >= t.timeUs[0]! && t.timeUs[0]! >= 0);
  assert.equal(t.header.vmId, 'vm-1');
});

test('a full buffer flushes by itself and a torn tail is ignored', () => {
  const blocks: TraceBlock[] = [];
  const rec = new TraceRecorder((b) => blocks.push({ ...b, records: b.records.slice(0) }), 4096, undefined, 2048);
  for (let i = 0; i < 5000; i++) rec.fault(0x10000000 + i * 4096, false, performance.now());
  assert.ok(blocks.length >= 2, 'flushed when full');
  rec.flush();
  const file = fileOf(blocks);
  assert.equal(decodeTrace(file).count, 5000);
  const torn = decodeTrace(file.subarray(0, file.length - 5));
  assert.equal(torn.count, 4999);
  assert.equal(torn.tornBytes, RECORD_BYTES - 5);
});

test('decodeTrace refuses other files and other versions with TRACE_FORMAT', () => {
  assert.throws(() => decodeTrace(Buffer.from('not a trace at all')), { code: 'TRACE_FORMAT' });
  const h = encodeHeader({ ...HEADER, startEpochMs: 0 });
  h.writeUInt32LE(99, 8);
  assert.throws(() => decodeTrace(h), /version 99/);
});

test('decodeTrace refuses a header or record the report could not use, naming the field', () => {
  const withHeader = (over: Record<string, unknown>, records = Buffer.alloc(0)): Buffer =>
    Buffer.concat([encodeHeader({ ...HEADER, startEpochMs: 0, ...over }), records]);
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ pageSizeBytes: 0 }, /ended before its handshake/],
    [{ pageSizeBytes: 1 }, /page size 1 is not a power of two/],
    [{ snapshotSizeBytes: -4096 }, /snapshot size -4096/],
    [{ snapshotSizeBytes: 2 ** 52 }, /at most 268435456 pages/],
    // The fuzzer's find: a start time out of Date's range ended the report in a RangeError.
    [{ startEpochMs: 1e300 }, /start time 1e\+300 is not a time/],
    [{ prefetchPages: -1 }, /prefetchPages -1/],
    [{ regions: [{ hostAddr: 'x' }] }, /regions are not a list/],
  ];
  for (const [over, message] of cases) assert.throws(() => decodeTrace(withHeader(over)), { code: 'TRACE_FORMAT', message });
  const record = Buffer.alloc(RECORD_BYTES);
  record.writeUInt32LE(T_INSTALL, 0);
  record.writeDoubleLE(Number.NaN, 16);
  assert.throws(() => decodeTrace(withHeader({}, record)), { code: 'TRACE_FORMAT', message: /record 0 is damaged/ });
  record.writeDoubleLE(4096, 16);
  assert.equal(decodeTrace(withHeader({}, record)).count, 1);
});

test('report model: amplification and memory map count what the trace says', () => {
  const blocks: TraceBlock[] = [];
  const rec = new TraceRecorder((b) => blocks.push({ ...b, records: b.records.slice(0) }), 4096);
  const readAt = performance.now();
  rec.fault(0x10000000, false, readAt);
  rec.install(0, 4096, 0, true, true);
  rec.served(0x10000000, 0, 0, readAt, performance.now());
  rec.install(4096, 3 * 4096, 0, false, true);
  rec.remove(64 * 4096, 16 * 4096);
  rec.flush();
  const report = buildTraceReport(decodeTrace(fileOf(blocks)), 'mem');
  const amp = report.summary.find(([k]) => k === 'amplification')![1];
  assert.match(amp, /^4\.00 pages installed per page faulted/);
  const map = report.sections.find((s) => s.kind === 'map');
  assert.ok(map);
  const total = (k: number): number => map.counts[k]!.reduce((a, b) => a + b, 0);
  assert.equal(total(6), 1, 'one faulted page');
  assert.equal(total(2), 3, 'three data pages around it');
  assert.equal(total(3), 16, 'sixteen removed pages');
  assert.equal(total(0), 256 - 20);
});
