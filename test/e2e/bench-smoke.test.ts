// The benchmark suite never runs in npm test; this smoke variant (one small scenario, one run, a few
// seconds) keeps it from rotting: it must run every baseline and write results of the documented shape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/files.js';

const RUN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/run.js');

test('npm run bench --smoke: every baseline runs, the JSON has medians, spreads and finite ratios', () => {
  const dir = tempDir('fc-uffd-bench-smoke-');
  try {
    const out = path.join(dir, 'results.json');
    const r = spawnSync(process.execPath, [RUN, '--smoke', '--out', out, '--data-dir', dir], { encoding: 'utf8', timeout: 120000 });
    assert.equal(r.status, 0, `bench exited ${r.status}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /== ratios/);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8')) as {
      version: number;
      scenarios: {
        name: string;
        skipped?: string;
        variants: {
          variant: { name: string };
          runs: number;
          failures: string[];
          figures: Record<string, { median: number; p99: number; min: number; max: number; iqr: number } | null>;
        }[];
      }[];
      ratios: { name: string; ratio: number; range: [number, number] }[];
    };
    assert.equal(doc.version, 1);
    assert.equal(doc.scenarios.length, 1);
    const s = doc.scenarios[0]!;
    assert.equal(s.skipped, undefined);
    const names = s.variants.map((v) => v.variant.name);
    for (const want of ['ours', 'ours-4k', 'c-4k', 'c-populate', 'file-warm', 'file-cold'])
      assert.ok(names.includes(want), `variant ${want} ran`);
    for (const v of s.variants) {
      assert.deepEqual(v.failures, [], `${v.variant.name} ran cleanly`);
      const done = v.figures.handshakeToDoneMs;
      assert.ok(
        done && done.median > 0 && done.min <= done.median && done.median <= done.max,
        `${v.variant.name}: workload time summarised`,
      );
      if (v.variant.name.startsWith('ours') || v.variant.name.startsWith('c-')) {
        assert.ok((v.figures.handlerPeakAnonKiB?.median ?? 0) > 0, `${v.variant.name}: handler RSS measured`);
        // Populate-everything can finish before the guest touches anything: zero faults is legitimate.
        if (!v.variant.name.includes('populate')) {
          assert.ok((v.figures.faults?.median ?? 0) > 0, `${v.variant.name}: faults counted`);
          assert.ok((v.figures.cpuUsPerFault?.median ?? 0) > 0, `${v.variant.name}: handler CPU measured`);
        }
      }
    }
    const kinds = doc.ratios.map((q) => q.name);
    for (const want of ['latency p50', 'latency p99', 'File backend, warm', 'File backend, cold', 'populate everything'])
      assert.ok(
        kinds.some((k) => k.includes(want)),
        `ratio ${want} printed`,
      );
    for (const q of doc.ratios) {
      assert.ok(Number.isFinite(q.ratio) && q.ratio > 0, `${q.name}: ${q.ratio}`);
      assert.ok(q.range[0] > 0 && Number.isFinite(q.range[1]), `${q.name}: range`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
