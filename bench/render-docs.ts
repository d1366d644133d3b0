// Copies each bench suite's fragment (bench/results/<suite>.md, written by `bench/run.ts --suite`)
// into the docs between `<!-- bench:<suite> -->` and `<!-- /bench:<suite> -->`, so that numbers in
// the docs are never retyped. `--check` changes nothing and exits 1 when a doc is out of date.
//   node dist/bench/render-docs.js [--check]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DOCS = ['README.md', 'bench/README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const BLOCK = /(<!-- bench:([a-z0-9-]+) -->\n)[\s\S]*?(<!-- \/bench:\2 -->)/g;

const check = process.argv.includes('--check');
let stale = 0;
for (const doc of DOCS) {
  const file = path.join(ROOT, doc);
  const text = fs.readFileSync(file, 'utf8');
  const next = text.replace(BLOCK, (_all, open: string, suite: string, close: string) => {
    const fragment = path.join(ROOT, 'bench/results', `${suite}.md`);
    if (!fs.existsSync(fragment)) throw new Error(`${doc} quotes bench suite ${suite}, but ${path.relative(ROOT, fragment)} does not exist (run node dist/bench/run.js --suite ${suite} ...)`);
    return `${open}${fs.readFileSync(fragment, 'utf8')}${close}`;
  });
  if (next === text) continue;
  stale++;
  if (check) process.stdout.write(`${doc}: out of date with bench/results\n`);
  else {
    fs.writeFileSync(file, next);
    process.stdout.write(`${doc}: fragments copied in\n`);
  }
}
if (check && stale > 0) process.exitCode = 1;
