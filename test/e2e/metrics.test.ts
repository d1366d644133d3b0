// Prometheus metrics of `fc-uffd serve`, scraped while a VM is served and after it ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runEmulator } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { startServe } from '../helpers/cli.js';
import { tempDir } from '../helpers/files.js';

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('per-VM counters while serving, folded into totals after the VM ends', async () => {
  const dir = tempDir();
  try {
    const mem = path.join(dir, 'memory.bin');
    writeDemoImage(mem, 32 * 1024 * 1024, 5);
    const serve = await startServe(path.join(dir, 'fc.sock'), ['--mem', mem, '--metrics-listen', '127.0.0.1:0']);
    try {
      const url = (await serve.waitForLog((l) => l.msg === 'serving Prometheus metrics')).metrics as string;
      const running = runEmulator({ socket: serve.socket, mem, pattern: 'random', touchPages: 2000, holdMs: 1500 });
      await serve.waitForLog((l) => l.msg === 'handshake accepted, serving');
      // The workload takes milliseconds; the emulator then holds the VM open for 1.5 s.
      await new Promise((r) => setTimeout(r, 500));
      const during = await (await fetch(url)).text();
      assert.equal(metric(during, 'fc_uffd_vms{state="serving"}'), 1, during);
      const liveFaults = metric(during, 'fc_uffd_faults_total{vm="vm-1"}');
      assert.ok(liveFaults !== undefined && liveFaults > 0, `live faults ${liveFaults}`);
      assert.ok((metric(during, 'fc_uffd_fault_latency_microseconds{vm="vm-1",quantile="0.5"}') ?? 0) > 0);
      assert.ok(during.includes('fc_uffd_process_resident_memory_bytes'));

      assert.equal((await running).code, 0);
      const ended = await serve.waitForLog((l) => l.msg === 'VM ended');
      const after = await (await fetch(url)).text();
      assert.equal(metric(after, 'fc_uffd_faults_total{vm=""}'), ended.faults);
      assert.equal(metric(after, 'fc_uffd_faults_total{vm="vm-1"}'), undefined, 'ended VMs leave no per-VM series');
      assert.equal(metric(after, 'fc_uffd_vms_ended_total{reason="vmm-exited"}'), 1);
      // Fault-around cost: on-demand ioctls and pages, and one window per fault (the default 256 KiB, clipped at most).
      assert.equal(metric(after, 'fc_uffd_fault_ioctls_total{vm=""}'), ended.faultIoctls);
      assert.equal(metric(after, 'fc_uffd_fault_installed_pages_total{vm=""}'), ended.faultPagesInstalled);
      const windows = [...after.matchAll(/^fc_uffd_fault_windows_total\{vm="",max_bytes="([^"]+)"\} (\d+)$/gm)].map(
        (m) => [m[1], Number(m[2])] as const,
      );
      assert.equal(
        windows.reduce((a, [, n]) => a + n, 0),
        ended.faults,
        `one window per fault: ${JSON.stringify(windows)}`,
      );
      assert.ok(
        windows.some(([max, n]) => max === '262144' && n > 0),
        JSON.stringify(windows),
      );
      assert.equal((await fetch(url.replace('/metrics', '/other'))).status, 404);
    } finally {
      assert.equal(await serve.stop(), 0);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
