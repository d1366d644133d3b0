import { Pool, type Dispatcher } from 'undici';
import { rangedAnswerLength, readBodyShared, sliceOfWhole, type BodyRead, type ByteRange } from './object-store.js';
import { StoreError } from './types.js';

/**
 * What the HTTP and S3 stores share on the wire: one undici keep-alive pool per origin, a request
 * with the stores' timeouts and abort, a GET answer's body read into shared memory (checked against
 * the range asked for), and undici's failures said as StoreErrors.
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
  private readonly headersTimeoutMs: number;
  private readonly bodyTimeoutMs: number;

  constructor(origin: string, options: PoolOptions) {
    this.headersTimeoutMs = options.headersTimeoutMs ?? 10_000;
    this.bodyTimeoutMs = options.bodyTimeoutMs ?? 30_000;
    this.pool = new Pool(origin, {
      connections: options.connections ?? 16,
      connect: { timeout: options.connectTimeoutMs ?? 5_000 },
      headersTimeout: this.headersTimeoutMs,
      bodyTimeout: this.bodyTimeoutMs,
    });
  }

  /** Sends one request; a failure before the headers is a StoreError led by `where`. */
  async request(spec: RequestSpec, where: string, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    signal?.throwIfAborted();
    try {
      return await this.pool.request({
        method: spec.method,
        path: spec.path,
        headers: spec.headers,
        ...(spec.body ? { body: spec.body } : {}),
        ...(signal ? { signal } : {}),
        headersTimeout: this.headersTimeoutMs,
        bodyTimeout: this.bodyTimeoutMs,
      });
    } catch (err) {
      throw networkError(where, err, signal);
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * The bytes a 200 or 206 answer to a GET of `range` (or of the whole object) carries: a 206's
 * Content-Range and length checked, a 200 to a ranged GET (a server or cache that ignores Range)
 * sliced. Undefined for any other status, its body left for the caller.
 */
export async function getAnswerBytes(
  res: Dispatcher.ResponseData,
  range: ByteRange | undefined,
  where: string,
  read: BodyRead = {},
): Promise<Uint8Array | undefined> {
  if (res.statusCode === 206 && range) {
    const want = rangedAnswerLength(header(res.headers, 'content-range'), contentLength(res.headers), range);
    if (typeof want === 'string') {
      await res.body.dump();
      throw new StoreError('integrity', `${where}: ${want}`, true);
    }
    return readBody(res.body, want, where, read);
  }
  if (res.statusCode === 200) return sliceOfWhole(await readBody(res.body, contentLength(res.headers), where, read), range);
  return undefined;
}

/** A whole body; with a known length, exactly that many bytes in shared memory (see readBodyShared) or an integrity error. */
async function readBody(
  body: Dispatcher.ResponseData['body'],
  expected: number | undefined,
  where: string,
  read: BodyRead,
): Promise<Uint8Array> {
  try {
    if (expected === undefined) return new Uint8Array(await body.arrayBuffer());
    return await readBodyShared(body as AsyncIterable<Buffer>, expected, () => body.destroy(), where, read.pace);
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw networkError(`${where} (reading the body)`, err, read.signal);
  }
}

/** Up to `maxBytes` of a body as text, the rest dropped: an error answer's explanation. */
export async function readSmallText(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<string> {
  const pieces: Buffer[] = [];
  let got = 0;
  try {
    for await (const piece of body as AsyncIterable<Buffer>) {
      pieces.push(piece.subarray(0, maxBytes - got));
      got += Math.min(piece.length, maxBytes - got);
      if (got >= maxBytes) {
        body.destroy();
        break;
      }
    }
  } catch {
    // The explanation is a courtesy: a body that fails to arrive leaves the status to speak.
  }
  return Buffer.concat(pieces).toString('utf8');
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
