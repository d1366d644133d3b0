// sha256 of large buffers on a helper thread, so that hashing a multi-MiB cache entry never stalls
// the main thread, where every store read of every VM is driven. WebCrypto's digest() is no help
// on Node 20: it copies its input on the calling thread, and that copy blocked the event loop longer
// than createHash() did (62 ms vs 48 ms for 64 MiB, measured with a loop-gap probe).
import crypto from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** Below this a message round trip costs more than hashing in place (~0.1 ms). */
const INLINE_MAX_BYTES = 64 * 1024;

// CommonJS: an eval'd worker is not a module. The bytes cross without a copy: an ArrayBuffer is
// transferred both ways, a view of shared memory is shared.
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const crypto = require('node:crypto');
parentPort.on('message', ({ id, bytes }) => {
  const digest = crypto.createHash('sha256').update(bytes).digest();
  parentPort.postMessage({ id, bytes, digest }, bytes.buffer instanceof SharedArrayBuffer ? [] : [bytes.buffer]);
});`;

interface Reply {
  id: number;
  bytes: Uint8Array;
  digest: Uint8Array;
}

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();

function thread(): Worker {
  if (worker) return worker;
  const w = new Worker(SOURCE, { eval: true });
  w.unref(); // ref'd only while a hash is pending: an idle thread never keeps the process alive
  w.on('message', (r: Reply) => {
    const p = pending.get(r.id);
    pending.delete(r.id);
    if (pending.size === 0) w.unref();
    p?.resolve(r);
  });
  const fail = (err: Error): void => {
    if (worker === w) worker = undefined;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  w.on('error', fail);
  w.on('exit', () => fail(new Error('sha256 thread exited')));
  worker = w;
  return w;
}

/**
 * The sha256 of `bytes`, computed off the main thread for large inputs. The buffer under `bytes`
 * is moved to the thread and back (a view over part of a buffer is copied first; a view of shared
 * memory is shared, not moved): the caller must use the returned `bytes`, never the view it passed in.
 */
export function sha256OffThread(bytes: Uint8Array): Promise<{ digest: Buffer; bytes: Uint8Array }> {
  if (bytes.byteLength < INLINE_MAX_BYTES) return Promise.resolve({ digest: crypto.createHash('sha256').update(bytes).digest(), bytes });
  const shared = bytes.buffer instanceof SharedArrayBuffer;
  const own = shared || (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) ? bytes : new Uint8Array(bytes);
  const w = thread();
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, {
      resolve: (r) =>
        resolve({ digest: Buffer.from(r.digest.buffer, r.digest.byteOffset, r.digest.byteLength), bytes: shared ? bytes : r.bytes }),
      reject,
    });
    if (pending.size === 1) w.ref();
    w.postMessage({ id, bytes: own }, shared ? [] : [own.buffer as ArrayBuffer]);
  });
}
