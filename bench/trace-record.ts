// The cost serve --trace adds on the fault path, measured directly: ns per TraceRecorder call,
// with blocks posted through a real MessageChannel as on a fault-loop thread, against the same
// loop without recording. A traced on-demand fault writes 3 records (read, installed range,
// served) plus one per further fault-around run; compare with the µs a fault costs (bench/run.ts
// trace-cost scenario, cpu µs/f). Medians of 7.   node dist/bench/trace-record.js
import { MessageChannel } from 'node:worker_threads';
import { TraceRecorder } from '../src/trace/recorder.js';

const N = 2_000_000;
const { port1, port2 } = new MessageChannel();
let received = 0;
port2.on('message', () => received++);
const sink = (b: { records: ArrayBuffer; count: number; startEpochMs: number }): void => port1.postMessage(b);

function run(trace: TraceRecorder | undefined): number {
  const readAt = performance.now();
  let acc = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const off = (i & 0xffff) * 4096;
    acc += off;
    trace?.fault(0x7f0000000000 + off, (i & 3) === 0, readAt);
    trace?.install(off, 4096, 0, true, true);
    trace?.served(0x7f0000000000 + off, off, 0, readAt, readAt);
  }
  const ns = Number(process.hrtime.bigint() - t0);
  if (acc < 0) throw new Error('unreachable');
  return ns / N;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base: number[] = [];
const traced: number[] = [];
const prefetchSet = Uint32Array.from({ length: 16384 }, (_, i) => i * 2);
for (let r = 0; r < 7; r++) {
  base.push(run(undefined));
  traced.push(run(new TraceRecorder(sink, 4096, prefetchSet)));
}
const perFault = median(traced) - median(base);
process.stdout.write(
  `per on-demand fault (3 records: read, install, served), median of 7 x ${N.toLocaleString('en')}: ${perFault.toFixed(0)} ns added ` +
    `(loop alone ${median(base).toFixed(1)} ns, traced ${median(traced).toFixed(0)} ns [${Math.min(...traced).toFixed(0)}-${Math.max(...traced).toFixed(0)}])\n`,
);
port1.close();
