import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DirStore } from './dir.js';
import { DiskCacheStore, type DiskCacheOptions } from './disk-cache.js';
import type { HttpStoreOptions } from './http.js';
import { InflightStore } from './inflight.js';
import { ResilientStore, type ResilienceOptions } from './resilient.js';
import { redactUrl } from './redact.js';
import type { S3StoreOptions } from './s3.js';
import { StoreError, type ChunkStore } from './types.js';

export interface OpenStoreOptions {
  /** Concurrency and retries (defaults for remote stores: 16 in flight, 4 tries, 50 ms first backoff). */
  resilience?: ResilienceOptions;
  http?: HttpStoreOptions;
  s3?: Omit<S3StoreOptions, 'bucket' | 'prefix'>;
  /** A local disk tier for a remote store (ignored for a directory store: it is local already). */
  cache?: Omit<DiskCacheOptions, 'dir'> & { dir: string };
  /** Check at open that an S3 bucket exists (one HeadBucket; default true). */
  checkBucket?: boolean;
  /** A directory store must exist already (unpack, inspect, serve); pack creates one (default true). */
  createDir?: boolean;
}

export type StoreSpec = { kind: 'dir'; path: string } | { kind: 's3'; bucket: string; prefix: string } | { kind: 'http'; url: string };

/** Parses `s3://BUCKET[/PREFIX]`, `http(s)://HOST[:PORT][/PREFIX]` or a directory path. */
export function parseStoreSpec(spec: string): StoreSpec {
  if (spec.trim() === '')
    throw new StoreError('config', 'empty store: give a directory, s3://BUCKET/PREFIX or http(s)://HOST/PREFIX', false);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(spec)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'dir', path: path.resolve(spec) };
  if (scheme === 'http' || scheme === 'https') return { kind: 'http', url: spec };
  if (scheme === 's3') {
    const m = /^s3:\/\/([^/]*)\/?(.*)$/i.exec(spec)!;
    const bucket = m[1] ?? '';
    if (bucket === '') throw new StoreError('config', `no bucket in ${JSON.stringify(spec)}: write s3://BUCKET/PREFIX`, false);
    return { kind: 's3', bucket, prefix: (m[2] ?? '').replace(/\/+$/, '') };
  }
  if (scheme === 'file') {
    // fileURLToPath refuses a host other than localhost and malformed escapes; an empty path
    // would make the root directory the store.
    let dir: string | undefined;
    try {
      dir = fileURLToPath(spec);
    } catch {
      dir = undefined;
    }
    if (dir === undefined || dir === '/')
      throw new StoreError(
        'config',
        `not a store directory: ${JSON.stringify(spec)}: write file:///ABSOLUTE/PATH or the path itself`,
        false,
      );
    return { kind: 'dir', path: dir };
  }
  throw new StoreError(
    'config',
    `unsupported store scheme ${scheme}:// in ${JSON.stringify(describeStoreSpec(spec))}: use a directory, s3://BUCKET/PREFIX or http(s)://HOST/PREFIX`,
    false,
  );
}

/** The store as it may be logged: no user, password or query string. */
export function describeStoreSpec(spec: string): string {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(spec) ? redactUrl(spec) : spec;
}

/**
 * Opens the store a user named. Remote stores are layered, outermost first:
 * InflightStore (one request per object however many VMs wait) → DiskCacheStore (optional; above
 * the limiter, so a hit never queues behind remote requests; a fetched object that fails its check
 * is fetched again by the cache itself and never cached) → ResilientStore (bounded concurrency,
 * retries of transient failures with jittered exponential backoff) → HttpStore | S3Store.
 * A directory gets InflightStore → ResilientStore → DirStore.
 */
export async function openStore(spec: string, options: OpenStoreOptions = {}): Promise<ChunkStore> {
  const parsed = parseStoreSpec(spec);
  if (parsed.kind === 'dir')
    return new InflightStore(new ResilientStore(DirStore.open(parsed.path, { create: options.createDir ?? true }), options.resilience));
  let raw: ChunkStore;
  // The clients load only when a remote store is named: undici and the AWS SDK add ~20-35 MiB of
  // RSS to a handler serving a local snapshot.
  if (parsed.kind === 'http') {
    const { HttpStore } = await import('./http.js');
    raw = new HttpStore(parsed.url, options.http);
  } else {
    const { S3Store } = await import('./s3.js');
    const s3 = new S3Store({ ...options.s3, bucket: parsed.bucket, prefix: parsed.prefix });
    if (options.checkBucket ?? true) {
      try {
        await s3.checkBucket();
      } catch (err) {
        await s3.close();
        throw err;
      }
    }
    raw = s3;
  }
  const resilient = new ResilientStore(raw, { maxConcurrency: 16, maxAttempts: 4, backoffMs: 50, ...options.resilience });
  return new InflightStore(options.cache ? await DiskCacheStore.open(resilient, options.cache) : resilient);
}
