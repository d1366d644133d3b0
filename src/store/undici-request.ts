import { Worker } from 'node:worker_threads';
import { Pool, type Dispatcher } from 'undici';
import { rangedAnswerLength, SharedBody, sliceOfWhole, type BodyRead, type ByteRange } from './object-store.js';
import { StoreError, type StoreErrorKind } from './types.js';

/**
 * What the HTTP and S3 stores share on the wire: one undici keep-alive pool per origin (and its
 * twin on the store body thread for background GETs), a request with the stores' timeouts and
 * abort, a GET answer's body read into shared memory (checked against the range asked for), and
 * undici's failures said as StoreErrors.
 */
export interface PoolOptions {
  /** Time to the response headers (default 10 s). */
  headersTimeoutMs?: number;
  /** Longest silence while a body arrives, not the whole body's time (default 30 s). */
  bodyTimeoutMs?: number;
  /** TCP (and TLS) connect time (default 5 s). */
  connectTimeoutMs?: number;
  /** Keep-alive connections to the server at most (default 16). */
  connections?: number;
}

export interface RequestSpec {
  method: 'GET' | 'HEAD' | 'PUT';
  /** Path and query, already escaped. */
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array;
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);
const NETWORK_CODES = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

export class StorePool {
  private readonly pool: Pool;
  /** This pool's twin on the body thread (its background GETs), by this number. */
  private readonly id = nextPoolId++;

  constructor(
    private readonly origin: string,
    private readonly options: PoolOptions,
  ) {
    this.pool = newPool(origin, options);
    bodyThread.open(this.id);
  }

  /** Sends one request (a HEAD or a PUT); a failure before the headers is a StoreError led by `where`. */
  async request(spec: RequestSpec, where: string, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    signal?.throwIfAborted();
    try {
      return await this.pool.request({
        method: spec.method,
        path: spec.path,
        headers: spec.headers,
        ...(spec.body ? { body: spec.body } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      throw networkError(where, err, signal);
    }
  }

  /**
   * A GET of `path`, with `range` (the caller's Range header asks for it) or whole: a 200 or 206
   * answer's bytes in shared memory, checked (see GetHandler), or another status with up to
   * `errorTextBytes` of its body as text. A failure on the way is a StoreError led by `where`.
   *
   * A read a fault waits for is sent and taken in here, on the main thread (no thread hop on a
   * fault's path); a background read (`read.background`) on the store body thread (BodyThread),
   * so that bulk bodies never queue ahead of a fault's bytes, or of anything else, in the main
   * event loop. Both through undici's dispatch rather than its request(): the body's pieces go
   * straight from the parser into shared memory, without the stream and async iterator request()
   * puts in between (the remote bench's receive table, bench/results/remote.receive.md, measures
   * the paths).
   */
  get(
    path: string,
    headers: Record<string, string>,
    range: ByteRange | undefined,
    where: string,
    read: BodyRead,
    errorTextBytes = 0,
  ): Promise<GetAnswer> {
    read.signal?.throwIfAborted();
    const spec: GetSpec = { path, headers, range, where, errorTextBytes };
    if (read.background && bodyThread.running())
      return bodyThread.get({ id: this.id, origin: this.origin, options: this.options }, spec, read.signal);
    return dispatchGet(this.pool, spec, read.signal);
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.close(), bodyThread.close(this.id)]);
  }
}

let nextPoolId = 1;

/** An undici pool with the stores' options (its timeouts apply to every request through it). */
export function newPool(origin: string, options: PoolOptions): Pool {
  return new Pool(origin, {
    connections: options.connections ?? 16,
    connect: { timeout: options.connectTimeoutMs ?? 5_000 },
    headersTimeout: options.headersTimeoutMs ?? 10_000,
    bodyTimeout: options.bodyTimeoutMs ?? 30_000,
  });
}

/** One GET as StorePool.get takes it, on either thread. */
export interface GetSpec {
  path: string;
  headers: Record<string, string>;
  range: ByteRange | undefined;
  where: string;
  errorTextBytes: number;
}

/** A GET through `pool` (StorePool.get's, on either thread). */
export function dispatchGet(pool: Pool, spec: GetSpec, signal: AbortSignal | undefined): Promise<GetAnswer> {
  return new Promise<GetAnswer>((resolve, reject) => {
    pool.dispatch(
      { method: 'GET', path: spec.path, headers: spec.headers },
      new GetHandler(spec.range, spec.where, signal, spec.errorTextBytes, resolve, reject),
    );
  });
}

/** A GET's answer: a 200 or 206's bytes, or another status with the start of its body as text. */
export type GetAnswer = { statusCode: 200 | 206; bytes: Uint8Array } | { statusCode: number; bytes: undefined; text: string };

/**
 * One GET's answer, as undici's parser hands it over. A 206 to a ranged GET must carry exactly
 * the range (Content-Range and Content-Length checked); a 200 (a server or cache that ignores
 * Range) is read whole and the range sliced from it. A body that runs past or ends short of its
 * announced length is an integrity error.
 */
class GetHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private status = 0;
  /** Where a 200 or 206 body goes: shared memory of the announced length, or pieces (no length). */
  private body: SharedBody | Buffer[] | undefined;
  private text: Buffer[] = [];
  private textBytes = 0;
  private settled = false;
  private readonly onAbort = (): void => this.controller?.abort(new Error('aborted'));

