// One fresh process's cost of taking chunk bodies in from a remote store: GETs every chunk named
// (all at once, as a working-set prefetch asks for them) and prints the CPU each of its threads
// spent from the first request to the last byte (schedstat: exact, not in ticks). The remote
// bench runs it with and without the fc-uffd executable's Node flags.
//   node [flags] dist/bench/lib/receive-child.js '<json ReceiveChildConfig>'
// Read paths:
// - `store`: the store as openStore opens it for the handler (HTTP or S3: undici dispatch into
//   shared memory, behind the in-flight sharing, retries and concurrency limit), as a fault's
//   reads are taken in: on the main thread;
// - `store-background`: the same store, as background reads (a working set's, a chunk's rest
//   behind its frame) are taken in: on the store body thread;
// - `request-stream` (HTTP only): undici request() with the body read by its async iterator into
//   shared memory, the read path before StorePool.get (kept here as the baseline it was replaced against).
import fs from 'node:fs';
import { Pool } from 'undici';
import { chunkKey } from '../../src/store/layout.js';
import { openStore } from '../../src/store/open.js';
import { storeBodyThreadLoaded } from '../../src/store/undici-request.js';

export interface ReceiveChildConfig {
  /** The store (http://… or s3://…; its chunks under chunks/). */
  store: string;
  /** S3's endpoint, for an s3:// store. */
  s3Endpoint?: string;
  digests: string[];
  path: 'store' | 'store-background' | 'request-stream';
}

export interface ReceiveChildResult {
  bytes: number;
  wallMs: number;
  /** CPU of the main thread, and of every other thread together (V8's compile and GC helpers, libuv, the store body thread). */
  mainCpuMs: number;
  otherCpuMs: number;
}

function threadCpuNs(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of fs.readdirSync('/proc/self/task'))
    out.set(tid, Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
  return out;
}

async function viaRequestStream(pool: Pool, basePath: string, digest: string): Promise<number> {
  const res = await pool.request({ method: 'GET', path: `${basePath}/${chunkKey(digest)}` });
  if (res.statusCode !== 200) throw new Error(`GET ${digest}: HTTP ${res.statusCode}`);
  const out = Buffer.from(new SharedArrayBuffer(Number(res.headers['content-length'])));
  let got = 0;
  for await (const piece of res.body as AsyncIterable<Buffer>) {
    out.set(piece, got);
    got += piece.length;
  }
  return got;
}

const c = JSON.parse(process.argv[2]!) as ReceiveChildConfig;
const store = await openStore(c.store, c.s3Endpoint ? { s3: { endpoint: c.s3Endpoint } } : {});
// What taking bodies in costs on each path, not the body thread's start (~75 ms, which a handler
// spends before its first restore, or on the main thread's path meanwhile).
await storeBodyThreadLoaded();
const u = new URL(c.path === 'request-stream' ? c.store : 'http://unused');
const pool = new Pool(u.origin, { connections: 16 });
const before = threadCpuNs();
const t0 = performance.now();
const sizes = await Promise.all(
  c.digests.map(async (d) =>
    c.path === 'request-stream'
      ? viaRequestStream(pool, u.pathname.replace(/\/$/, ''), d)
      : (await store.getChunk(d, { background: c.path === 'store-background' })).length,
  ),
);
const wallMs = performance.now() - t0;
const after = threadCpuNs();
let mainCpuMs = 0;
let otherCpuMs = 0;
for (const [tid, ns] of after) {
  const ms = (ns - (before.get(tid) ?? 0)) / 1e6;
  if (Number(tid) === process.pid) mainCpuMs += ms;
  else otherCpuMs += ms;
}
const result: ReceiveChildResult = { bytes: sizes.reduce((a, b) => a + b, 0), wallMs, mainCpuMs, otherCpuMs };
process.stdout.write(`${JSON.stringify(result)}\n`);
await Promise.all([store.close(), pool.close()]);
