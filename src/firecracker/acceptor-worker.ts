// Accepts VMM connections on the handler's listening socket, off the main event loop: Node's
// `net` cannot receive file descriptors, so the socket is the addon's and this thread blocks on
// it. Each accepted connection goes to the main thread with the peer's SO_PEERCRED identity.
import { parentPort, workerData } from 'node:worker_threads';
import { POLLIN } from '../kernel/constants.js';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { syscallNow } from '../kernel/policy.js';

export interface AcceptorInit {
  listenFd: number;
  stopFd: number;
}

export type AcceptorMessage =
  | { type: 'connection'; fd: number; pid: number; uid: number; gid: number }
  | { type: 'error'; message: string };

const { listenFd, stopFd } = workerData as AcceptorInit;
const fds = Int32Array.of(listenFd, stopFd);
const revents = new Int32Array(2);
const cred = new Int32Array(3);
const post = (m: AcceptorMessage): void => parentPort!.postMessage(m);

for (;;) {
  const rc = syscallNow(() => native.poll(fds, revents, -1)) ?? 0;
  if (rc < 0) {
    post({ type: 'error', message: `waiting on the listening socket failed: ${errnoName(-rc)}` });
    break;
  }
  if (revents[1]! & POLLIN) break;
  for (;;) {
    const fd = syscallNow(() => native.accept(listenFd));
    // Nothing pending, or the peer gave up before we accepted: back to poll.
    if (fd === undefined || fd === -ERRNO.ECONNABORTED) break;
    if (fd < 0) {
      // EMFILE and friends: say so, back off briefly, keep the handler alive for the VMs it serves.
      post({ type: 'error', message: `accept failed: ${errnoName(-fd)}` });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      break;
    }
    const ok = native.peerCred(fd, cred) === 0;
    post({ type: 'connection', fd, pid: ok ? cred[0]! : 0, uid: ok ? cred[1]! : -1, gid: ok ? cred[2]! : -1 });
  }
}
parentPort!.close();
