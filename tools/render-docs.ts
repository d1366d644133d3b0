// Copies benchmark fragments into the docs: every block between `<!-- bench:NAME -->` and
// `<!-- /bench:NAME -->` in README.md, bench/README.md and docs/*.md gets bench/results/NAME.md.
//   node dist/tools/render-docs.js           rewrite the blocks (npm run docs:render)
//   node dist/tools/render-docs.js --check   exit 1 naming each file and block that differs (npm run docs:check)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RESULTS = 'bench/results';
const OPEN = /<!-- bench:([a-z0-9][a-z0-9.-]*) -->/g;

function docFiles(): string[] {
  const docs = fs.existsSync(path.join(ROOT, 'docs'))
    ? fs
        .readdirSync(path.join(ROOT, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => `docs/${f}`)
    : [];
  return ['README.md', 'bench/README.md', ...docs.sort()].filter((f) => fs.existsSync(path.join(ROOT, f)));
}

interface Rendered {
  text: string;
  /** One line per block whose content differs from its fragment, or that cannot be rendered. */
  problems: string[];
  stale: string[];
}

/** The doc with every block replaced by its fragment. */
export function renderDoc(file: string, text: string, fragment: (name: string) => string | undefined): Rendered {
  const problems: string[] = [];
  const stale: string[] = [];
  let out = '';
  let at = 0;
  for (const m of text.matchAll(OPEN)) {
    if (m.index < at) continue; // an opening marker inside a block already replaced
    const name = m[1]!;
    const close = `<!-- /bench:${name} -->`;
    const start = m.index + m[0].length;
    const end = text.indexOf(close, start);
    if (end < 0) {
      problems.push(`${file}: <!-- bench:${name} --> has no ${close}`);
      continue;
    }
    const frag = fragment(name);
    if (frag === undefined) {
      problems.push(`${file}: block bench:${name} quotes ${RESULTS}/${name}.md, which does not exist (run the suite's benchmark)`);
      continue;
    }
    const want = `\n${frag.trim()}\n`;
    if (text.slice(start, end) !== want) stale.push(`${file}: block bench:${name} differs from ${RESULTS}/${name}.md`);
    out += text.slice(at, start) + want;
    at = end;
  }
  return { text: out + text.slice(at), problems, stale };
}

function main(): void {
  const check = process.argv.includes('--check');
  const fragment = (name: string): string | undefined => {
    const f = path.join(ROOT, RESULTS, `${name}.md`);
    return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : undefined;
  };
  const problems: string[] = [];
  const stale: string[] = [];
  for (const file of docFiles()) {
    const abs = path.join(ROOT, file);
    const text = fs.readFileSync(abs, 'utf8');
    const r = renderDoc(file, text, fragment);
    problems.push(...r.problems);
    stale.push(...r.stale);
    if (!check && r.text !== text) fs.writeFileSync(abs, r.text);
  }
  for (const p of problems) process.stderr.write(`render-docs: ${p}\n`);
  if (check) for (const s of stale) process.stderr.write(`render-docs: ${s} (run npm run docs:render)\n`);
  if (problems.length || (check && stale.length)) process.exitCode = 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
