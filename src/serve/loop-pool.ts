import os from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { native } from '../kernel/native.js';
import { stopOnProcessExit } from './process-exit.js';
import type { LoopThreadControl, LoopThreadData, LoopThreadMessage, LoopThreadReady, VmInit } from './protocol.js';

const THREAD_URL = new URL('./loop-thread.js', import.meta.url);

interface LoopThread {
  worker: Worker;
  controlFd: number;
  control: MessagePort;
  vms: Set<string>;
  exited: Promise<void>;
  /** Resolves when the thread reported ready (booted, its modules loaded) or exited. */
  ready: Promise<void>;
}

/**
 * The fault-loop threads of a handler process (main-thread side). All of them start with the
 * process, so a VMM's vCPUs never wait for a thread to boot and the process's memory is fixed up
 * front (a V8 isolate per thread); a new VM goes to the thread serving the fewest VMs.
 */
export class LoopThreadPool {
  private readonly threads: LoopThread[] = [];
  private readonly threadOf = new Map<string, LoopThread>();
  private niceReported: number | undefined;

  constructor(
    private readonly maxThreads: number,
    private readonly onMessage: (m: LoopThreadMessage) => void,
    /** A thread died without reporting these VMs' end (a crash): they are not served any more. */
    private readonly onThreadDied: (vmIds: string[], error: Error | undefined) => void,
  ) {
    for (let i = 0; i < maxThreads; i++) this.spawn();
  }

  /** Threads running now (a crashed one is replaced when the next VM starts). */
  get threadsAlive(): number {
    return this.threads.length;
  }

  get threadsConfigured(): number {
    return this.maxThreads;
  }

  /** The nice value the threads run at, once one has booted (the same for all: one process, one privilege). */
  get threadNice(): number | undefined {
    return this.niceReported;
  }

  /**
   * Resolves when every thread has booted (loaded its modules, entered its loop: a few hundred ms
   * after the pool started on a busy machine), or exited: a server listens only then, so a VMM that
   * connects once it listens never waits for a thread to boot.
   */
  whenReady(): Promise<void> {
    return Promise.all(this.threads.map((t) => t.ready)).then(() => undefined);
  }

  static defaultThreads(): number {
    return Math.max(1, Math.min(4, os.availableParallelism()));
  }

  /** Hands a VM to a thread; `transfer` lists the MessagePorts inside `init`. */
  start(init: VmInit, transfer: MessagePort[]): void {
    // A thread that died (its VMs were reported) is replaced on demand.
    let thread = this.threads.reduce<LoopThread | undefined>(
      (best, t) => (best === undefined || t.vms.size < best.vms.size ? t : best),
      undefined,
    );
    if (thread === undefined || this.threads.length < this.maxThreads) thread = this.spawn();
    thread.vms.add(init.vmId);
    this.threadOf.set(init.vmId, thread);
    this.send(thread, { type: 'start', init }, transfer);
  }

  stop(vmId: string): void {
    const thread = this.threadOf.get(vmId);
    if (thread) this.send(thread, { type: 'stop', vmId });
  }

  /** Bookkeeping once a VM's end was reported. */
  ended(vmId: string): void {
    this.threadOf.get(vmId)?.vms.delete(vmId);
    this.threadOf.delete(vmId);
  }

  /** Stops every thread (their VMs end as 'stopped') and waits until they are gone. */
  async shutdown(): Promise<void> {
    for (const t of this.threads) {
      // Unreferenced threads would let the process exit before they report their VMs' end.
      t.worker.ref();
      this.send(t, { type: 'shutdown' });
    }
    await Promise.all(this.threads.map((t) => t.exited));
  }

  private send(thread: LoopThread, m: LoopThreadControl, transfer: MessagePort[] = []): void {
    thread.control.postMessage(m, transfer);
    native.eventfdSignal(thread.controlFd);
  }

  private spawn(): LoopThread {
    const controlFd = native.eventfdCreate();
    const { port1, port2 } = new MessageChannel();
    const data: LoopThreadData = { controlFd, control: port2 };
    const worker = new Worker(THREAD_URL, { workerData: data, transferList: [port2] });
    // An idle handler must not be kept alive by its threads; the listening socket's thread does that.
    worker.unref();
    let error: Error | undefined;
    worker.on('error', (err) => (error = err));
    let onReady = (): void => {};
    const ready = new Promise<void>((resolve) => (onReady = resolve));
    worker.on('message', (m: LoopThreadMessage | LoopThreadReady) => {
      if (m.type === 'ready') {
        this.niceReported = m.nice;
        onReady();
      } else this.onMessage(m);
    });
    const thread: LoopThread = {
      worker,
      controlFd,
      control: port1,
      vms: new Set(),
      ready,
      exited: new Promise((resolve) =>
        worker.once('exit', () => {
          forgetOnExit();
          onReady();
          this.threads.splice(this.threads.indexOf(thread), 1);
          port1.close();
          native.close(controlFd);
          const orphans = [...thread.vms];
          for (const id of orphans) this.threadOf.delete(id);
          if (orphans.length > 0) this.onThreadDied(orphans, error);
          resolve();
        }),
      ),
    };
    const forgetOnExit = stopOnProcessExit(() => this.send(thread, { type: 'shutdown' }));
    this.threads.push(thread);
    return thread;
  }
}
