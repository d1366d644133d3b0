import net from 'node:net';
import crypto from 'node:crypto';
import {
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  paginateListObjectsV2,
} from '@aws-sdk/client-s3';
import { redactUrl } from './redact.js';
import { manifestIdOfKey, manifestKeyPrefix, rangeHeader } from './layout.js';
import { ObjectStore, type BodyRead, type ByteRange } from './object-store.js';
import { S3SignedGet } from './s3-get.js';
import { StoreError } from './types.js';

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix ('' or 'a/b'): objects are PREFIX/chunks/ab/<digest>, PREFIX/manifests/<id>.json. */
  prefix?: string;
  /** S3 endpoint URL; default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS itself. */
  endpoint?: string;
  /** Default AWS_REGION / AWS_DEFAULT_REGION / the SDK's config chain; 'us-east-1' for a custom endpoint. */
  region?: string;
  /** Path-style URLs (ENDPOINT/BUCKET/KEY). Default: on for IP-literal and localhost endpoints. */
  forcePathStyle?: boolean;
  /** Time to the response headers (default 10 s). */
  headersTimeoutMs?: number;
  /** Longest silence of the socket while a body arrives (default 30 s). */
  bodyTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Keep-alive sockets at most (default 16). */
  connections?: number;
}

/** Error names S3 servers use for a transient refusal. */
const RETRYABLE_NAMES = new Set([
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'TimeoutError',
  'ThrottlingException',
]);
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

/** Endpoint resolution the way the AWS tools do it, so `aws s3` and fc-uffd agree on where a bucket is. */
export function resolveS3Endpoint(explicit?: string): string | undefined {
  return explicit ?? (process.env.AWS_ENDPOINT_URL_S3 || undefined) ?? (process.env.AWS_ENDPOINT_URL || undefined);
}

/** Virtual-host addressing (BUCKET.host) cannot work for an IP address or localhost. */
export function needsPathStyle(endpoint: string): boolean {
  const host = new URL(endpoint).hostname.replace(/^\[|\]$/g, '');
  return net.isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost');
}

/** An S3 error answer's body is a small XML document; its <Code> is read from at most this much. */
const ERROR_BODY_MAX_BYTES = 4096;

/**
 * A store in an S3 bucket (AWS, Ceph RGW, MinIO, …). Credentials come from the SDK's chain
 * (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, instance roles). HeadBucket, HeadObject and
 * PutObject go through the SDK; GetObject, the data path of every fault, through undici signed
 * with the SDK's signer, credentials and endpoint (see s3-get.ts). Nothing retries here (the SDK
 * has maxAttempts 1): ResilientStore above does, once, for every store alike.
 */
export class S3Store extends ObjectStore {
  readonly description: string;
  readonly bucket: string;
  private readonly prefix: string;
  private readonly client: S3Client;
  private readonly getter: S3SignedGet;

