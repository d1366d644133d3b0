// A few hundred cases per parser of outside input on every `npm test`; bench/fuzz.ts runs thousands.
import { test } from 'node:test';
import fc from 'fast-check';
import {
  chunkBlobProperty,
  handshakeJsonProperty,
  handshakeReceiveProperty,
  manifestProperty,
  removedRangesProperty,
  restoreRequestProperty,
  storeSpecProperty,
  traceReportProperty,
  workingSetProperty,
} from '../fuzz/parsers.js';

const RUNS = 300;

test(`fuzz: handshake JSON, ${RUNS} cases: only typed errors`, () => fc.assert(handshakeJsonProperty(), { numRuns: RUNS }));
test(`fuzz: manifest, ${RUNS} cases: only typed errors`, () => fc.assert(manifestProperty(), { numRuns: RUNS }));
test(`fuzz: working set, ${RUNS} cases: only typed errors`, () => fc.assert(workingSetProperty(), { numRuns: RUNS }));
test(`fuzz: removed ranges, ${RUNS} cases: only typed errors`, () => fc.assert(removedRangesProperty(), { numRuns: RUNS }));
test(`fuzz: store names, ${RUNS} cases: only typed errors`, () => fc.assert(storeSpecProperty(), { numRuns: RUNS }));
test(`fuzz: restore requests, ${RUNS} cases: only typed errors`, () => fc.assert(restoreRequestProperty(), { numRuns: RUNS }));
test(`fuzz: damaged chunk blobs, ${RUNS} cases: typed errors or the chunk's own bytes`, () =>
  fc.assert(chunkBlobProperty(), { numRuns: RUNS }));
test(`fuzz: trace files through the report, ${RUNS} cases: only typed errors`, () => fc.assert(traceReportProperty(), { numRuns: RUNS }));
test(`fuzz: handshake received with fds over a real socket, ${RUNS} cases: typed errors, no fd leaked, no hang`, () => {
  const p = handshakeReceiveProperty();
  try {
    fc.assert(p.property, { numRuns: RUNS });
  } finally {
    p.close();
  }
});
