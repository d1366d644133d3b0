import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getEndpointFromInstructions } from '@smithy/core/endpoints';
import { SignatureV4 } from '@smithy/signature-v4';
import type { BodyRead, ByteRange } from './object-store.js';
import { StoreError } from './types.js';
import { StorePool, type GetAnswer, type PoolOptions } from './undici-request.js';

/**
 * S3 GetObject without the SDK's per-request machinery: the data path of every VM's faults runs on
 * the handler's main thread, and the SDK spends several ms of CPU per GET there (schema serde,
 * the endpoint ruleset, checksum middleware, node:http) where undici and one SigV4 signature
 * spend about one. What the SDK knows is still the SDK's:
 * - where: the bucket's URL comes from the client's own endpoint resolution (its ruleset with its
 *   resolved region, endpoint, forcePathStyle, FIPS, dual-stack and accelerate settings), run once
 *   per store; so AWS, Ceph, MinIO, path-style and virtual-hosted are addressed as the SDK would.
 * - who: the client's resolved credential chain (env, profiles, SSO, instance roles; memoized and
 *   refreshed before expiry by the SDK) and its clock-skew correction sign every request with the
 *   SDK's own SigV4 signer; a session token goes out as x-amz-security-token.
 * x-amz-content-sha256 is the empty body's hash (a GET has none; it is what the SDK sends) rather
 * than UNSIGNED-PAYLOAD, so nothing about the request is left unsigned.
 */
export interface S3Address {
  /** scheme://host[:port] to open the connection pool to. */
  origin: string;
  /** The Host header (port only when not the scheme's default). */
  host: string;
  /** Path of the bucket's root, '' or '/…' with no trailing slash. */
  basePath: string;
  signingRegion: string;
  signingName: string;
}

interface Ready {
  address: S3Address;
  pool: StorePool;
  signer: SignatureV4;
}

export class S3SignedGet {
  private ready: Promise<Ready> | undefined;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    /** A key like the ones this store reads (the ruleset may look at the key). */
    private readonly sampleKey: string,
    private readonly poolOptions: PoolOptions,
  ) {}

  /** Resolves the bucket's address once (a failure, say the region not yet known, is tried again next time). */
  resolve(): Promise<Ready> {
    this.ready ??= this.setUp().catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  private async setUp(): Promise<Ready> {
    const endpoint = await getEndpointFromInstructions({ Bucket: this.bucket, Key: this.sampleKey }, GetObjectCommand, this.client.config);
    const address = bucketAddress(endpoint.url, endpoint.properties?.authSchemes, this.bucket);
    const pool = new StorePool(address.origin, this.poolOptions);
    const signer = new SignatureV4({
      service: address.signingName,
      region: address.signingRegion,
      credentials: this.client.config.credentials,
      sha256: this.client.config.sha256,
      // S3 signs the path as sent (the SDK's signingEscapePath is false for S3).
      uriEscapePath: false,
      applyChecksum: true,
    });
    return { address, pool, signer };
  }

  /**
   * A signed GET of `key` with `headers` (Range) for `range` (see StorePool.get). A network failure
   * is a StoreError led by `where`; a failure to resolve or sign (no region, no credentials) is the
   * SDK's error, for the store to say.
   */
  async get(
    key: string,
    headers: Record<string, string>,
    range: ByteRange | undefined,
    where: string,
    read: BodyRead,
    errorTextBytes: number,
  ): Promise<GetAnswer> {
    read.signal?.throwIfAborted();
    const { address, pool, signer } = await this.resolve();
    const path = objectPath(address.basePath, key);
    const signed = await signer.sign(
      { method: 'GET', protocol: '', hostname: '', path, query: {}, headers: { ...headers, host: address.host } },
      // The SDK's clock-skew correction, learnt from its own requests' answers (HeadBucket at open).
      { signingDate: new Date(Date.now() + this.client.config.systemClockOffset) },
    );
    return pool.get(path, signed.headers, range, where, read, errorTextBytes);
  }

  /** Closes the pool, once a resolution under way (if any) has made it. */
  async close(): Promise<void> {
    const ready = await this.ready?.catch(() => undefined);
    await ready?.pool.close();
  }
}

/**
 * The address the SDK's endpoint resolution gave for a bucket. Only plain SigV4 is spoken here:
 * an S3 Express directory bucket (session auth) or a SigV4a endpoint is refused with a config error.
 */
export function bucketAddress(url: URL, authSchemes: unknown, bucket: string): S3Address {
  const scheme = (Array.isArray(authSchemes) ? (authSchemes[0] as unknown) : undefined) as
    { name?: unknown; signingRegion?: unknown; signingName?: unknown } | undefined;
  if (scheme?.name !== 'sigv4' || typeof scheme.signingRegion !== 'string' || typeof scheme.signingName !== 'string')
    throw new StoreError(
      'config',
      `bucket ${bucket} needs ${typeof scheme?.name === 'string' ? scheme.name : 'an unknown'} authentication (an S3 Express directory bucket or a multi-region access point): use a general purpose bucket`,
      false,
    );
  return {
    origin: url.origin,
    host: url.host,
    basePath: url.pathname.replace(/\/+$/, ''),
    signingRegion: scheme.signingRegion,
    signingName: scheme.signingName,
  };
}

/** BASE/key with each segment escaped as the SDK escapes a key (RFC 3986: also !'()*), the slashes kept. */
export function objectPath(basePath: string, key: string): string {
  const escaped = key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
  return `${basePath}/${escaped}`;
}
