// Validation of control API input: restore names, request bodies, socket paths. Every refusal is
// a CONTROL_BAD_REQUEST naming the field and what is accepted.
import path from 'node:path';
import { FcUffdError } from '../errors.js';
import type { RestoreRequest } from './api-types.js';

/** Restore names: a letter or digit, then letters, digits, `.`, `_`, `-`; at most 64; never `..`. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkName(name: string): string {
  if (!NAME_PATTERN.test(name) || name.includes('..'))
    throw new FcUffdError(
      'CONTROL_BAD_REQUEST',
      `bad restore name ${JSON.stringify(name)}: use 1-64 of [A-Za-z0-9._-], starting with a letter or digit, without ".."`,
    );
  return name;
}

const STRING_FIELDS = ['mem', 'snapshot', 'store', 'socket', 'prefetch', 'record_ws', 'removed_out'] as const;
/** Every field a restore request may hold. */
export const RESTORE_REQUEST_FIELDS: readonly string[] = [
  ...STRING_FIELDS,
  'fault_around',
  'on_fatal',
  'handshake_timeout_ms',
  'prefetch_chunks',
];
const KNOWN = new Set(RESTORE_REQUEST_FIELDS);
const MAX_FAULT_AROUND_BYTES = 2 * 1024 * 1024;

function bad(message: string): FcUffdError {
  return new FcUffdError('CONTROL_BAD_REQUEST', message);
}

function positiveInt(body: Record<string, unknown>, field: string, min: number, max: number): number | undefined {
  const v = body[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw bad(`${field} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
}

/** A PUT /restores/{name} body, checked field by field (unknown fields are refused). */
export function parseRestoreRequest(text: string): RestoreRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw bad(`the body is not JSON: ${(err as Error).message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('the body must be a JSON object');
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !KNOWN.has(k));
  if (unknown.length > 0) throw bad(`unknown field(s) ${unknown.join(', ')}; accepted: ${[...KNOWN].join(', ')}`);
  const req: RestoreRequest = {};
  for (const f of STRING_FIELDS) {
    const v = b[f];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v === '' || v.includes('\0')) throw bad(`${f} must be a non-empty string`);
    req[f] = v;
  }
  if ((req.mem === undefined) === (req.snapshot === undefined))
    throw bad('give exactly one of "mem" (a memory file) or "snapshot" (with "store")');
  if (req.mem !== undefined && req.store !== undefined) throw bad('"store" goes with "snapshot", not "mem"');
  if (req.snapshot !== undefined && req.store === undefined) throw bad('"snapshot" needs "store" (a chunk store directory)');
  if (b.fault_around === 'adaptive') req.fault_around = 'adaptive';
  else if (b.fault_around !== undefined) {
    const v = b.fault_around;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 4096 || v > MAX_FAULT_AROUND_BYTES || (v & (v - 1)) !== 0)
      throw bad(`fault_around must be "adaptive" or a power of two in 4096..${MAX_FAULT_AROUND_BYTES}, got ${JSON.stringify(v)}`);
    req.fault_around = v;
  }
  if (b.on_fatal !== undefined) {
    if (b.on_fatal !== 'kill' && b.on_fatal !== 'hang') throw bad(`on_fatal must be "kill" or "hang", got ${JSON.stringify(b.on_fatal)}`);
    req.on_fatal = b.on_fatal;
  }
  const timeout = positiveInt(b, 'handshake_timeout_ms', 1, 600_000);
  if (timeout !== undefined) req.handshake_timeout_ms = timeout;
  const prefetchChunks = positiveInt(b, 'prefetch_chunks', 0, 64);
  if (prefetchChunks !== undefined) {
    if (req.snapshot === undefined) throw bad('"prefetch_chunks" goes with "snapshot"');
    req.prefetch_chunks = prefetchChunks;
  }
  return req;
}

/** The restore's uffd socket: `socket` (a name or path) or `{name}.sock`, directly inside `socketsDir`. */
export function socketPathFor(socketsDir: string, name: string, socket: string | undefined): string {
  const resolved = path.resolve(socketsDir, socket ?? `${name}.sock`);
  if (path.dirname(resolved) !== socketsDir)
    throw bad(`socket ${JSON.stringify(socket)} is not directly inside the sockets dir ${socketsDir}`);
  // sockaddr_un.sun_path holds 107 bytes and a NUL.
  if (Buffer.byteLength(resolved) > 107) throw bad(`socket path ${resolved} is longer than a unix socket path may be (107 bytes)`);
  return resolved;
}
