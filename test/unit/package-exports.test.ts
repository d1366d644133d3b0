import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

type ExportTarget = string | { types: string; default: string };

test('every target of package.json exports (and bin) is in the tarball, package.json included', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    exports: Record<string, ExportTarget>;
    bin: Record<string, string>;
  };
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const files = new Set((JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path));
  assert.deepEqual(Object.keys(pkg.exports).sort(), ['.', './package.json', './testing']);
  const targets = Object.values(pkg.exports).flatMap((t) => (typeof t === 'string' ? [t] : [t.types, t.default]));
  const missing = [...targets, ...Object.values(pkg.bin)].map((t) => t.replace(/^\.\//, '')).filter((t) => !files.has(t));
  assert.deepEqual(missing, []);
  // The testing entry's emulator can be built from the tarball alone.
  for (const f of [
    'tools/Makefile',
    'tools/emulator/fc-emu.c',
    'tools/emulator/fc-emu.h',
    'tools/emulator/kvm.c',
    'tools/emulator/workload.c',
  ])
    assert.ok(files.has(f), f);
  assert.ok(![...files].some((f) => f.startsWith('dist/test/') || f.startsWith('dist/tools/')), 'tests and tools are not shipped');
});

test('the testing entry fails with EMULATOR_MISSING and says how to build the emulator when it is absent', () => {
  const script = `import('${path.join(ROOT, 'dist/src/testing/index.js')}').then((t) => t.runEmulator({ socket: '/x', mem: '/y' })).then(() => process.exit(3), (e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); })`;
  const out = execFileSync(process.execPath, ['-e', script], {
    env: { ...process.env, FC_UFFD_EMULATOR: '/nonexistent/fc-emu' },
    encoding: 'utf8',
  });
  const err = JSON.parse(out) as { code: string; message: string };
  assert.equal(err.code, 'EMULATOR_MISSING');
  assert.match(err.message, /not built at \/nonexistent\/fc-emu/);
  assert.match(err.message, /make -C .*tools bin\/fc-emu/);
});
