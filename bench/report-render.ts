// How long `fc-uffd report` takes on a large trace, and how big the page is: a synthetic trace of
// a 1 GiB snapshot with 100k faults (each with its read, served and install records), prefetch
// installs, balloon removes and chunk fetches, built with the same record encoder serve --trace
// uses. Medians of 5 builds; then the page is opened in headless Chromium (when installed) and the
// time until its charts are drawn is measured the same way.
//   node dist/bench/report-render.js [--faults N] [--size-gib G] [--keep FILE]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import {
  encodeHeader,
  FLAG_FAULTED,
  FLAG_PREFETCH,
  FLAG_WRITE,
  K_DATA,
  K_ZERO,
  RecordBuffer,
  T_FAULT,
  T_FETCH_DONE,
  T_FETCH_WANT,
  T_INSTALL,
  T_REMOVE,
  T_SERVED,
  decodeTrace,
  DEFER_WAIT,
  T_DEFER,
} from '../src/trace/format.js';
import { buildTraceReport } from '../src/report/model.js';
import { renderReportHtml } from '../src/report/html.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const faults = arg('--faults', 100_000);
const sizeBytes = arg('--size-gib', 1) * 2 ** 30;
const keep = process.argv.includes('--keep') ? process.argv[process.argv.indexOf('--keep') + 1]! : undefined;
const PS = 4096;
const CHUNK = 4 * 2 ** 20;

/** A deterministic synthetic restore: clustered faults over the whole snapshot, a prefetch, a balloon. */
export function syntheticTrace(): Buffer {
  const rb = new RecordBuffer(faults * 4 + 20_000);
  let x = 12345;
  const rnd = (): number => (x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const pages = sizeBytes / PS;
  const fetched = new Set<number>();
  let t = 0;
  let page = 0;
  for (let i = 0; i < faults; i++) {
    page = rnd() < 0.8 ? (page + 1 + Math.floor(rnd() * 16)) % pages : Math.floor(rnd() * pages);
    t += 20 + rnd() * 60;
    const off = page * PS;
    const addr = 0x7f0000000000 + off;
    const chunk = Math.floor(off / CHUNK);
    rb.put(T_FAULT, 0, rnd() < 0.3 ? FLAG_WRITE : 0, 0, t, addr, 0);
    let lat = 5 + rnd() * 40;
    if (!fetched.has(chunk)) {
      fetched.add(chunk);
      rb.put(T_FETCH_WANT, 0, 0, chunk, t, 0, 0);
      rb.put(T_DEFER, DEFER_WAIT, 0, 0, t + 1, addr, 0);
      lat += 800 + rnd() * 3000;
      rb.put(T_FETCH_DONE, 1, 0, chunk, t + lat - 5, CHUNK, 0);
    }
    const kind = rnd() < 0.3 ? K_ZERO : K_DATA;
    rb.put(T_INSTALL, kind, FLAG_FAULTED, 0, t + lat - 2, off, PS);
    rb.put(T_SERVED, kind, 0, Math.round(lat), t + lat, addr, off);
  }
  for (let i = 0; i < 10_000; i++) rb.put(T_INSTALL, K_DATA, FLAG_PREFETCH, 0, i * 30, Math.floor(rnd() * (pages - 64)) * PS, 64 * PS);
  for (let i = 0; i < 500; i++) rb.put(T_REMOVE, 0, 0, 0, t * rnd(), Math.floor(rnd() * (pages - 256)) * PS, 256 * PS);
  const header = encodeHeader({
    vmId: 'vm-synthetic',
    pid: 1,
    snapshot: `memfile:${sizeBytes}:synthetic`,
    snapshotSizeBytes: sizeBytes,
    pageSizeBytes: PS,
    faultAroundBytes: PS,
    regions: [{ hostAddr: 0x7f0000000000, sizeBytes, fileOffset: 0 }],
    startEpochMs: Date.now(),
    prefetchPages: 640_000,
  });
  return Buffer.concat([header, Buffer.from(rb.buffer, 0, rb.count * 32)]);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const file = syntheticTrace();
const times: number[] = [];
let html = '';
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  html = renderReportHtml(buildTraceReport(decodeTrace(file), 'synthetic'));
  times.push(performance.now() - t0);
}
process.stdout.write(
  `synthetic trace: ${(sizeBytes / 2 ** 30).toFixed(0)} GiB snapshot, ${faults.toLocaleString('en')} faults, ${(file.length / 2 ** 20).toFixed(1)} MiB of records\n` +
    `report build (decode + bin + HTML), median of 5: ${median(times).toFixed(0)} ms (min ${Math.min(...times).toFixed(0)}, max ${Math.max(...times).toFixed(0)}); page ${(html.length / 1024).toFixed(0)} KiB\n`,
);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-report-bench-'));
const page = keep ?? path.join(dir, 'report.html');
fs.writeFileSync(page, html);
const which = spawnSync('which', ['chromium'], { encoding: 'utf8' });
if (which.status === 0) {
  // Browser time: a load that draws the charts and one that does not run scripts, both fresh processes.
  const run = (extra: string[]): number => {
    const t0 = performance.now();
    const r = spawnSync(
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        `--user-data-dir=${path.join(dir, 'profile')}`,
        ...extra,
        '--dump-dom',
        pathToFileURL(page).href,
      ],
      { encoding: 'utf8', timeout: 120000 },
    );
    if (!/data-rendered="1"/.test(r.stdout) && !extra.length) throw new Error(`the page did not render: ${r.stderr.slice(-500)}`);
    return performance.now() - t0;
  };
  const withJs: number[] = [];
  const without: number[] = [];
  for (let i = 0; i < 5; i++) {
    withJs.push(run([]));
    without.push(run(['--blink-settings=scriptEnabled=false']));
  }
  process.stdout.write(
    `chromium load + draw, median of 5: ${median(withJs).toFixed(0)} ms; the same without scripts: ${median(without).toFixed(0)} ms; drawing costs ~${(median(withJs) - median(without)).toFixed(0)} ms\n`,
  );
} else process.stdout.write('chromium not installed: browser time not measured\n');
if (!keep) fs.rmSync(dir, { recursive: true, force: true });
