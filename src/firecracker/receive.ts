import { MSG_CTRUNC, POLLERR, POLLHUP, POLLIN } from '../kernel/constants.js';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { FcUffdError } from '../errors.js';

export interface ReceivedHandshake {
  /** The JSON text exactly as sent. */
  readonly payload: string;
  /** The userfaultfd, now ours too (CLOEXEC). */
  readonly uffdFd: number;
}

/** Firecracker's own example reads 1 KiB; many regions can need more. Read generously. */
const RECV_BUFFER_BYTES = 64 * 1024;

/**
 * True when `text` ends inside a string or an open array/object: a prefix of JSON that more
 * bytes could complete, as opposed to text that is already malformed.
 */
export function isIncompleteJson(text: string): boolean {
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (const ch of text) {
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === '[' || ch === '{') depth++;
    else if (ch === ']' || ch === '}') depth--;
  }
  return inString || depth > 0 || text.trim().length === 0;
}

/**
 * Receives Firecracker's handshake on connection `connFd`: one sendmsg carrying the JSON region
 * array and exactly one fd (the uffd) in SCM_RIGHTS. Blocks (this runs on a VM's worker thread)
 * until the JSON is complete, the peer hangs up, `stopFd` is signalled or `timeoutMs` passes.
 * SOCK_STREAM may split a large payload, so bytes are accumulated until they parse; the fd comes
 * with the first bytes. Throws FcUffdError with a HANDSHAKE_* code; never leaks a received fd.
 */
export function receiveHandshake(connFd: number, stopFd: number, timeoutMs: number): ReceivedHandshake {
  const buf = Buffer.alloc(RECV_BUFFER_BYTES);
  const info = new Int32Array(2 + 4);
  const others = Int32Array.of(connFd, stopFd);
  const revents = new Int32Array(2);
  const deadline = performance.now() + timeoutMs;
  const chunks: Buffer[] = [];
  let uffdFd = -1;
  const failWith = (code: ConstructorParameters<typeof FcUffdError>[0], message: string): never => {
    if (uffdFd >= 0) native.close(uffdFd);
    throw new FcUffdError(code, message);
  };

  for (;;) {
    const leftMs = deadline - performance.now();
    if (leftMs <= 0) {
      if (chunks.length > 0)
        failWith('HANDSHAKE_TRUNCATED', `handshake JSON still incomplete after ${timeoutMs} ms: ${JSON.stringify(Buffer.concat(chunks).toString('utf8').slice(0, 120))}`);
      failWith('HANDSHAKE_TIMEOUT', `the VMM connected but sent no handshake within ${timeoutMs} ms`);
    }
    const waited = native.waitAndRead(-1, others, revents, buf, Math.ceil(leftMs * 1000));
    if (waited < 0 && waited !== -ERRNO.EINTR) failWith('HANDSHAKE_RECV', `waiting for the handshake failed: ${errnoName(-waited)}`);
    if (revents[1]! & POLLIN) failWith('HANDSHAKE_TIMEOUT', 'handler stopping before the handshake arrived');
    if (!(revents[0]! & (POLLIN | POLLHUP | POLLERR))) continue;

    const n = native.recvWithFds(connFd, buf, info);
    if (n === -ERRNO.EAGAIN || n === -ERRNO.EINTR) continue;
    if (n < 0) failWith('HANDSHAKE_RECV', `recvmsg on the VMM's connection failed: ${errnoName(-n)}`);
    const fdCount = info[1]!;
    const received = Array.from(info.subarray(2, 2 + Math.min(fdCount, info.length - 2)));
    if (fdCount > 0) {
      if (uffdFd >= 0 || fdCount > 1 || (info[0]! & MSG_CTRUNC) !== 0) {
        for (const fd of received) native.close(fd);
        failWith('HANDSHAKE_TOO_MANY_FDS', `expected exactly one fd (the userfaultfd) with the handshake, got ${uffdFd >= 0 ? fdCount + 1 : fdCount}${info[0]! & MSG_CTRUNC ? ' (control data truncated)' : ''}`);
      }
      uffdFd = received[0]!;
    }
    if (n === 0 && fdCount === 0) {
      if (chunks.length === 0) failWith('HANDSHAKE_EOF', 'the VMM closed the connection without sending a handshake');
      failWith('HANDSHAKE_TRUNCATED', `the VMM closed the connection mid-handshake: ${JSON.stringify(Buffer.concat(chunks).toString('utf8').slice(0, 120))}`);
    }
    if (n > 0) chunks.push(Buffer.from(buf.subarray(0, n)));
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.length === 0 || isIncompleteJson(text)) continue;
    if (uffdFd < 0) failWith('HANDSHAKE_NO_FD', 'the handshake carried no file descriptor: expected the userfaultfd in SCM_RIGHTS');
    return { payload: text, uffdFd };
  }
}
