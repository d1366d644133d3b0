// Rewrites the small fragments of a bench/run.ts suite (bench/results/<suite>.<part>.md) from its
// committed JSON, with the same code run.ts uses at the end of a run: for a change to how a
// fragment reads, without measuring again.   node dist/bench/render-parts.js fault-path
import fs from 'node:fs';
import path from 'node:path';
import { faultPathParts, type FaultPathDoc } from './lib/fault-path-parts.js';
import { RESULTS_DIR } from './lib/results.js';

const suite = process.argv[2];
if (!suite || !/^[a-z0-9-]+$/.test(suite)) throw new Error('usage: node dist/bench/render-parts.js SUITE (a bench/run.ts --suite name)');
const json = path.join(RESULTS_DIR, `${suite}.json`);
if (!fs.existsSync(json)) throw new Error(`${json} does not exist: run node dist/bench/run.js --suite ${suite} first`);
const parts = faultPathParts(suite, JSON.parse(fs.readFileSync(json, 'utf8')) as FaultPathDoc);
for (const [part, text] of Object.entries(parts)) {
  const file = path.join(RESULTS_DIR, `${suite}.${part}.md`);
  fs.writeFileSync(file, `${text}\n`);
  process.stdout.write(`${file}\n`);
}
