// The control API: HTTP/1.1 + JSON on a unix socket (as Firecracker's own API), routes only. What
// each route does is the Daemon's; shapes are in api-types.ts and docs/control-api.yaml.
import fs from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { FcUffdError, type ErrorCode } from '../errors.js';
import { native } from '../kernel/native.js';
import { ERRNO } from '../kernel/errors.js';
import type { ErrorBody } from './api-types.js';
import type { Daemon } from './daemon.js';
import { parseRestoreRequest } from './request.js';

export const MAX_BODY_BYTES = 64 * 1024;

export interface ControlServerOptions {
  path: string;
  daemon: Daemon;
  registry: Registry;
  /** Peers allowed besides root-less defaults: when either list is set, a peer must match one of them. */
  allowUids?: number[];
  allowGids?: number[];
  logger: Logger;
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  CONTROL_BAD_REQUEST: 400,
  CONTROL_FORBIDDEN: 403,
  CONTROL_NOT_FOUND: 404,
  CONTROL_METHOD_NOT_ALLOWED: 405,
  CONTROL_CONFLICT: 409,
  CONTROL_BODY_TOO_LARGE: 413,
  CONTROL_STOPPING: 503,
  INTERNAL: 500,
};

/** A failure's HTTP status: control codes by table; what the request named and we could not open or use is 422. */
function statusOf(code: ErrorCode): number {
  return STATUS[code] ?? 422;
}

interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * SO_PEERCRED of an accepted connection. Node's net.Socket does not expose its fd publicly; the
 * pipe handle's `fd` is the stable libuv stream fd on Unix. A socket without one has no known peer.
 */
function peerOf(socket: Socket): Peer | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const out = new Int32Array(3);
  if (native.peerCred(fd, out) !== 0) return undefined;
  return { pid: out[0]!, uid: out[1]!, gid: out[2]! };
}

export class ControlServer {
  private readonly server: http.Server;
  private readonly peers = new WeakMap<Socket, Peer | undefined>();

