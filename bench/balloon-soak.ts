// Balloon soak: many rounds of the emulator's balloon (thousands of MADV_DONTNEED inflate/deflate
// cycles each) racing 4 vCPU threads, against one long-lived `fc-uffd serve`. Every round must
// verify byte for byte and finish before its deadline (a hang fails it).
//   node dist/bench/balloon-soak.js [--rounds N] [--cycles N] [--size-mib N]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runEmulator } from '../tools/emulator/run.js';
import { writeDemoImage } from '../tools/demo-image.js';
import { startServe } from '../test/helpers/cli.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    cycles: { type: 'string', default: '5000' },
    'size-mib': { type: 'string', default: '128' },
  },
});
const rounds = Number(values.rounds);
const cycles = Number(values.cycles);
const sizeBytes = Number(values['size-mib']) * 1024 * 1024;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-soak-'));
const mem = path.join(dir, 'memory.bin');
writeDemoImage(mem, sizeBytes, 13);
const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem]);
let failures = 0;
const t0 = performance.now();
try {
  for (let i = 0; i < rounds; i++) {
    const r = await runEmulator({
      socket: serve.socket,
      mem,
      vcpus: 4,
      share: i % 2 ? 'same' : 'split',
      pattern: 'random',
      writePercent: 25,
      kernelAccess: 16,
      balloonCycles: cycles,
      balloonMaxPages: 64,
      seed: i + 1,
      deadlineMs: 120000,
    });
    const ended = await serve.waitForLog((l) => l.msg === 'VM ended' && l.vm === `vm-${i + 1}`);
    const ok = r.code === 0 && r.report?.mismatches === 0;
    if (!ok) failures++;
    process.stdout.write(
      `round ${i + 1}/${rounds}: ${ok ? 'ok' : `FAILED (exit ${r.code ?? r.signal}) ${r.stderr.slice(0, 300)}`}  removes ${String(ended.removeEvents)}  deferrals ${String(ended.deferrals)}  max deferral ${String(ended.maxDeferralUs)} µs  handshake→done ${r.report?.handshakeToDoneMs.toFixed(0)} ms\n`,
    );
  }
} finally {
  await serve.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(
  `${rounds} rounds × ${cycles} balloon cycles in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${failures} failed\n`,
);
process.exitCode = failures > 0 ? 1 : 0;
