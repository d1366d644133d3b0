// tools/render-docs.ts: the blocks between bench markers get their fragment, everything else stays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderDoc } from '../../tools/render-docs.js';

const fragments: Record<string, string> = { a: '| x |\n| - |\n| 1 |\n', 'a.part': 'part text' };
const fragment = (name: string): string | undefined => fragments[name];

test('render-docs: replaces each block with its fragment and reports the stale ones', () => {
  const doc =
    'intro\n<!-- bench:a -->\nold figures\n<!-- /bench:a -->\nmiddle\n<!-- bench:a.part -->\npart text\n<!-- /bench:a.part -->\nend\n';
  const r = renderDoc('README.md', doc, fragment);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.stale, ['README.md: block bench:a differs from bench/results/a.md']);
  assert.equal(
    r.text,
    'intro\n<!-- bench:a -->\n| x |\n| - |\n| 1 |\n<!-- /bench:a -->\nmiddle\n<!-- bench:a.part -->\npart text\n<!-- /bench:a.part -->\nend\n',
  );
  assert.deepEqual(renderDoc('README.md', r.text, fragment).stale, [], 'a rendered doc is up to date');
});

test('render-docs: a missing fragment or closing marker is a problem, and the text is left alone', () => {
  const missing = renderDoc('docs/x.md', '<!-- bench:nope -->\nkeep\n<!-- /bench:nope -->\n', fragment);
  assert.deepEqual(missing.problems, [
    "docs/x.md: block bench:nope quotes bench/results/nope.md, which does not exist (run the suite's benchmark)",
  ]);
  assert.equal(missing.text, '<!-- bench:nope -->\nkeep\n<!-- /bench:nope -->\n');
  const open = renderDoc('docs/x.md', '<!-- bench:a -->\nno end\n', fragment);
  assert.deepEqual(open.problems, ['docs/x.md: <!-- bench:a --> has no <!-- /bench:a -->']);
});
