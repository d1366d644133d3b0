// tools/bin/fc-link, the remote benchmark's link: bytes arrive whole and in order, never sooner than
// the link allows (one RTT plus the bytes at its rate, the rate shared by all connections, fairly),
// and the link exits when its parent's pipe closes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { Link } from '../../tools/link.js';

/** A server that answers each connection's first byte with `body` (or the body for that byte), then closes. */
async function server(body: Buffer | ((ask: string) => Buffer)): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = net.createServer((s) => {
    s.once('data', (d: Buffer) => s.end(typeof body === 'function' ? body(d.toString('latin1', 0, 1)) : body));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => new Promise((r) => srv.close(() => r())) };
}

/** Sends one byte (`ask`) through the link and reads the answer to its end: bytes, elapsed ms, and when it ended. */
async function fetchThrough(port: number, ask = 'x'): Promise<{ bytes: Buffer; ms: number; endedAt: number }> {
  const t0 = performance.now();
  const sock = net.connect({ port, host: '127.0.0.1' });
  const parts: Buffer[] = [];
  sock.on('data', (d: Buffer) => parts.push(d));
  sock.write(ask);
  await new Promise<void>((resolve, reject) => {
    sock.on('end', resolve);
    sock.on('error', reject);
  });
  sock.destroy();
  const endedAt = performance.now();
  return { bytes: Buffer.concat(parts), ms: endedAt - t0, endedAt };
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

test('fc-link shares its rate among connections: two answers at once take as long as both in a row', async () => {
  const body = crypto.randomBytes(3 << 20);
  const srv = await server(body);
  const link = await Link.start({ host: '127.0.0.1', port: srv.port }, { rttMs: 40, bytesPerSecond: 30e6 });
  try {
    const both = await Promise.all([fetchThrough(link.port), fetchThrough(link.port)]);
    for (const { bytes } of both) assert.ok(bytes.equals(body), `answer differs: ${bytes.length} of ${body.length} bytes`);
    const floorMs = 40 + ((2 * body.length) / 30e6) * 1000; // 250 ms: 6 MiB through one 30 MB/s wire
    const lastMs = Math.max(...both.map((x) => x.ms));
    assert.ok(lastMs >= floorMs - 1, `both answers in ${lastMs.toFixed(1)} ms, a shared 30 MB/s link needs ${floorMs.toFixed(1)} ms`);
  } finally {
    await link.close();
    await srv.close();
  }
});

test('fc-link shares its rate fairly: a small answer asked for during a large one is not queued behind it', async () => {
  const large = crypto.randomBytes(3 << 20);
  const small = crypto.randomBytes(100_000);
  const srv = await server((ask) => (ask === 's' ? small : large));
  const link = await Link.start({ host: '127.0.0.1', port: srv.port }, { rttMs: 10, bytesPerSecond: 30e6 });
  try {
    const big = fetchThrough(link.port, 'l');
    await new Promise((r) => setTimeout(r, 20)); // the large answer is on the wire (105 ms of it)
    const little = await fetchThrough(link.port, 's');
    const bigDone = await big;
    assert.ok(little.bytes.equals(small) && bigDone.bytes.equals(large), 'answers differ');
    // In turns the small answer needs ~17 ms of a shared wire (7 ms alone); first in, first out, it
    // would end after the large one.
    assert.ok(
      little.endedAt < bigDone.endedAt,
      `the small answer ended ${(little.endedAt - bigDone.endedAt).toFixed(1)} ms after the large one it was asked for during`,
    );
  } finally {
    await link.close();
    await srv.close();
  }
});
