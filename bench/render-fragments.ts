// Copies each bench/results/<suite>.md fragment between its markers `<!-- bench:<suite> -->` and
// `<!-- /bench:<suite> -->` in README.md, bench/README.md and docs/*.md (numbers are never retyped).
//   node dist/bench/render-fragments.js
import fs from 'node:fs';
import path from 'node:path';
import { RESULTS_DIR } from './lib/results.js';

const root = path.resolve(RESULTS_DIR, '..', '..');
const docs = [path.join(root, 'README.md'), path.join(root, 'bench', 'README.md'), ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join(root, 'docs', f))];
for (const file of docs.filter((f) => fs.existsSync(f))) {
  const before = fs.readFileSync(file, 'utf8');
  const after = before.replace(/<!-- bench:([a-z0-9-]+) -->[\s\S]*?<!-- \/bench:\1 -->/g, (whole, suite: string) => {
    const fragment = path.join(RESULTS_DIR, `${suite}.md`);
    if (!fs.existsSync(fragment)) return whole;
    return `<!-- bench:${suite} -->\n${fs.readFileSync(fragment, 'utf8').trim()}\n<!-- /bench:${suite} -->`;
  });
  if (after !== before) {
    fs.writeFileSync(file, after);
    process.stdout.write(`updated ${path.relative(root, file)}\n`);
  }
}
