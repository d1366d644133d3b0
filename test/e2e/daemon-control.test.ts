// The daemon's control API as an orchestrator meets it: bad input refused with 4xx and a stable
// code, nothing left behind; a restore deleted while its VMs run; the daemon stopped with live VMs;
// the peer allow-list.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { FcUffdError } from '../../src/errors.js';
import { runEmulator } from '../../tools/emulator/run.js';
import { writeDemoImage } from '../../tools/demo-image.js';
import { withScratch } from '../helpers/scratch.js';
import { startDaemon, until } from '../helpers/daemon.js';

const MiB = 1024 * 1024;

/** A raw request on the control socket (what curl --unix-socket sends), for inputs the typed client cannot produce. */
function raw(
  socketPath: string,
  method: string,
  urlPath: string,
  body?: string | Buffer,
): Promise<{ status: number; json: { code?: string; message?: string } }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        method,
        path: urlPath,
        headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) as { code?: string } }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function refused(p: Promise<unknown>, code: string, status: number): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof FcUffdError, String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.details.status, status);
    return true;
  });
}

describe('fc-uffd daemon control API', () => {
  test('bad input gets 4xx with a stable code and leaves nothing behind; the control socket is mode 0600', async () => {
    await withScratch(async (dir) => {
      const mem = path.join(dir, 'memory.bin');
      writeDemoImage(mem, 4 * MiB, 3);
      const sockets = path.join(dir, 'sockets');
      fs.mkdirSync(sockets);
      const d = await startDaemon(dir, ['--sockets-dir', sockets, '--loop-threads', '1']);
      try {
        assert.equal(fs.statSync(d.control).mode & 0o777, 0o600);
        const c = d.client;
        await refused(c.createRestore('ok', { mem, nonsense: 1 } as never), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('ok', {}), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('ok', { mem, snapshot: 'x', store: dir }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('ok', { mem, fault_around: 3000 }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('ok', { mem, fault_around: 'adaptiv' as never }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('ok', { mem, on_fatal: 'explode' as never }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('ok', { mem, socket: path.join(dir, 'outside.sock') }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('ok', { mem, socket: '../outside.sock' }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('a/b', { mem }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('a..b', { mem }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('-leading-dash', { mem }), 'CONTROL_BAD_REQUEST', 400);
        await refused(c.createRestore('x'.repeat(65), { mem }), 'CONTROL_BAD_REQUEST', 400);
        assert.equal((await raw(d.control, 'PUT', '/restores/..', JSON.stringify({ mem }))).json.code, 'CONTROL_BAD_REQUEST');
        const badJson = await raw(d.control, 'PUT', '/restores/ok', '{"mem": ');
        assert.deepEqual([badJson.status, badJson.json.code], [400, 'CONTROL_BAD_REQUEST']);
        const array = await raw(d.control, 'PUT', '/restores/ok', '[]');
        assert.deepEqual([array.status, array.json.code], [400, 'CONTROL_BAD_REQUEST']);
        const big = await raw(d.control, 'PUT', '/restores/ok', Buffer.alloc(100 * 1024, 0x20));
        assert.deepEqual([big.status, big.json.code], [413, 'CONTROL_BODY_TOO_LARGE']);
        const method = await raw(d.control, 'POST', '/restores/ok', '{}');
        assert.deepEqual([method.status, method.json.code], [405, 'CONTROL_METHOD_NOT_ALLOWED']);
        assert.equal((await raw(d.control, 'GET', '/nowhere')).status, 404);
        await refused(c.getRestore('missing'), 'CONTROL_NOT_FOUND', 404);
        await refused(c.deleteRestore('missing'), 'CONTROL_NOT_FOUND', 404);

        // Snapshots that cannot be opened: 422 with the snapshot's own code, no socket file.
        await refused(c.createRestore('nofile', { mem: path.join(dir, 'absent.bin') }), 'SNAPSHOT_OPEN', 422);
        await refused(
          c.createRestore('nostore', { snapshot: 'a'.repeat(64), store: path.join(dir, 'absent-store') }),
          'SNAPSHOT_STORE',
          422,
        );
        // A directory that is not a chunk store (no manifests/) is refused, not turned into an empty store.
        fs.mkdirSync(path.join(dir, 'empty-store'));
        await refused(
          c.createRestore('nomanifest', { snapshot: 'a'.repeat(64), store: path.join(dir, 'empty-store') }),
          'STORE_CONFIG',
          422,
        );
        // A remote store that cannot be reached: the manifest read fails, 422, nothing left behind.
        await refused(c.createRestore('remote', { snapshot: 'a'.repeat(64), store: 'http://127.0.0.1:1/store' }), 'SNAPSHOT_STORE', 422);
        await refused(c.createRestore('badws', { mem, prefetch: path.join(dir, 'absent.ws') }), 'WORKING_SET', 422);
        assert.deepEqual(fs.readdirSync(sockets), [], 'a refused restore leaves no socket');
        assert.deepEqual(await c.listRestores(), []);

        // A duplicate name, and a socket another restore uses.
        const first = await c.createRestore('ok', { mem });
        assert.ok(fs.statSync(first.socket).isSocket());
        await refused(c.createRestore('ok', { mem }), 'CONTROL_CONFLICT', 409);
        await refused(c.createRestore('other', { mem, socket: 'ok.sock' }), 'CONTROL_CONFLICT', 409);
        assert.deepEqual(fs.readdirSync(sockets), ['ok.sock']);
        assert.equal((await c.health()).status, 'ok');
      } finally {
        assert.equal(await d.stop(), 0);
      }
    });
  });

  test('DELETE while VMs run: no new VMs, the live one finishes verified, then the restore is gone; force stops at once', async () => {
    await withScratch(async (dir) => {
      const mem = path.join(dir, 'memory.bin');
      writeDemoImage(mem, 8 * MiB, 4);
      const d = await startDaemon(dir, ['--loop-threads', '1']);
      try {
        const c = d.client;
        const r = await c.createRestore('web', { mem });
        const running = runEmulator({ socket: r.socket, mem, pattern: 'seq', holdMs: 4000, deadlineMs: 30000 });
        await until('the VM is served', async () => (await c.getRestore('web')).vms.some((vm) => vm.state === 'serving'));
        const deleted = await c.deleteRestore('web');
        assert.equal(deleted.state, 'draining');
        assert.equal(deleted.vms_live, 1);
        assert.equal(fs.existsSync(r.socket), false, 'the socket file is gone: Firecracker cannot connect');
        await refused(c.createRestore('web', { mem }), 'CONTROL_CONFLICT', 409);
        const late = await runEmulator({ socket: r.socket, mem, pattern: 'seq', deadlineMs: 5000 });
        assert.notEqual(late.code, 0, 'a VM after DELETE is refused');
        const done = await running;
        assert.equal(done.code, 0, done.stderr);
        assert.equal(done.report!.mismatches, 0);
        assert.equal(done.report!.pagesVerified, (8 * MiB) / 4096);
        await until('the drained restore is gone', async () => (await c.listRestores()).length === 0);
        await refused(c.getRestore('web'), 'CONTROL_NOT_FOUND', 404);

        // Force: gone at once even with a live VM.
        const again = await c.createRestore('web', { mem });
        const held = runEmulator({ socket: again.socket, mem, pattern: 'seq', touchPages: 64, holdMs: 3000, deadlineMs: 30000 });
        await until('the VM is served', async () => (await c.getRestore('web')).vms.some((vm) => vm.state === 'serving'));
        await c.deleteRestore('web', { force: true });
        await refused(c.getRestore('web'), 'CONTROL_NOT_FOUND', 404);
        const h = await held;
        assert.equal(h.report?.mismatches ?? 0, 0);
        assert.ok(
          d.logs().some((l) => l.restore === 'web' && l.reason === 'stopped'),
          'the forced VM ended as stopped',
        );
      } finally {
        assert.equal(await d.stop(), 0);
      }
    });
  });

  test('SIGTERM with a live VM: new restores refused, the VM gets --stop-timeout-ms, then the daemon reports it and exits', async () => {
    await withScratch(async (dir) => {
      const mem = path.join(dir, 'memory.bin');
      writeDemoImage(mem, 4 * MiB, 5);
      const d = await startDaemon(dir, ['--loop-threads', '1', '--stop-timeout-ms', '800']);
      const r = await d.client.createRestore('long', { mem });
      const held = runEmulator({ socket: r.socket, mem, pattern: 'seq', touchPages: 32, holdMs: 6000, deadlineMs: 30000 });
      await until('the VM is served', async () => (await d.client.getRestore('long')).vms.some((vm) => vm.state === 'serving'));
      const t0 = Date.now();
      d.child.kill('SIGTERM');
      await d.waitForLog((l) => l.signal === 'SIGTERM');
      const late = await raw(d.control, 'PUT', '/restores/late', JSON.stringify({ mem }));
      assert.deepEqual([late.status, late.json.code], [503, 'CONTROL_STOPPING']);
      assert.equal(await d.exited, 0);
      const elapsedMs = Date.now() - t0;
      assert.ok(elapsedMs >= 700 && elapsedMs < 5000, `stopped after ${elapsedMs} ms (timeout 800)`);
      const report = d.logs().find((l) => Array.isArray(l.left));
      assert.ok(report, 'the VMs left are reported');
      assert.deepEqual(
        (report.left as Array<{ restore: string; vm: string }>).map((x) => `${x.restore}/${x.vm}`),
        ['long/vm-1'],
      );
      assert.equal(fs.existsSync(r.socket), false);
      assert.equal(fs.existsSync(d.control), false);
      await d.client.close();
      await held;
    });
  });

  test('--allow-uid: a peer not on the list gets 403 and a log line; one on it is served', async () => {
    await withScratch(async (dir) => {
      const other = await startDaemon(dir, ['--loop-threads', '1', '--allow-uid', '4242', '--allow-gid', '4243']);
      try {
        await refused(other.client.health(), 'CONTROL_FORBIDDEN', 403);
        await other.waitForLog(
          (l) => typeof l.msg === 'string' && l.msg.includes('refused') && (l.peer as { uid?: number }).uid === process.getuid!(),
        );
      } finally {
        assert.equal(await other.stop(), 0);
      }
      const mine = await startDaemon(dir, ['--loop-threads', '1', '--allow-uid', '4242', '--allow-uid', String(process.getuid!())]);
      try {
        assert.equal((await mine.client.health()).status, 'ok');
      } finally {
        assert.equal(await mine.stop(), 0);
      }
    });
  });
});
