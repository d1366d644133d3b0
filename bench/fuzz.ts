// Long fuzz run of every parser of outside input (the properties of test/fuzz/parsers.ts).
//   node dist/bench/fuzz.js [--runs 10000] [--seed N]
import { parseArgs } from 'node:util';
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
} from '../test/fuzz/parsers.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10000' }, seed: { type: 'string' } } });
const numRuns = Number(values.runs);
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 2 ** 31;
const receive = handshakeReceiveProperty();
/** One property's run, reduced to what is printed. */
function runner<Ts extends [unknown, ...unknown[]]>(
  property: fc.IPropertyWithHooks<Ts>,
): () => { failed: boolean; numRuns: number; report: string } {
  return () => {
    const r = fc.check(property, { numRuns, seed });
    return { failed: r.failed, numRuns: r.numRuns, report: r.failed ? (fc.defaultReportMessage(r) ?? '') : '' };
  };
}
const properties: Array<[string, ReturnType<typeof runner>]> = [
  ['handshake JSON', runner(handshakeJsonProperty())],
  ['handshake received with fds', runner(receive.property)],
  ['manifest', runner(manifestProperty())],
  ['working set', runner(workingSetProperty())],
  ['removed ranges', runner(removedRangesProperty())],
  ['store names', runner(storeSpecProperty())],
  ['restore requests', runner(restoreRequestProperty())],
  ['damaged chunk blobs', runner(chunkBlobProperty())],
  ['trace files through the report', runner(traceReportProperty())],
];
let failed = 0;
try {
  for (const [name, run] of properties) {
    const t0 = performance.now();
    const r = run();
    process.stdout.write(
      `${name.padEnd(30)} ${r.failed ? 'FAILED' : 'ok'}  ${r.numRuns} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s (seed ${seed})\n`,
    );
    if (r.failed) {
      failed++;
      process.stdout.write(`${r.report}\n`);
    }
  }
} finally {
  receive.close();
}
process.exitCode = failed > 0 ? 1 : 0;