  constructor(options: S3StoreOptions) {
    super();
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(options.bucket))
      throw new StoreError('config', `not a valid S3 bucket name: ${JSON.stringify(options.bucket)}`, false);
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    const endpoint = resolveS3Endpoint(options.endpoint);
    if (endpoint !== undefined) {
      let u: URL;
      try {
        u = new URL(endpoint);
      } catch {
        throw new StoreError('config', `S3 endpoint is not a URL: ${JSON.stringify(redactUrl(endpoint))}`, false);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:')
        throw new StoreError('config', `S3 endpoint must be http:// or https://, not ${u.protocol}`, false);
      if (u.username || u.password)
        throw new StoreError(
          'config',
          'credentials in the S3 endpoint URL are refused: use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY',
          false,
        );
    }
    const region = options.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : undefined));
    const agent = { keepAlive: true, maxSockets: options.connections ?? 16 };
    this.client = new S3Client({
      ...(endpoint ? { endpoint } : {}),
      ...(region ? { region } : {}),
      forcePathStyle: options.forcePathStyle ?? (endpoint ? needsPathStyle(endpoint) : false),
      // Ceph answers aws-chunked bodies (what WHEN_SUPPORTED sends) with 411; Swift with 501.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 1,
      requestHandler: {
        connectionTimeout: options.connectTimeoutMs ?? 5_000,
        requestTimeout: options.headersTimeoutMs ?? 10_000,
        throwOnRequestTimeout: true,
        socketTimeout: options.bodyTimeoutMs ?? 30_000,
        httpAgent: agent,
        httpsAgent: agent,
      },
    });
    this.getter = new S3SignedGet(this.client, this.bucket, this.key('chunks/'), {
      ...(options.headersTimeoutMs !== undefined ? { headersTimeoutMs: options.headersTimeoutMs } : {}),
      ...(options.bodyTimeoutMs !== undefined ? { bodyTimeoutMs: options.bodyTimeoutMs } : {}),
      ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
      ...(options.connections !== undefined ? { connections: options.connections } : {}),
    });
    this.description = `s3://${this.bucket}/${this.prefix ? `${this.prefix}/` : ''}${endpoint ? ` at ${redactUrl(endpoint)}` : ''}`;
  }

  /** Fails with a clear error when the bucket is missing or not ours (one HeadBucket). */
  async checkBucket(signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), signal ? { abortSignal: signal } : {});
    } catch (err) {
      const status = s3Failure(err).status;
      if (status === 404)
        throw new StoreError(
          'config',
          `bucket ${this.bucket} does not exist at ${this.description}: create it first (aws s3 mb s3://${this.bucket})`,
          false,
          err,
        );
      throw this.error('HeadBucket', '', err, signal);
    }
    try {
      await this.getter.resolve();
    } catch (err) {
      if (err instanceof StoreError) throw err;
      throw this.error('resolving the endpoint of', '', err, signal);
    }
  }

  private key(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  async close(): Promise<void> {
    await this.getter.close();
    this.client.destroy();
  }

  /** Manifest ids starting with `prefix` (hex digits): one ListObjectsV2 under manifests/, page by page. */
  async manifestIdsWithPrefix(prefix: string): Promise<string[]> {
    const rel = manifestKeyPrefix(prefix);
    const root = this.key('');
    const ids: string[] = [];
    try {
      for await (const page of paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: this.key(rel) }))
        for (const o of page.Contents ?? []) {
          const id = o.Key?.startsWith(root) ? manifestIdOfKey(o.Key.slice(root.length)) : undefined;
          if (id) ids.push(id);
        }
    } catch (err) {
      const e = this.error('ListObjectsV2', rel, err);
      // Reading a snapshot needs only s3:GetObject; a role without s3:ListBucket can still name it in full.
      if (s3Failure(err).status === 403)
        throw new StoreError('http-status', `${e.message}; without listing, give the full 64-digit manifest id`, false, err);
      throw e;
    }
    return ids;
  }

  protected async headObject(rel: string, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }), signal ? { abortSignal: signal } : {});
      return true;
    } catch (err) {
      if (s3Failure(err).status === 404) return false;
      throw this.error('HeadObject', rel, err, signal);
    }
  }

  protected notFound(_rel: string, what: string, cause?: unknown): StoreError {
    return new StoreError('not-found', `${what} is not in ${this.description}`, false, cause);
  }

  protected async getObject(rel: string, what: string, range: ByteRange | undefined, read: BodyRead): Promise<Uint8Array> {
    const { signal } = read;
    const where = `GetObject s3://${this.bucket}/${this.key(rel)}`;
    // Not a StoreError: the SDK could not resolve the endpoint or sign (no region, no credentials).
    const answer = await this.getter
      .get(this.key(rel), range ? { range: rangeHeader(range) } : {}, range, where, read, ERROR_BODY_MAX_BYTES)
      .catch((err: unknown) => {
        throw err instanceof StoreError ? err : this.error('GetObject', rel, err, signal);
      });
    if (answer.bytes) return answer.bytes;
    const status = answer.statusCode;
    const name = /<Code>([^<]{1,100})<\/Code>/.exec(answer.text)?.[1] ?? '';
    if (status === 404 && name !== 'NoSuchBucket') throw this.notFound(rel, what);
    // The range starts at or past the object's end: an empty read, as a file read there is.
    if (range && (status === 416 || name === 'InvalidRange')) return new Uint8Array(0);
    throw this.error('GetObject', rel, undefined, signal, { status, name, code: undefined });
  }

  protected async putObject(rel: string, data: Uint8Array): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(rel),
          Body: data,
          ContentLength: data.byteLength,
          ContentType: 'application/octet-stream',
          // The server checks the bytes it received (RGW does); a corrupted upload fails with 400.
          ContentMD5: crypto.createHash('md5').update(data).digest('base64'),
          // Content-addressed: an object that exists has these bytes. RGW answers 412 and skips the write.
          IfNoneMatch: '*',
        }),
      );
    } catch (err) {
      const status = s3Failure(err).status;
      if (status === 412) return;
      throw this.error('PutObject', rel, err);
    }
  }

  /** A StoreError naming the operation and key, never the credentials or a signed URL. */
  private error(op: string, rel: string, err: unknown, signal?: AbortSignal, failure = s3Failure(err)): StoreError {
    const where = `${op} s3://${this.bucket}/${this.key(rel)}`;
    if (signal?.aborted) return new StoreError('aborted', `${where}: aborted`, false, err);
    const { status, name, code } = failure;
    if (name === 'NoSuchBucket')
      return new StoreError('config', `${where}: bucket ${this.bucket} does not exist at ${this.description}`, false, err);
    if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch')
      return new StoreError(
        'http-status',
        `${where}: access denied (${name || status}): check the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or profile)`,
        false,
        err,
      );
    // Before the timeout test: the SDK names a reset connection (ECONNRESET, EPIPE) a TimeoutError too,
    // which would report a server that hung up as one that was slow.
    if (code !== undefined && code !== 'ETIMEDOUT' && NETWORK_CODES.has(code)) return new StoreError('io', `${where}: ${code}`, true, err);
    if (name === 'TimeoutError' || code === 'ETIMEDOUT' || name === 'RequestTimeout')
      return new StoreError('timeout', `${where}: timed out`, true, err);
    if (status !== undefined)
      return new StoreError(
        'http-status',
        `${where}: HTTP ${status}${name ? ` ${name}` : ''}`,
        status >= 500 || status === 429 || status === 408 || RETRYABLE_NAMES.has(name),
        err,
      );
    if (RETRYABLE_NAMES.has(name)) return new StoreError('io', `${where}: ${name}`, true, err);
    return new StoreError('io', `${where}: ${(err as Error).message}`, false, err);
  }
}

/**
 * What an SDK failure says, read defensively: a service error carries `$metadata.httpStatusCode`,
 * but a network error (reset, timeout) reaches us as a plain Error without it.
 */
function s3Failure(err: unknown): { status: number | undefined; name: string; code: string | undefined } {
  const e = err as (Partial<S3ServiceException> & { code?: string }) | undefined;
  const status = e?.$metadata?.httpStatusCode;
  // A HEAD answer has no body to name its error, and the SDK calls it "Unknown": the status says more.
  const name = status !== undefined && e?.name === 'Unknown' ? '' : (e?.name ?? '');
  return { status, name, code: e?.code };
}
