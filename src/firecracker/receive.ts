import fs from 'node:fs';
import { MSG_CTRUNC } from '../kernel/constants.js';
import { errnoName } from '../kernel/errors.js';
import { native } from '../kernel/native.js';
import { syscallNow } from '../kernel/policy.js';
import { FcUffdError } from '../errors.js';

export interface ReceivedHandshake {
  /** The JSON text exactly as sent. */
  readonly payload: string;
  /** The userfaultfd, now ours too (CLOEXEC). */
  readonly uffdFd: number;
}

/** What /proc/self/fd/N links to for a userfaultfd, from userfaultfd(2) or /dev/userfaultfd alike. */
const UFFD_LINK = 'anon_inode:[userfaultfd]';

/** What kind of file `fd` is (`anon_inode:[userfaultfd]`, `pipe:[123]`, a path), or why that is unknown. */
function fdKind(fd: number): string {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch (err) {
    return `unknown (${(err as NodeJS.ErrnoException).code})`;
  }
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
 * array and exactly one fd (the uffd) in SCM_RIGHTS. Non-blocking: the owner calls `onReadable()`
 * whenever the connection polls readable (or hung up) until it returns the handshake, and
 * `expire()` when its deadline passes. SOCK_STREAM may split a large payload, so bytes are
 * accumulated until they form complete JSON; the fd comes with the first bytes. Errors are
 * FcUffdError with a HANDSHAKE_* code; a received fd is never leaked.
 */
export class HandshakeReceiver {
  private readonly buf = Buffer.alloc(RECV_BUFFER_BYTES);
  private readonly info = new Int32Array(2 + 4);
  private readonly chunks: Buffer[] = [];
  private uffdFd = -1;
  private gotUffd = false;

  constructor(private readonly connFd: number) {}

  /** The handshake once complete; undefined while more bytes are needed. */
  onReadable(): ReceivedHandshake | undefined {
    for (;;) {
      const n = syscallNow(() => native.recvWithFds(this.connFd, this.buf, this.info));
      if (n === undefined) return undefined;
      if (n < 0) this.fail('HANDSHAKE_RECV', `recvmsg on the VMM's connection failed: ${errnoName(-n)}`);
      const flags = this.info[0]!;
      const fdCount = this.info[1]!;
      const received = Array.from(this.info.subarray(2, 2 + Math.min(fdCount, this.info.length - 2)));
      if (fdCount > 0) {
        // Checked on our copies of the fds: a userfaultfd is the only proof that the peer is a VMM
        // whose guest depends on us (and so may be killed when it cannot be served).
        const kinds = received.map(fdKind);
        if (kinds.includes(UFFD_LINK)) this.gotUffd = true;
        if (this.uffdFd >= 0 || fdCount > 1 || (flags & MSG_CTRUNC) !== 0) {
          for (const fd of received) native.close(fd);
          const total = this.uffdFd >= 0 ? fdCount + 1 : fdCount;
          this.fail(
            'HANDSHAKE_TOO_MANY_FDS',
            `expected exactly one fd (the userfaultfd) with the handshake, got ${total}${flags & MSG_CTRUNC ? ' (control data truncated)' : ''}`,
          );
        }
        this.uffdFd = received[0]!;
        if (kinds[0] !== UFFD_LINK)
          this.fail(
            'HANDSHAKE_NOT_UFFD',
            `the fd sent with the handshake is not a userfaultfd (it is ${kinds[0]}): the peer is not a VMM restoring a snapshot`,
          );
      }
      if (n === 0 && fdCount === 0) {
        if (this.chunks.length === 0) this.fail('HANDSHAKE_EOF', 'the VMM closed the connection without sending a handshake');
        this.fail('HANDSHAKE_TRUNCATED', `the VMM closed the connection mid-handshake: ${this.excerpt()}`);
      }
      if (n > 0) this.chunks.push(Buffer.from(this.buf.subarray(0, n)));
      const text = Buffer.concat(this.chunks).toString('utf8');
      if (text.length === 0 || isIncompleteJson(text)) continue;
      if (this.uffdFd < 0) this.fail('HANDSHAKE_NO_FD', 'the handshake carried no file descriptor: expected the userfaultfd in SCM_RIGHTS');
      const uffdFd = this.uffdFd;
      this.uffdFd = -1;
      return { payload: text, uffdFd };
    }
  }

  /**
   * The peer handed over a real userfaultfd: it is a VMM whose guest depends on us, and may be
   * killed when it cannot be served. A peer that did not (a health check, a probe) never is.
   */
  get receivedUffd(): boolean {
    return this.gotUffd;
  }

  /** The deadline passed before the handshake was complete. */
  expire(timeoutMs: number): never {
    if (this.chunks.length > 0)
      this.fail('HANDSHAKE_TRUNCATED', `handshake JSON still incomplete after ${timeoutMs} ms: ${this.excerpt()}`);
    this.fail('HANDSHAKE_TIMEOUT', `the VMM connected but sent no handshake within ${timeoutMs} ms`);
  }

  /** Closes a uffd received with an incomplete handshake. */
  abandon(): void {
    if (this.uffdFd >= 0) native.close(this.uffdFd);
    this.uffdFd = -1;
  }

  private excerpt(): string {
    return JSON.stringify(Buffer.concat(this.chunks).toString('utf8').slice(0, 120));
  }

  private fail(code: ConstructorParameters<typeof FcUffdError>[0], message: string): never {
    this.abandon();
    throw new FcUffdError(code, message);
  }
}
