// Accepts VMM connections on the handler's listening sockets, off the main event loop: Node's
// `net` cannot receive file descriptors, so the sockets are the addon's and this thread blocks on
// them. One thread serves every socket of a server (a daemon's restores too): sockets are added and
// removed through `control`, each followed by a signal on `controlFd`. Each accepted connection goes
// to the main thread with its socket's id and the peer's SO_PEERCRED identity.
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { syscallNow } from '../kernel/policy.js';

export interface AcceptorInit {
  /** eventfd signalled after each message posted on `control`. */
  controlFd: number;
  control: MessagePort;
}

/** Main thread → acceptor. After 'remove' is answered with 'removed', the acceptor no longer touches that fd. */
export type AcceptorControl = { type: 'add'; socketId: number; listenFd: number } | { type: 'remove'; socketId: number } | { type: 'stop' };

/** Acceptor → main thread. */
export type AcceptorMessage =
  | { type: 'connection'; socketId: number; fd: number; pid: number; uid: number; gid: number }
  | { type: 'removed'; socketId: number }
  | { type: 'error'; socketId: number; message: string };

const { controlFd, control } = workerData as AcceptorInit;
/** Tag 0 is the control eventfd; a listening socket is tagged with its id (from 1). */
const CONTROL_TAG = 0;
const sockets = new Map<number, number>();
const cred = new Int32Array(3);
const epfd = native.epollCreate();
if (epfd < 0) throw new Error(`epoll_create1 failed: ${errnoName(-epfd)}`);
native.epollAdd(epfd, controlFd, CONTROL_TAG);
const post = (m: AcceptorMessage): void => control.postMessage(m);

/** Drains the control port; false once told to stop. */
function drainControl(): boolean {
  native.eventfdDrain(controlFd);
  for (let m = receiveMessageOnPort(control); m !== undefined; m = receiveMessageOnPort(control)) {
    const c = m.message as AcceptorControl;
    if (c.type === 'stop') return false;
    if (c.type === 'add') {
      sockets.set(c.socketId, c.listenFd);
      const rc = native.epollAdd(epfd, c.listenFd, c.socketId);
      if (rc < 0) post({ type: 'error', socketId: c.socketId, message: `cannot watch the listening socket: ${errnoName(-rc)}` });
    } else {
      const fd = sockets.get(c.socketId);
      if (fd !== undefined) native.epollDel(epfd, fd);
      sockets.delete(c.socketId);
      post({ type: 'removed', socketId: c.socketId });
    }
  }
  return true;
}

function acceptAll(socketId: number, listenFd: number): void {
  for (;;) {
    const fd = syscallNow(() => native.accept(listenFd));
    // Nothing pending, or the peer gave up before we accepted: back to poll.
    if (fd === undefined || fd === -ERRNO.ECONNABORTED) return;
    if (fd < 0) {
      // EMFILE and friends: say so, back off briefly, keep the handler alive for the VMs it serves.
      post({ type: 'error', socketId, message: `accept failed: ${errnoName(-fd)}` });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      return;
    }
    const ok = native.peerCred(fd, cred) === 0;
    post({ type: 'connection', socketId, fd, pid: ok ? cred[0]! : 0, uid: ok ? cred[1]! : -1, gid: ok ? cred[2]! : -1 });
  }
}

const ready = new Int32Array(2 * 64);
for (let running = true; running;) {
  const n = syscallNow(() => native.epollWait(epfd, ready, -1)) ?? 0;
  if (n < 0) {
    post({ type: 'error', socketId: -1, message: `waiting on the listening sockets failed: ${errnoName(-n)}` });
    break;
  }
  let controlReady = false;
  for (let i = 0; i < n; i++) {
    const tag = ready[2 * i]!;
    if (tag === CONTROL_TAG) controlReady = true;
    else {
      const fd = sockets.get(tag);
      if (fd !== undefined) acceptAll(tag, fd);
    }
  }
  if (controlReady) running = drainControl();
}
native.close(epfd);
control.close();
