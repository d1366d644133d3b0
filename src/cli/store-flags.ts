// Flags for remote stores, shared by pack, unpack, inspect, serve and daemon: where S3 is and how
// to address it, the HTTP Authorization value, the local disk cache, timeouts and retries. All are
// checked before anything is opened or bound (one message, exit 1).
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { FcUffdError } from '../errors.js';
import { parseStoreSpec, type OpenStoreOptions } from '../store/open.js';
import { parseBytes, parseInteger } from './parse.js';

export interface StoreFlags {
  s3Endpoint?: string;
  s3PathStyle?: boolean;
  httpAuthEnv?: string;
  cacheDir?: string;
  cacheDirSize?: number;
  storeTimeoutMs?: number;
  storeRetries?: number;
}

export const DEFAULT_CACHE_DIR_BYTES = 10 * 1024 ** 3;
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_RETRIES = 3;

export function addStoreOptions(cmd: Command, o: { cache: boolean }): Command {
  cmd
    .option(
      '--s3-endpoint <url>',
      'S3 endpoint for s3:// stores (Ceph RGW, MinIO, …; default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS)',
    )
    .option('--s3-path-style', 'address buckets as ENDPOINT/BUCKET (default: on for IP and localhost endpoints)')
    .option(
      '--http-auth-env <name>',
      'environment variable holding the Authorization header value for http(s):// stores (the value is never logged)',
    )
    .option(
      '--store-timeout-ms <ms>',
      `remote store: time to the response headers, and longest silence while a body arrives (default ${DEFAULT_TIMEOUT_MS})`,
      parseInteger,
    )
    .option(
      '--store-retries <n>',
      `remote store: retries of a failed read (timeout, connection error, 5xx, damaged bytes) before giving up (default ${DEFAULT_RETRIES})`,
      parseInteger,
    );
  if (o.cache)
    cmd
      .option(
        '--cache-dir <dir>',
        'remote store: keep fetched chunks in this directory too (verified, LRU, shared by processes, kept across restarts)',
      )
      .option('--cache-dir-size <bytes>', 'the most --cache-dir may hold (default 10g)', parseBytes);
  return cmd;
}

function invalid(message: string): never {
  throw new FcUffdError('CONFIG_INVALID', message);
}

/**
 * Checks the flags that do not depend on which store is named (the daemon learns stores per
 * restore) and turns them into openStore options for a remote store.
 */
export function remoteStoreOptions(flags: StoreFlags): OpenStoreOptions {
  if (flags.s3Endpoint !== undefined) {
    let u: URL | undefined;
    try {
      u = new URL(flags.s3Endpoint);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:'))
      invalid(
        `--s3-endpoint wants an http:// or https:// URL (e.g. http://127.0.0.1:7480), got ${JSON.stringify(flags.s3Endpoint.replace(/\/\/[^/@]*@/, '//'))}`,
      );
    if (u.username || u.password)
      invalid('--s3-endpoint must not carry credentials: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)');
  }
  if (flags.httpAuthEnv !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(flags.httpAuthEnv))
      invalid(`--http-auth-env wants the NAME of an environment variable (e.g. FC_UFFD_HTTP_AUTH), not its value`);
    if (!process.env[flags.httpAuthEnv])
      invalid(
        `--http-auth-env ${flags.httpAuthEnv}: that environment variable is not set or empty (it should hold the Authorization header value, e.g. "Bearer …")`,
      );
  }
  const timeoutMs = flags.storeTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (timeoutMs < 100 || timeoutMs > 600_000)
    invalid(`--store-timeout-ms must be from 100 to 600000, got ${timeoutMs} (default ${DEFAULT_TIMEOUT_MS})`);
  const retries = flags.storeRetries ?? DEFAULT_RETRIES;
  if (retries > 20) invalid(`--store-retries must be from 0 to 20, got ${retries} (default ${DEFAULT_RETRIES})`);
  if (flags.cacheDirSize !== undefined && flags.cacheDir === undefined) invalid('--cache-dir-size goes with --cache-dir DIR');
  const cacheBytes = flags.cacheDirSize ?? DEFAULT_CACHE_DIR_BYTES;
  if (flags.cacheDir !== undefined) {
    if (cacheBytes < 16 * 1024 * 1024)
      invalid(`--cache-dir-size must be at least 16m (a few chunks), got ${cacheBytes}; e.g. 10g (default)`);
    checkCacheDir(flags.cacheDir);
  }
  const timeouts = { headersTimeoutMs: timeoutMs, bodyTimeoutMs: timeoutMs, connectTimeoutMs: Math.min(timeoutMs, 5000) };
  return {
    resilience: { maxAttempts: retries + 1 },
    http: { ...timeouts, ...(flags.httpAuthEnv !== undefined ? { authEnvVar: flags.httpAuthEnv } : {}) },
    s3: {
      ...timeouts,
      ...(flags.s3Endpoint !== undefined ? { endpoint: flags.s3Endpoint } : {}),
      ...(flags.s3PathStyle ? { forcePathStyle: true } : {}),
    },
    ...(flags.cacheDir !== undefined ? { cache: { dir: path.resolve(flags.cacheDir), maxBytes: cacheBytes } } : {}),
  };
}

/** A missing cache directory is created, but only in a parent that exists (a typo does not grow a tree). */
function checkCacheDir(dir: string): void {
  const abs = path.resolve(dir);
  const st = fs.statSync(abs, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) invalid(`--cache-dir ${dir} is not a directory`);
  const existing = st ? abs : path.dirname(abs);
  if (!st && !fs.statSync(existing, { throwIfNoEntry: false })?.isDirectory())
    invalid(`--cache-dir ${dir}: its parent ${existing} does not exist; create it or pick another directory`);
  try {
    fs.accessSync(existing, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    invalid(`--cache-dir ${dir}: ${existing} is not writable by this user`);
  }
}

/**
 * The openStore options for one named store (pack, unpack, inspect, serve): the flags must fit
 * it (S3 flags with s3://, the auth variable with http(s)://, the disk cache with a remote store).
 */
export function storeOptionsFor(spec: string, flags: StoreFlags, createDir: boolean): OpenStoreOptions {
  const kind = parseStoreSpec(spec).kind;
  const remote = remoteStoreOptions(flags);
  if (kind !== 's3' && (flags.s3Endpoint !== undefined || flags.s3PathStyle))
    invalid(`--s3-endpoint and --s3-path-style are for s3:// stores; --store ${kind === 'dir' ? 'is a directory' : 'is http(s)://'}`);
  if (kind !== 'http' && flags.httpAuthEnv !== undefined) invalid('--http-auth-env is for http(s):// stores');
  if (kind === 'dir' && flags.cacheDir !== undefined)
    invalid('--cache-dir is for remote stores (s3://, http(s)://): a directory store is on local disk already');
  return { ...remote, createDir };
}
