// `serve --trace` on real restores through the emulator, then `fc-uffd report`, looked at the way a
// person would: the page opened in headless Chromium, its DOM after its scripts ran, its console,
// and a screenshot whose pixels must show the charts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { runEmulator, type EmulatorOptions } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { writeClusteredTrace } from '../../tools/emulator/traces.js';
import { decodeTrace, T_FAULT, T_FETCH_DONE, T_INSTALL, T_REMOVE, T_SERVED, FLAG_PREFETCH } from '../../src/trace/format.js';
import { CLI_PATH, startServe } from '../helpers/cli.js';
import { tempDir } from '../helpers/files.js';
import { bodyAttributes, chromiumPath, dumpDom, screenshot } from '../helpers/chromium.js';
import { countColor, decodePng, distinctColors } from '../helpers/png.js';

const MiB = 1024 * 1024;

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CLI_PATH, ...args], { encoding: 'utf8', timeout: 60000 });
}

/** One traced restore of the chunked snapshot; returns the trace file. */
async function tracedRestore(dir: string, name: string, source: string[], workload: (socket: string) => EmulatorOptions): Promise<string> {
  const serve = await startServe(path.join(dir, `${name}.sock`), [...source, '--trace', path.join(dir, `${name}-{vm}.trace`)]);
  try {
    const r = await runEmulator(workload(serve.socket));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.report!.mismatches, 0);
    await serve.waitForLog((l) => l.msg === 'wrote trace');
  } finally {
    assert.equal(await serve.stop(), 0);
  }
  return path.join(dir, `${name}-vm-1.trace`);
}

test('a traced restore renders as a report with every chart drawn, in a real browser', { timeout: 180000 }, async (t) => {
  const chromium = chromiumPath();
  if (!chromium) {
    t.skip('chromium is not installed (apt-get install chromium; .ci/run does)');
    return;
  }
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    writeDemoImage(mem, 64 * MiB, 31);
    const store = path.join(dir, 'store');
    const packed = cli(['pack', mem, '--store', store, '--json']);
    assert.equal(packed.status, 0, packed.stderr);
    const manifest = (JSON.parse(packed.stdout.trim().split('\n').pop()!) as { id: string }).id;
    const accesses = path.join(dir, 'accesses.txt');
    writeClusteredTrace(accesses, 64 * MiB, { fraction: 0.2, seed: 9, maxClusterPages: 16, writeFraction: 0.2 });
    const source = ['--snapshot', manifest, '--store', store, '--fault-around', '64k'];
    const ws = path.join(dir, 'vm.ws');

    // First restore: on demand, with the balloon racing the guest, recording a working set too.
    const first = await tracedRestore(dir, 'first', [...source, '--record-ws', ws], (socket) => ({
      socket,
      mem,
      vcpus: 2,
      share: 'same',
      pattern: `trace:${accesses}`,
      writePercent: 10,
      balloonCycles: 200,
      balloonMaxPages: 16,
      deadlineMs: 60000,
    }));
    const t1 = decodeTrace(fs.readFileSync(first));
    const count = (tr: typeof t1, type: number, flag = 0): number =>
      tr.type.reduce((n, x, i) => n + (x === type && (tr.flags[i]! & flag) === flag ? 1 : 0), 0);
    assert.ok(count(t1, T_FAULT) > 100 && count(t1, T_SERVED) > 100, 'faults traced');
    assert.ok(count(t1, T_REMOVE) > 0, 'balloon removes traced');
    assert.ok(count(t1, T_FETCH_DONE) > 0, 'chunk fetches traced');
    assert.ok(t1.header.regions.length > 0 && t1.header.pageSizeBytes === 4096);

    // Second restore: the working set prefetched.
    const second = await tracedRestore(dir, 'second', [...source, '--prefetch', ws], (socket) => ({
      socket,
      mem,
      vcpus: 1,
      pattern: `trace:${accesses}`,
      deadlineMs: 60000,
    }));
    assert.ok(count(decodeTrace(fs.readFileSync(second)), T_INSTALL, FLAG_PREFETCH) > 0, 'prefetch installs traced');

    const html = path.join(dir, 'report.html');
    const r = cli(['report', second, '--working-set', ws, '-o', html]);
    assert.equal(r.status, 0, r.stderr);
    const page = fs.readFileSync(html, 'utf8');
    assert.doesNotMatch(page, /(src|href)\s*=\s*["']?(https?:)?\/\//i, 'nothing is loaded from the network');

    const profile = path.join(dir, 'chromium-profile');
    const seen = dumpDom(chromium, html, profile);
    const body = bodyAttributes(seen.dom);
    assert.equal(body['data-render-error'], undefined, body['data-render-error']);
    assert.equal(body['data-rendered'], '1');
    for (const chart of ['map', 'heat', 'latency', 'waterfall'])
      assert.ok(Number(body[`data-drawn-${chart}`]) > 0, `${chart} drew something: ${JSON.stringify(body)}`);
    assert.deepEqual(seen.console, []);

    const png = path.join(dir, 'report.png');
    screenshot(chromium, html, png, 1200, 2400, profile);
    const image = decodePng(fs.readFileSync(png));
    assert.ok(distinctColors(image) > 20, 'the screenshot is not blank');
    assert.ok(countColor(image, '#59a14f') > 200, 'prefetched-and-used pages are drawn in the memory map');
    assert.ok(countColor(image, '#4e79a7') > 50, 'faults / data pages are drawn');

    // The first restore's report too (balloon, no prefetch): rendered without errors.
    const html1 = path.join(dir, 'first.html');
    assert.equal(cli(['report', first, '-o', html1]).status, 0);
    const b1 = bodyAttributes(dumpDom(chromium, html1, profile).dom);
    assert.equal(b1['data-rendered'], '1', JSON.stringify(b1));

    // The console check itself can fail: a page that logs an error is caught.
    const bad = path.join(dir, 'bad.html');
    fs.writeFileSync(bad, '<!doctype html><body><script>console.error("broken")</script></body>');
    assert.equal(dumpDom(chromium, bad, profile).console.length, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('report: refuses a missing trace, an existing output, and writing over its input', () => {
  const dir = tempDir();
  try {
    const missing = cli(['report', path.join(dir, 'nope.trace'), '-o', path.join(dir, 'r.html')]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot read trace .*no such file.*\[TRACE_OPEN\]/);
    assert.equal(fs.existsSync(path.join(dir, 'r.html')), false);

    const notTrace = path.join(dir, 'not.trace');
    fs.writeFileSync(notTrace, 'hello');
    const bad = cli(['report', notTrace, '-o', path.join(dir, 'r.html')]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /not an fc-uffd trace.*\[TRACE_FORMAT\]/);

    const existing = path.join(dir, 'existing.html');
    fs.writeFileSync(existing, 'keep me');
    const trace = path.join(dir, 'empty.trace');
    fs.writeFileSync(trace, Buffer.concat([Buffer.from('FCUTRACE'), Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]), Buffer.from('{}')]));
    const hdr = cli(['report', trace, '-o', existing]);
    assert.equal(hdr.status, 1);
    assert.match(hdr.stderr, /TRACE_FORMAT/);
    assert.equal(fs.readFileSync(existing, 'utf8'), 'keep me');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
