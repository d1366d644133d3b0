// Restore soak: many sequential restores through the Firecracker emulator against one long-lived
// `fc-uffd serve`, sampling the handler's open fds, threads and RSS every --every restores. A
// handler that keeps anything per ended VM shows it here as a rising curve. Exits 1 when RSS grew
// by --max-rss-growth-mib or more, or any fd or thread more, between the first sample and the last.
//   node dist/bench/restore-soak.js [--restores 1000] [--every 100] [--size-mib 16]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runEmulator } from '../tools/emulator/run.js';
import { writeDemoImage } from '../tools/demo-image.js';
import { startServe } from '../test/helpers/cli.js';
import { mdTable, writeResults } from './lib/results.js';

const { values } = parseArgs({
  options: {
    restores: { type: 'string', default: '1000' },
    every: { type: 'string', default: '100' },
    'size-mib': { type: 'string', default: '16' },
    'max-rss-growth-mib': { type: 'string', default: '5' },
  },
});
const restores = Number(values.restores);
const every = Number(values.every);
const sizeBytes = Number(values['size-mib']) * 1024 * 1024;
const maxRssGrowthMiB = Number(values['max-rss-growth-mib']);

interface Sample {
  restores: number;
  fds: number;
  threads: number;
  rssMiB: number;
}

function sample(pid: number, done: number): Sample {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)![1]);
  return { restores: done, fds: fs.readdirSync(`/proc/${pid}/fd`).length, threads: field('Threads'), rssMiB: field('VmRSS') / 1024 };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-restore-soak-'));
const mem = path.join(dir, 'memory.bin');
writeDemoImage(mem, sizeBytes, 21);
const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
const pid = serve.child.pid!;
const samples: Sample[] = [];
let failures = 0;
const t0 = performance.now();
try {
  for (let i = 1; i <= restores; i++) {
    const r = await runEmulator({
      socket: serve.socket,
      mem,
      vcpus: 2,
      share: 'split',
      pattern: 'random',
      touchPages: 256,
      writePercent: 20,
      seed: i,
      deadlineMs: 30000,
    });
    if (r.code !== 0 || r.report?.mismatches !== 0) {
      failures++;
      process.stdout.write(`restore ${i} FAILED (exit ${r.code ?? r.signal}): ${r.stderr.trim().slice(0, 300)}\n`);
    }
    if (i % every === 0) {
      // The VM's end is logged after the emulator exits: wait for it so the sample sees it released.
      await serve.waitForLog((l) => (l.msg === 'VM ended' || String(l.msg).startsWith('VM stopped')) && l.vm === `vm-${i}`);
      const s = sample(pid, i);
      samples.push(s);
      process.stdout.write(
        `${String(s.restores).padStart(6)} restores  fds ${s.fds}  threads ${s.threads}  rss ${s.rssMiB.toFixed(1)} MiB  (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`,
      );
    }
  }
} finally {
  await serve.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
const first = samples[0]!;
const last = samples[samples.length - 1]!;
const rssGrowth = last.rssMiB - first.rssMiB;
process.stdout.write(
  `\n${restores} restores, ${failures} failed; from ${first.restores} to ${last.restores} restores: RSS ${rssGrowth >= 0 ? '+' : ''}${rssGrowth.toFixed(1)} MiB, fds ${last.fds - first.fds >= 0 ? '+' : ''}${last.fds - first.fds}, threads ${last.threads - first.threads >= 0 ? '+' : ''}${last.threads - first.threads}\n`,
);
const soak = {
  restores,
  every,
  sizeBytes,
  failures,
  samples,
  growth: { rssMiB: rssGrowth, fds: last.fds - first.fds, threads: last.threads - first.threads },
};
const sign = (x: number, digits = 0): string => `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`;
writeResults(
  'restore-soak',
  soak,
  [
    `Restore soak: ${restores} sequential restores (${sizeBytes / 2 ** 20} MiB, 2 vCPUs, 256 random touches each) against one \`fc-uffd serve\`; ${failures} failed. From restore ${first.restores} to ${last.restores}: RSS ${sign(rssGrowth, 1)} MiB, fds ${sign(soak.growth.fds)}, threads ${sign(soak.growth.threads)}.`,
    mdTable(
      ['restores', 'fds', 'threads', 'RSS MiB'],
      samples.map((x) => [String(x.restores), String(x.fds), String(x.threads), x.rssMiB.toFixed(1)]),
    ),
  ].join('\n\n'),
);
if (failures > 0 || rssGrowth >= maxRssGrowthMiB || last.fds > first.fds || last.threads > first.threads) process.exitCode = 1;