  constructor(
    private readonly range: ByteRange | undefined,
    private readonly where: string,
    private readonly signal: AbortSignal | undefined,
    private readonly errorTextBytes: number,
    private readonly resolve: (answer: GetAnswer) => void,
    private readonly reject: (err: StoreError) => void,
  ) {
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Called again when undici retries the request on another connection (the first one failed before an answer). */
  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.signal?.aborted) controller.abort(new Error('aborted'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Dispatcher.ResponseData['headers']): void {
    this.status = statusCode;
    if (statusCode === 206 && this.range) {
      const want = rangedAnswerLength(header(headers, 'content-range'), contentLength(headers), this.range);
      if (typeof want === 'string') controller.abort(new StoreError('integrity', `${this.where}: ${want}`, true));
      else this.body = new SharedBody(want, this.where);
    } else if (statusCode === 200) {
      const length = contentLength(headers);
      this.body = length === undefined ? [] : new SharedBody(length, this.where);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const body = this.body;
    if (body === undefined) {
      // An error answer's explanation: a courtesy, its start is enough.
      if (this.textBytes < this.errorTextBytes) {
        const piece = chunk.subarray(0, this.errorTextBytes - this.textBytes);
        this.text.push(Buffer.from(piece));
        this.textBytes += piece.length;
      }
      return;
    }
    if (Array.isArray(body)) {
      body.push(chunk);
      return;
    }
    try {
      body.add(chunk);
    } catch (err) {
      controller.abort(err as StoreError);
    }
  }

  onResponseEnd(): void {
    const body = this.body;
    if (body === undefined) {
      this.settle(undefined, { statusCode: this.status, bytes: undefined, text: Buffer.concat(this.text).toString('utf8') });
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = Array.isArray(body) ? Buffer.concat(body) : body.end();
    } catch (err) {
      this.settle(err as StoreError);
      return;
    }
    this.settle(undefined, { statusCode: this.status as 200 | 206, bytes: this.status === 200 ? sliceOfWhole(bytes, this.range) : bytes });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (err instanceof StoreError) this.settle(err);
    else this.settle(networkError(this.status ? `${this.where} (reading the body)` : this.where, err, this.signal));
  }

  private settle(err: StoreError | undefined, answer?: GetAnswer): void {
    if (this.settled) return;
    this.settled = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    if (err) this.reject(err);
    else this.resolve(answer!);
  }
}

/** An undici failure (connect, headers, body) as a StoreError: timeouts, resets and refusals retryable. */
function networkError(where: string, err: unknown, signal?: AbortSignal): StoreError {
  if (signal?.aborted) return new StoreError('aborted', `${where}: aborted`, false, err);
  const code = (err as { code?: string }).code ?? '';
  const message = (err as Error).message;
  if (TIMEOUT_CODES.has(code)) return new StoreError('timeout', `${where}: timed out: ${message} (${code})`, true, err);
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH')
    return new StoreError('integrity', `${where}: body length differs from Content-Length`, true, err);
  return new StoreError('io', `${where}: ${message}${code ? ` (${code})` : ''}`, NETWORK_CODES.has(code), err);
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function contentLength(headers: Dispatcher.ResponseData['headers']): number | undefined {
  const v = header(headers, 'content-length');
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** A StorePool as its twin on the body thread is made: the same origin and options. */
export interface PoolRef {
  id: number;
  origin: string;
  options: PoolOptions;
}

export type BodyThreadRequest =
  { op: 'get'; id: number; pool: PoolRef; spec: GetSpec } | { op: 'abort'; id: number } | { op: 'close'; id: number; pool: number };

export type BodyThreadReply =
  | { id: number; answer: GetAnswer }
  | { id: number; error: { kind: StoreErrorKind; message: string; retryable: boolean } }
  | { id: number; closed: true }
  /** Sent once, when the thread has loaded and takes requests. */
  | { id: 0; ready: true };

const BODY_THREAD_URL = new URL('./body-thread.js', import.meta.url);

/**
 * The store body thread, seen from the main thread: background GETs (whole chunks behind a
 * fault's frame, chunks read ahead) are sent and their bodies taken in there, by a twin of each
 * StorePool, into shared memory that crosses back without a copy. Taking in a 34.6 MiB restore's
 * bodies costs the main thread 70-85 ms of CPU, and 2-9 ms when the thread takes them in
 * (remote.receive.md): time a fault's bytes or an install would wait behind. One thread per
 * process, started with the first StorePool and ended with the last; it keeps the process alive
 * only while a GET is under way. It takes ~75 ms to load: until it has, background GETs are taken
 * in on the main thread (a restore that starts at once must not wait for it). Should it fail, the
 * GETs under way fail as retryable and another thread is started.
 */
class BodyThread {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (reply: BodyThreadReply) => void; reject: (err: StoreError) => void }>();
  /** StorePools not closed yet. */
  private readonly pools = new Set<number>();
  /** Whether the thread has loaded and takes GETs: false while it loads. */
  private ready = false;
  /** Called once the current thread is ready. */
  private onReady: Array<() => void> = [];

  /** A StorePool was made: the thread starts now if it is not running. */
  open(poolId: number): void {
    this.pools.add(poolId);
    this.thread();
  }

  /** Whether background GETs go to the thread now (one that failed is started again). */
  running(): boolean {
    this.thread();
    return this.ready;
  }

  /** Resolves once a thread has loaded (one is started if none runs). */
  loaded(): Promise<void> {
    if (this.running()) return Promise.resolve();
    return new Promise((resolve) => this.onReady.push(resolve));
  }

  get(pool: PoolRef, spec: GetSpec, signal: AbortSignal | undefined): Promise<GetAnswer> {
    const w = this.thread();
    const id = this.nextId++;
    return new Promise<GetAnswer>((resolve, reject) => {
      // An abort answers at once; the thread is told to drop the GET and its late reply is ignored.
      const onAbort = (): void => {
        this.pending.delete(id);
        this.unrefWhenIdle();
        w.postMessage({ op: 'abort', id } satisfies BodyThreadRequest);
        reject(new StoreError('aborted', `${spec.where}: aborted`, false));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: (reply) => {
          signal?.removeEventListener('abort', onAbort);
          if ('answer' in reply) resolve(reply.answer);
          else if ('error' in reply) reject(new StoreError(reply.error.kind, reply.error.message, reply.error.retryable));
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      });
      if (this.pending.size === 1) w.ref();
      w.postMessage({ op: 'get', id, pool, spec } satisfies BodyThreadRequest);
    });
  }

  /** A StorePool was closed: its twin (if it made one) closes its connections; the last one ends the thread. */
  async close(poolId: number): Promise<void> {
    if (!this.pools.delete(poolId)) return;
    const w = this.worker;
    if (!w) return;
    const id = this.nextId++;
    await new Promise<void>((resolve) => {
      // A thread that fails meanwhile took the twin with it: closed either way.
      this.pending.set(id, { resolve: () => resolve(), reject: () => resolve() });
      if (this.pending.size === 1) w.ref();
      w.postMessage({ op: 'close', id, pool: poolId } satisfies BodyThreadRequest);
    });
    if (this.pools.size === 0 && this.pending.size === 0 && this.worker === w) {
      this.worker = undefined;
      this.ready = false;
      await w.terminate();
    }
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(BODY_THREAD_URL);
    w.unref();
    this.ready = false;
    w.on('message', (reply: BodyThreadReply) => {
      if ('ready' in reply) {
        if (this.worker !== w) return;
        this.ready = true;
        for (const resolve of this.onReady.splice(0)) resolve();
        return;
      }
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      this.unrefWhenIdle();
      p.resolve(reply);
    });
    const fail = (why: string): void => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.ready = false;
      const pending = [...this.pending.values()];
      this.pending.clear();
      for (const p of pending) p.reject(new StoreError('io', `the store body thread ${why}`, true));
    };
    w.on('error', (err) => fail(`failed: ${err.message}`));
    w.on('exit', (code) => fail(`exited (code ${code})`));
    this.worker = w;
    return w;
  }

  private unrefWhenIdle(): void {
    if (this.pending.size === 0) this.worker?.unref();
  }
}

const bodyThread = new BodyThread();

/**
 * Resolves once the store body thread has loaded: from then on background GETs are taken in there
 * (for measurements and tests of that path; serving never needs to wait for it).
 */
export function storeBodyThreadLoaded(): Promise<void> {
  return bodyThread.loaded();
}
