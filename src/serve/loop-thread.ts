// Entry point of a fault-loop thread: serves any number of VMs, never on the main event loop
// (measured: stalls there reach guests as milliseconds of latency). The loop is synchronous: it
// blocks in epoll on every fd of every VM it serves plus a control eventfd, so this thread's own
// event loop never turns; control messages are drained synchronously (receiveMessageOnPort) and
// everything it reports goes by postMessage, which needs no turn of this loop.
//
// One thread per VM would be simpler, but each worker thread is a V8 isolate: megabytes of RSS per
// VM, against a target of < 1 MiB per VM. A few threads multiplexing many VMs cost a fraction of a
// MiB per VM instead (multi-vm scenario, bench/results/fault-path.memory.md), and a fault waits
// behind another VM's only for one install.
import os from 'node:os';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { EPOLLERR, EPOLLHUP, EPOLLIN } from '../kernel/constants.js';
import { errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { syscallNow } from '../kernel/policy.js';
import type { LoopThreadControl, LoopThreadData, LoopThreadMessage, LoopThreadReady } from './protocol.js';
import { VmService, type FdRole, type FdWatcher } from './vm-service.js';

const { controlFd, control } = workerData as LoopThreadData;

/**
 * Nice steps this thread runs above the rest of the process. A fault's vCPU waits for this thread;
 * it does not wait for the process's other threads (V8's compiler and GC helpers, the zero-page
 * scan, the main loop's logs and fetches). At equal nice, a fault that woke this thread on a CPU
 * where V8 was compiling waited behind it, which showed in the p99 fault latency of a fresh
 * process's first restore (bench suite `adaptive`, random-5pct-512m). Linux keeps nice per
 * thread, and os.setPriority() with no pid sets the calling thread's. Going below the inherited
 * nice needs CAP_SYS_NICE (root has it); without it the thread keeps the process's nice, and the
 * server's "listening" log line shows which (loopThreadNice).
 */
const PRIORITY_BOOST = 10;

function boostPriority(): number {
  const inherited = os.getPriority();
  try {
    os.setPriority(Math.max(-20, inherited - PRIORITY_BOOST));
  } catch {
    // EACCES: unprivileged. Serving at the inherited priority is correct, only less prompt.
  }
  return os.getPriority();
}

/** Tag 0 is the control eventfd; a VM's fd is tagged slot * 4 + role, slots from 1. */
const CONTROL_TAG = 0;
const READY_MAX = 256;

const epfd = native.epollCreate();
if (epfd < 0) throw new Error(`epoll_create1 failed: ${errnoName(-epfd)}`);
native.epollAdd(epfd, controlFd, CONTROL_TAG);

const post = (m: LoopThreadMessage): void => parentPort!.postMessage(m);
const bySlot = new Map<number, VmService>();
const slotOf = new Map<string, number>();
const eventBuffer = VmService.eventBuffer();
const ready = new Int32Array(2 * READY_MAX);
let nextSlot = 1;

function watcherFor(slot: number): FdWatcher {
  return {
    watch(fd: number, role: FdRole) {
      const rc = native.epollAdd(epfd, fd, slot * 4 + role);
      if (rc < 0) throw new Error(`epoll_ctl(ADD, fd ${fd}) failed: ${errnoName(-rc)}`);
    },
    unwatch(fd: number) {
      native.epollDel(epfd, fd);
    },
  };
}

/** Applies control messages; false once told to shut down. */
function drainControl(now: number): boolean {
  native.eventfdDrain(controlFd);
  for (;;) {
    const r = receiveMessageOnPort(control);
    if (r === undefined) return true;
    const m = r.message as LoopThreadControl;
    if (m.type === 'start') {
      const slot = nextSlot++;
      try {
        const vm = new VmService(m.init, watcherFor(slot), post, eventBuffer, now);
        bySlot.set(slot, vm);
        slotOf.set(vm.id, slot);
      } catch (err) {
        post({
          type: 'end',
          vmId: m.init.vmId,
          reason: 'fatal',
          killed: false,
          removedRanges: [],
          error: { code: 'INTERNAL', message: (err as Error).stack ?? String(err) },
        });
      }
    } else if (m.type === 'stop') {
      const slot = slotOf.get(m.vmId);
      if (slot !== undefined) bySlot.get(slot)!.end('stopped');
    } else {
      for (const vm of bySlot.values()) vm.end('stopped');
      return false;
    }
  }
}

function forget(): void {
  for (const [slot, vm] of bySlot) {
    if (!vm.isEnded) continue;
    bySlot.delete(slot);
    slotOf.delete(vm.id);
  }
}

// Booted: the server listens once every thread said so (LoopThreadPool.whenReady).
parentPort!.postMessage({ type: 'ready', nice: boostPriority() } satisfies LoopThreadReady);

for (let running = true; running;) {
  let timeoutUs = -1;
  const before = performance.now();
  for (const vm of bySlot.values()) {
    const budget = vm.waitBudgetUs(before);
    if (budget >= 0 && (timeoutUs < 0 || budget < timeoutUs)) timeoutUs = budget;
  }
  const n = syscallNow(() => native.epollWait(epfd, ready, timeoutUs)) ?? 0;
  if (n < 0) throw new Error(`epoll_wait failed: ${errnoName(-n)}`);
  const now = performance.now();
  for (let i = 0; i < n; i++) {
    const tag = ready[2 * i]!;
    if (tag === CONTROL_TAG) {
      running = drainControl(now);
      continue;
    }
    if (!(ready[2 * i + 1]! & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
    bySlot.get(tag >>> 2)?.onReady((tag & 3) as FdRole, now);
  }
  // Every fault of this wake-up is served before any VM's deadlines, retries or prefetch steps.
  const after = performance.now();
  for (const vm of bySlot.values()) vm.tick(after);
  forget();
}
native.close(epfd);
parentPort!.close();
