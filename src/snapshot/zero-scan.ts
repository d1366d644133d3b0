// The zero-page scan of a memory file, on a thread of its own at a low priority. It reads the
// whole file once, while the first restore runs (a handler per VM starts with its VM): on libuv's
// pool at normal priority its reads took a CPU from the fault path on a 2-CPU host, which perf
// showed and the p99 fault latency of a fresh process's first restore carried (bench suite
// `adaptive`). Its own thread can be reniced without touching the pool's other work.
import { Worker } from 'node:worker_threads';

const THREAD_URL = new URL('./zero-scan-thread.js', import.meta.url);

/** What the scan thread is started with. */
export interface ZeroScanData {
  /** The memory file's fd (workers share the process's fd table). */
  fd: number;
  sizeBytes: number;
  /** The file's PageClassMap buffer: the thread turns PAGE_UNKNOWN bytes into PAGE_ZERO or PAGE_DATA. */
  classMap: SharedArrayBuffer;
  /** Int32 [0]: set to 1 by the owner before it closes the fd; the thread then writes nothing more. */
  stop: SharedArrayBuffer;
}

export type ZeroScanMessage = { type: 'done' } | { type: 'failed'; message: string };

/** A running scan: `done` settles when the thread has finished, failed, or stopped, and has exited. */
export interface ZeroScan {
  readonly done: Promise<void>;
  /** Tells the thread to write nothing more. Call it before closing the fd the thread reads. */
  stop(): void;
}

export function startZeroScan(fd: number, sizeBytes: number, classMap: SharedArrayBuffer): ZeroScan {
  const stop = new SharedArrayBuffer(4);
  const stopFlag = new Int32Array(stop);
  const data: ZeroScanData = { fd, sizeBytes, classMap, stop };
  const worker = new Worker(THREAD_URL, { workerData: data });
  // A scan is an optimisation (a page not classified yet is copied): it never keeps a process alive.
  worker.unref();
  // Settled at the thread's exit, not at its 'done' message: a thread at nice +10 on busy CPUs may
  // take a while to exit, and "ready" then means its resources (a Node event loop's fds) are gone too.
  // Once it has said 'done' its exit is near, so it is ref'd again to let 'exit' arrive.
  const done = new Promise<void>((resolve, reject) => {
    let finished = false;
    worker.on('message', (m: ZeroScanMessage) => {
      if (m.type === 'done') {
        finished = true;
        worker.ref();
      } else reject(new Error(`zero-page scan of the memory file failed: ${m.message}`));
    });
    worker.on('error', reject);
    // A stopped scan ends quietly; any other exit before 'done' is a failure.
    worker.on('exit', (code) => {
      if (finished || Atomics.load(stopFlag, 0) === 1) resolve();
      else reject(new Error(`zero-page scan thread exited with code ${code}`));
    });
  });
  return { done, stop: () => Atomics.store(stopFlag, 0, 1) };
}