  private constructor(private readonly o: ControlServerOptions) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s: Socket) => this.peers.set(s, peerOf(s)));
  }

  /** Listens on `path` with mode 0600; a stale socket file is replaced, a live one or another file refused. */
  static async listen(o: ControlServerOptions): Promise<ControlServer> {
    removeStale(o.path);
    const cs = new ControlServer(o);
    // The socket must never exist with a wider mode, not even between bind and chmod.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        cs.server.once('error', (err: NodeJS.ErrnoException) =>
          reject(new FcUffdError('CONFIG', `cannot listen on control socket ${o.path}: ${err.code ?? err.message}`)),
        );
        cs.server.listen(o.path, resolve);
      });
    } finally {
      process.umask(umask);
    }
    fs.chmodSync(o.path, 0o600);
    return cs;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private allowed(peer: Peer | undefined): boolean {
    const { allowUids, allowGids } = this.o;
    if (!allowUids?.length && !allowGids?.length) return true;
    if (!peer) return false;
    return (allowUids ?? []).includes(peer.uid) || (allowGids ?? []).includes(peer.gid);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const peer = this.peers.get(req.socket);
    const started = Date.now();
    try {
      if (!this.allowed(peer)) {
        this.o.logger.warn(
          { peer: peer ?? 'unknown', method: req.method, url: req.url },
          'control API: peer not in --allow-uid/--allow-gid, refused',
        );
        throw new FcUffdError('CONTROL_FORBIDDEN', `uid ${peer?.uid ?? '?'} / gid ${peer?.gid ?? '?'} may not use this control socket`);
      }
      const { status, body, contentType } = await this.route(req);
      res
        .writeHead(status, { 'content-type': contentType ?? 'application/json' })
        .end(typeof body === 'string' ? body : `${JSON.stringify(body)}\n`);
      if (req.method !== 'GET')
        this.o.logger.info({ method: req.method, url: req.url, status, uid: peer?.uid, ms: Date.now() - started }, 'control API');
    } catch (err) {
      const e = err instanceof FcUffdError ? err : new FcUffdError('INTERNAL', (err as Error).stack ?? String(err));
      const status = statusOf(e.code);
      if (status >= 500)
        this.o.logger.error({ method: req.method, url: req.url, code: e.code, err: e.message }, 'control API: internal failure');
      else this.o.logger.info({ method: req.method, url: req.url, status, code: e.code, uid: peer?.uid }, `control API: ${e.message}`);
      const body: ErrorBody = { code: e.code, message: status >= 500 ? `internal error: ${e.message.split('\n')[0]}` : e.message };
      // A refused body is not read to its end: close the connection instead of draining it.
      if (e.code === 'CONTROL_BODY_TOO_LARGE') res.setHeader('connection', 'close');
      res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
    }
  }

  private async route(req: http.IncomingMessage): Promise<{ status: number; body: unknown; contentType?: string }> {
    // Not `new URL()`: it would resolve `/restores/..` to `/`, and such a name must be refused, not rerouted.
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const url = { pathname: q < 0 ? raw : raw.slice(0, q), searchParams: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
    const method = req.method ?? 'GET';
    const d = this.o.daemon;
    const only = (allowed: string[]): void => {
      if (!allowed.includes(method))
        throw new FcUffdError('CONTROL_METHOD_NOT_ALLOWED', `${method} ${url.pathname}: use ${allowed.join(' or ')}`);
    };
    if (url.pathname === '/health') {
      only(['GET']);
      return { status: 200, body: d.health() };
    }
    if (url.pathname === '/metrics') {
      only(['GET']);
      return { status: 200, body: await this.o.registry.metrics(), contentType: this.o.registry.contentType };
    }
    if (url.pathname === '/restores' || url.pathname === '/restores/') {
      only(['GET']);
      return { status: 200, body: { restores: d.list() } };
    }
    if (url.pathname.startsWith('/restores/')) {
      let name: string;
      try {
        name = decodeURIComponent(url.pathname.slice('/restores/'.length));
      } catch {
        throw new FcUffdError('CONTROL_BAD_REQUEST', `bad percent-encoding in ${url.pathname}`);
      }
      only(['GET', 'PUT', 'DELETE']);
      if (method === 'GET') return { status: 200, body: d.get(name) };
      if (method === 'DELETE') {
        const force = url.searchParams.get('force');
        if (force !== null && force !== 'true' && force !== 'false')
          throw new FcUffdError('CONTROL_BAD_REQUEST', `force must be true or false, got ${force}`);
        return { status: 200, body: await d.delete(name, force === 'true') };
      }
      const text = await readBody(req);
      return { status: 201, body: await d.create(name, parseRestoreRequest(text)) };
    }
    throw new FcUffdError('CONTROL_NOT_FOUND', `no route ${url.pathname}; see /restores, /health, /metrics`);
  }
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES)
    throw new FcUffdError('CONTROL_BODY_TOO_LARGE', `the body is ${declared} bytes; at most ${MAX_BODY_BYTES}`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    n += part.length;
    if (n > MAX_BODY_BYTES) throw new FcUffdError('CONTROL_BODY_TOO_LARGE', `the body is over ${MAX_BODY_BYTES} bytes`);
    parts.push(part);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** Removes a control socket left by a daemon that died; refuses one that is live, or a file that is no socket. */
function removeStale(p: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new FcUffdError('CONFIG', `${p} exists and is not a socket; refusing to replace it`);
  const fd = native.connectUnix(p);
  if (fd >= 0) {
    native.close(fd);
    throw new FcUffdError('CONFIG', `another daemon is listening on ${p}`);
  }
  if (fd !== -ERRNO.ECONNREFUSED) throw new FcUffdError('CONFIG', `cannot check ${p}: errno ${-fd}`);
  fs.unlinkSync(p);
}
