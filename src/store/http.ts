import { redactUrl } from './redact.js';
import type { Dispatcher } from 'undici';
import { rangeHeader } from './layout.js';
import { ObjectStore, type BodyRead, type ByteRange } from './object-store.js';
import { StoreError } from './types.js';
import { StorePool, type PoolOptions } from './undici-request.js';

export interface HttpStoreOptions extends PoolOptions {
  /**
   * Name of an environment variable whose value is sent as the `Authorization` header (for
   * example `FC_UFFD_HTTP_AUTH` holding `Bearer …`). The value is read once, here, and never
   * logged; a URL with credentials in it is refused instead.
   */
  authEnvVar?: string;
}

/** Statuses worth trying again: the server is busy, restarting or throttling. */
const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
/**
 * A store on any HTTP server that answers GET (with Range), HEAD and PUT: nginx with WebDAV PUT,
 * a CDN in front of a bucket (read-only), a presigning gateway. Objects are at
 * `BASE/chunks/ab/<digest>` and `BASE/manifests/<id>.json` (DirStore's layout). One keep-alive
 * connection pool per store.
 */
export class HttpStore extends ObjectStore {
  readonly description: string;
  private readonly pool: StorePool;
  private readonly basePath: string;
  // A private field: it does not show in util.inspect or JSON of the store.
  readonly #authorization: string | undefined;

  constructor(baseUrl: string, options: HttpStoreOptions = {}) {
    super();
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new StoreError('config', `not a URL: ${JSON.stringify(redactUrl(baseUrl))}`, false);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new StoreError('config', `an HTTP store needs an http:// or https:// URL, not ${url.protocol}`, false);
    if (url.username || url.password)
      throw new StoreError(
        'config',
        `credentials in the store URL are refused (they would show in logs): put the Authorization value in an environment variable and name it with the auth option`,
        false,
      );
    if (url.search || url.hash)
      throw new StoreError('config', `the store URL must not have a query or fragment: ${url.origin}${url.pathname}`, false);
    if (options.authEnvVar !== undefined) {
      const value = process.env[options.authEnvVar];
      if (!value)
        throw new StoreError(
          'config',
          `environment variable ${options.authEnvVar} (the Authorization header for ${url.origin}) is not set or empty`,
          false,
        );
      this.#authorization = value;
    }
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.description = `${url.origin}${this.basePath}/`;
    this.pool = new StorePool(url.origin, options);
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private headers(extra: Record<string, string>): Record<string, string> {
    return this.#authorization === undefined ? extra : { ...extra, authorization: this.#authorization };
  }

  private request(
    method: 'HEAD' | 'PUT',
    key: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
    body?: Uint8Array,
  ): Promise<Dispatcher.ResponseData> {
    const spec = { method, path: `${this.basePath}/${key}`, headers: this.headers(headers), ...(body ? { body } : {}) };
    return this.pool.request(spec, `${method} ${this.description}${key}`, signal);
  }

  protected async headObject(key: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.request('HEAD', key, {}, signal);
    await res.body.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw this.statusError('HEAD', key, res.statusCode);
  }

  protected notFound(key: string, what: string): StoreError {
    return this.statusError('GET', key, 404, what);
  }

  protected async getObject(key: string, what: string, range: ByteRange | undefined, read: BodyRead): Promise<Uint8Array> {
    const headers = this.headers(range ? { range: rangeHeader(range) } : {});
    const answer = await this.pool.get(`${this.basePath}/${key}`, headers, range, `GET ${this.description}${key}`, read);
    if (answer.bytes) return answer.bytes;
    // Range starts at or past the end: an empty read, as a file read there is.
    if (answer.statusCode === 416 && range) return new Uint8Array(0);
    throw this.statusError('GET', key, answer.statusCode, what);
  }

  protected async putObject(key: string, data: Uint8Array): Promise<void> {
    // If-None-Match: * lets a server that honours it skip the write (412); nginx ignores it and
    // overwrites with the same bytes, which is as good.
    const res = await this.request(
      'PUT',
      key,
      { 'content-type': 'application/octet-stream', 'content-length': String(data.byteLength), 'if-none-match': '*' },
      undefined,
      data,
    );
    await res.body.dump();
    if (res.statusCode === 200 || res.statusCode === 201 || res.statusCode === 204 || res.statusCode === 412) return;
    throw this.statusError('PUT', key, res.statusCode);
  }

  private statusError(method: string, key: string, status: number, what?: string): StoreError {
    const where = `${method} ${this.description}${key}`;
    if (status === 404) return new StoreError('not-found', `${what ?? key} is not in ${this.description} (${where}: HTTP 404)`, false);
    if (status === 401 || status === 403)
      return new StoreError(
        'http-status',
        `${where}: HTTP ${status}, access denied: check the Authorization value (environment variable named by the auth option)`,
        false,
      );
    if (status === 405 && method === 'PUT')
      return new StoreError('http-status', `${where}: HTTP 405, the server does not accept PUT (nginx needs dav_methods PUT)`, false);
    return new StoreError('http-status', `${where}: HTTP ${status}`, RETRYABLE_STATUS.has(status));
  }
}
