// The fc-uffd executable runs with CLI_NODE_FLAGS (its first line says so), and this Node accepts them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { CLI_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { CLI_PATH } from '../helpers/cli.js';

test("the executable's first line runs node with CLI_NODE_FLAGS, which this Node accepts", () => {
  const first = fs.readFileSync(CLI_PATH, 'utf8').split('\n', 1)[0];
  assert.equal(first, `#!/usr/bin/env -S node ${CLI_NODE_FLAGS.join(' ')}`);
  // As the kernel runs it: env splits the line (-S) and starts node from PATH with the flags.
  const r = spawnSync('/usr/bin/env', ['-S', `${process.execPath} ${CLI_NODE_FLAGS.join(' ')}`, CLI_PATH, '--version'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
});
