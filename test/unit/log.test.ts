// The CLI's stderr is a stream of JSON log lines: process warnings (a dependency's notice, such as
// the AWS SDK's on Node 20) must arrive as log lines, not as Node's multi-line text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const LOG = fileURLToPath(new URL('../../src/log.js', import.meta.url));

test('logProcessWarnings: a process warning becomes one JSON warn line, and nothing else reaches stderr', () => {
  const script = `
    const { createLogger, logProcessWarnings } = await import(${JSON.stringify(LOG)});
    logProcessWarnings(createLogger('info'));
    process.emitWarning('first line\\nsecond line', 'NodeVersionSupportWarning');
    await new Promise((r) => setTimeout(r, 50));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr:\n${r.stderr}`);
  const l = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(l.level, 40);
  assert.equal(l.warning, 'NodeVersionSupportWarning');
  assert.equal(l.msg, 'first line\nsecond line');
});
