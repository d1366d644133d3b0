// tools/bin/fc-link, the remote benchmark's link: bytes arrive whole and in order, never sooner than
// the link allows (one RTT plus the bytes at its rate), and the link exits when its parent's pipe closes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { Link } from '../../tools/link.js';

/** A server that answers each connection's first byte with `body`, then closes. */
async function server(body: Buffer): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = net.createServer((s) => {
    s.once('data', () => s.end(body));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => new Promise((r) => srv.close(() => r())) };
}

/** Sends one byte through the link and reads the answer to its end: bytes and elapsed ms. */
async function fetchThrough(port: number): Promise<{ bytes: Buffer; ms: number }> {
  const t0 = performance.now();
  const sock = net.connect({ port, host: '127.0.0.1' });
  const parts: Buffer[] = [];
  sock.on('data', (d: Buffer) => parts.push(d));
  sock.write('x');
  await new Promise<void>((resolve, reject) => {
    sock.on('end', resolve);
    sock.on('error', reject);
  });
  sock.destroy();
  return { bytes: Buffer.concat(parts), ms: performance.now() - t0 };
}

test('fc-link forwards an answer whole, no sooner than one RTT plus its bytes at the link rate', async () => {
  const body = crypto.randomBytes(3 << 20);
  const srv = await server(body);
  const link = await Link.start({ host: '127.0.0.1', port: srv.port }, { rttMs: 40, bytesPerSecond: 30e6 });
  try {
    const { bytes, ms } = await fetchThrough(link.port);
    assert.ok(bytes.equals(body), `answer differs: ${bytes.length} of ${body.length} bytes`);
    const floorMs = 40 + (body.length / 30e6) * 1000; // 145 ms
    assert.ok(ms >= floorMs - 1, `answer took ${ms.toFixed(1)} ms, the link cannot deliver it under ${floorMs.toFixed(1)} ms`);
  } finally {
    await link.close();
    await srv.close();
  }
});

test('fc-link without a cap adds the RTT only, and exits when its stdin closes', async () => {
  const body = crypto.randomBytes(100_000);
  const srv = await server(body);
  const link = await Link.start({ host: '127.0.0.1', port: srv.port }, { rttMs: 25, bytesPerSecond: 0 });
  try {
    const { bytes, ms } = await fetchThrough(link.port);
    assert.ok(bytes.equals(body));
    assert.ok(ms >= 24, `answer after ${ms.toFixed(1)} ms, under the 25 ms RTT`);
  } finally {
    await link.close(); // resolves only once the process exited
    await srv.close();
  }
  assert.throws(() => process.kill(link.pid, 0), /ESRCH/, 'the link process is gone');
});
