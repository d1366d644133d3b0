// Entry point of one VM's worker thread. The fault loop runs here, never on the main event loop
// (measured: stalls there reach guests as milliseconds of latency). The loop is synchronous: it
// blocks in the addon's waitAndRead on the uffd, an interrupt eventfd, the VMM's socket and its
// pidfd, so this thread's own event loop does not turn while a VM is served. Everything it tells
// the main thread goes by postMessage (which needs no turn of this loop) and the shared stats.
import { parentPort } from 'node:worker_threads';
import { POLLERR, POLLHUP, POLLIN, SIGKILL, UFFD_MSG_SIZE } from '../kernel/constants.js';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { Uffd } from '../kernel/uffd.js';
import { FcUffdError } from '../errors.js';
import { parseHandshake } from '../firecracker/handshake.js';
import { receiveHandshake } from '../firecracker/receive.js';
import { openPageSource } from './snapshot-source.js';
import type { PageSource } from '../memory/source.js';
import { FaultLoop, VmGoneError } from './fault-loop.js';
import { VmStats } from './stats.js';
import type { VmEndReason, VmWorkerInit, VmWorkerMessage } from './protocol.js';

/** uffd_msg records read per wake-up: 256 covers a burst of faults from every vCPU at once. */
const EVENT_BUFFER_RECORDS = 256;

function post(message: VmWorkerMessage): void {
  parentPort!.postMessage(message);
}

function errorInfo(err: unknown): { code: string; message: string; details?: Record<string, unknown> } {
  if (err instanceof FcUffdError) return { code: err.code, message: err.message, details: { ...err.details } };
  const e = err as Error;
  return { code: 'INTERNAL', message: e.stack ?? String(e) };
}

function serveVm(init: VmWorkerInit): void {
  const stats = new VmStats(init.statsBuffer);
  let pidfd = -1;
  let connFd = init.connFd;
  let uffd: Uffd | undefined;
  let source: PageSource | undefined;
  let loop: FaultLoop | undefined;
  let reason: VmEndReason = 'vmm-exited';
  let error: ReturnType<typeof errorInfo> | undefined;
  let killed = false;

  const stopVmm = (): void => {
    if (init.onFatal !== 'kill') return;
    if (pidfd < 0) {
      post({ type: 'log', level: 'error', msg: 'cannot stop the VMM: its pid is unknown (SO_PEERCRED gave none)' });
      return;
    }
    const rc = native.pidfdSendSignal(pidfd, SIGKILL);
    killed = rc === 0;
    if (rc < 0 && rc !== -ERRNO.ESRCH)
      post({ type: 'log', level: 'error', msg: `SIGKILL to the VMM (pid ${init.peer.pid}) failed: ${errnoName(-rc)}` });
  };

  try {
    if (init.peer.pid > 0) {
      pidfd = native.pidfdOpen(init.peer.pid);
      if (pidfd < 0) post({ type: 'log', level: 'warn', msg: `pidfd_open(${init.peer.pid}) failed: ${errnoName(-pidfd)}; VMM exit is detected by hang-up only` });
    }
    const received = receiveHandshake(connFd, init.stopFd, init.handshakeTimeoutMs);
    uffd = new Uffd(received.uffdFd);
    const handshake = parseHandshake(received.payload, init.snapshot.sizeBytes);
    post({
      type: 'handshake',
      generation: handshake.generation,
      pageSizeBytes: handshake.memory.pageSizeBytes,
      regions: handshake.memory.regions.map((r) => ({ ...r })),
      warnings: [...handshake.warnings],
    });

    source = openPageSource(init.snapshot, { port: init.port, wakeFd: init.sourceWakeFd });
    let prefetchPages: Uint32Array | undefined;
    if (init.prefetch) {
      if (init.prefetch.pageSizeBytes === handshake.memory.pageSizeBytes) prefetchPages = init.prefetch.pages;
      else post({ type: 'log', level: 'warn', msg: `not prefetching: the working set has ${init.prefetch.pageSizeBytes}-byte pages, this VM ${handshake.memory.pageSizeBytes}` });
    }
    loop = new FaultLoop({
      memory: handshake.memory,
      source,
      uffd,
      stats,
      faultAroundBytes: init.faultAroundBytes,
      recordWorkingSet: init.recordWorkingSet,
      ...(prefetchPages ? { prefetchPages } : {}),
    });
    // Up to v1.11 Firecracker closes the socket right after sending; since v1.12 it keeps it open
    // until it exits, so only then does a hang-up mean the VMM died. The pidfd tells for all.
    const hangupMeansExit = handshake.generation === 'v1.12+';
    const buf = Buffer.alloc(EVENT_BUFFER_RECORDS * UFFD_MSG_SIZE);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const others = Int32Array.of(init.stopFd, connFd, pidfd, source.wakeFd);
    const revents = new Int32Array(4);

    for (;;) {
      const n = native.waitAndRead(uffd.fd, others, revents, buf, loop.waitBudgetUs());
      const readAtMs = performance.now();
      if (n < 0) {
        if (n === -ERRNO.EINTR) continue;
        throw new FcUffdError('VM_READ', `reading the userfaultfd failed: ${errnoName(-n)}`, { errno: -n });
      }
      if (revents[3]! & POLLIN) {
        native.eventfdDrain(source.wakeFd);
        source.onWake();
        loop.sourceReady();
      }
      if (n > 0) loop.handleBatch(view, n / UFFD_MSG_SIZE, readAtMs);
      else loop.retryDeferred();
      // Faults first: a prefetch step runs only after the events of this wake were served.
      if (loop.prefetchReady) loop.prefetchStep();

      if (revents[0]! & POLLIN) {
        reason = 'stopped';
        break;
      }
      if (revents[2]! & POLLIN) {
        reason = 'vmm-exited';
        break;
      }
      if (revents[1]! & (POLLIN | POLLHUP | POLLERR)) {
        // Nothing is expected after the handshake: this is the VMM closing its end.
        native.close(connFd);
        connFd = -1;
        others[1] = -1;
        if (hangupMeansExit) {
          reason = 'vmm-exited';
          break;
        }
      }
    }
  } catch (err) {
    if (err instanceof VmGoneError) {
      reason = 'vmm-exited';
    } else {
      reason = 'fatal';
      error = errorInfo(err);
      // The guest must not run on with memory we cannot serve, nor hang silently.
      stopVmm();
    }
  } finally {
    source?.close();
    uffd?.close();
    if (connFd >= 0) native.close(connFd);
    if (pidfd >= 0) native.close(pidfd);
  }
  const touches = init.recordWorkingSet && loop ? { ...loop.recordedTouches(), pageSizeBytes: loop.memory.pageSizeBytes } : undefined;
  post({ type: 'end', reason, killed, removedRanges: loop?.removedRanges() ?? [], ...(touches ? { touches } : {}), ...(error ? { error } : {}) });
}

// A worker is started ahead of need (the VMM's vCPUs wait while a thread boots) and serves
// exactly one VM: the first message says which.
parentPort!.once('message', (init: VmWorkerInit) => {
  serveVm(init);
  parentPort!.close();
});
