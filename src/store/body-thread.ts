// The store body thread (BodyThread in undici-request.ts): background GETs sent and their bodies
// taken in off the main thread, by a twin of each StorePool with the same origin and options.
// It runs at the process's priority. Tried at nice 5, 10 and 19 (remote bench, 1 ms link, 2 rounds
// of 5 runs, alternating): a fault that arrived during a working-set prefetch waited about half as
// long (HTTP uncached frame p50 8.2-8.9 ms at nice 0, 3.9-6.1 niced), but the prefetch the VM needs
// anyway came in later, and the restores ended later (HTTP ws-cold median 184-188 ms at nice 0,
// 186-206 niced; S3 219-233, 225-253): the restore's time wins.
import { parentPort } from 'node:worker_threads';
import type { Pool } from 'undici';
import { StoreError } from './types.js';
import { dispatchGet, newPool, type BodyThreadReply, type BodyThreadRequest } from './undici-request.js';

const port = parentPort!;
const pools = new Map<number, Pool>();
const aborts = new Map<number, AbortController>();

async function get(req: Extract<BodyThreadRequest, { op: 'get' }>): Promise<BodyThreadReply> {
  let pool = pools.get(req.pool.id);
  if (!pool) {
    pool = newPool(req.pool.origin, req.pool.options);
    pools.set(req.pool.id, pool);
  }
  const abort = new AbortController();
  aborts.set(req.id, abort);
  try {
    return { id: req.id, answer: await dispatchGet(pool, req.spec, abort.signal) };
  } catch (err) {
    const e =
      err instanceof StoreError
        ? err
        : new StoreError('io', `${req.spec.where}: ${err instanceof Error ? err.message : String(err)}`, true);
    return { id: req.id, error: { kind: e.kind, message: e.message, retryable: e.retryable } };
  } finally {
    aborts.delete(req.id);
  }
}

async function close(req: Extract<BodyThreadRequest, { op: 'close' }>): Promise<BodyThreadReply> {
  const pool = pools.get(req.pool);
  pools.delete(req.pool);
  await pool?.close();
  return { id: req.id, closed: true };
}

port.on('message', (req: BodyThreadRequest) => {
  if (req.op === 'abort') {
    aborts.get(req.id)?.abort();
    return;
  }
  // The answer's bytes are a view of shared memory: the main thread gets the same memory, not a copy.
  void (req.op === 'get' ? get(req) : close(req)).then((reply) => port.postMessage(reply));
});

port.postMessage({ id: 0, ready: true } satisfies BodyThreadReply);
