import fs from 'node:fs';
import path from 'node:path';
import { FcUffdError } from '../errors.js';
import { isPowerOfTwo } from '../memory/sizes.js';
import type { FaultAround } from './fault-around.js';

/**
 * Checks of what an operator asks for, shared by the CLI and the library (`UffdServer.start`), so
 * both refuse a bad value before anything is served, with the same message. Messages name the CLI
 * flag (the library option is named alike) and say what would be accepted.
 */

const MIN_PAGE_BYTES = 4096;
/** Beyond 1 GiB one fault would install more than most guests' whole working set. */
export const MAX_FAULT_AROUND_BYTES = 1024 ** 3;
/** Firecracker sends the handshake right after connecting; below this a busy host times out healthy VMMs. */
export const MIN_HANDSHAKE_TIMEOUT_MS = 100;
export const MAX_HANDSHAKE_TIMEOUT_MS = 10 * 60 * 1000;
/** Each thread serves many VMs; more threads than cores only adds contention. */
export const MAX_LOOP_THREADS = 64;

function invalid(message: string): never {
  throw new FcUffdError('CONFIG_INVALID', message);
}

/** A fixed window's bytes, or 'adaptive' (the window grows with each stream the guest walks). */
export function validateFaultAround(value: FaultAround): void {
  if (value === 'adaptive') return;
  if (typeof value !== 'number' || !isPowerOfTwo(value) || value < MIN_PAGE_BYTES || value > MAX_FAULT_AROUND_BYTES)
    invalid(
      `--fault-around must be adaptive or a power of two of at least 4096 (4k, which disables fault-around) and at most 1g, got ${String(value)}; e.g. 64k, 256k (default), 2m, adaptive`,
    );
}

export function validateHandshakeTimeout(ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < MIN_HANDSHAKE_TIMEOUT_MS || ms > MAX_HANDSHAKE_TIMEOUT_MS)
    invalid(
      `--handshake-timeout-ms must be an integer of at least ${MIN_HANDSHAKE_TIMEOUT_MS} and at most ${MAX_HANDSHAKE_TIMEOUT_MS}, got ${ms} (default 5000)`,
    );
}

export function validateLoopThreads(n: number): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_LOOP_THREADS)
    invalid(
      `--loop-threads must be an integer from 1 to at most ${MAX_LOOP_THREADS} (one thread serves many VMs; the default is the CPU count, at most 4), got ${n}`,
    );
}

/** Permission bits only: setuid/setgid/sticky mean nothing on a socket, and the owner must be able to use it. */
export function validateSocketMode(mode: number): void {
  if (!Number.isSafeInteger(mode) || mode < 0 || mode > 0o777 || (mode & 0o600) !== 0o600)
    invalid(
      `--socket-mode must be permission bits from 0600 to 0777 that include 0600 (owner read+write), got ${Number.isSafeInteger(mode) ? `0${mode.toString(8)}` : mode}; e.g. 0600 (default: only this user's VMMs), 0660 (the group's too)`,
    );
}

export function validateOnFatal(onFatal: string): void {
  if (onFatal !== 'kill' && onFatal !== 'hang') invalid(`--on-fatal must be kill or hang, got ${JSON.stringify(onFatal)}`);
}

export function validateVcpus(n: number): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > 256) invalid(`--vcpus must be an integer from 1 to 256, got ${n}`);
}

/** Output path templates: their directory must exist and be writable now, not when a VM ends. */
export function validateOutputTemplate(flag: string, template: string): void {
  const dir = path.dirname(path.resolve(template.replaceAll('{vm}', 'vm-1').replaceAll('{pid}', '1')));
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    invalid(`${flag} ${template}: directory ${dir} does not exist; create it first`);
  }
  if (!st.isDirectory()) invalid(`${flag} ${template}: ${dir} is not a directory`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    invalid(`${flag} ${template}: directory ${dir} is not writable by this user`);
  }
}

export function validateSocketPath(socketPath: string): void {
  const dir = path.dirname(path.resolve(socketPath));
  if (!fs.existsSync(dir)) invalid(`--socket ${socketPath}: directory ${dir} does not exist; create it first`);
}

export interface ValidatedServerOptions {
  socketPath: string;
  socketMode: number;
  faultAround: FaultAround;
  handshakeTimeoutMs: number;
  loopThreads: number;
  removedRangesPath: string;
  recordWorkingSetPath: string;
}

/** Every server option an operator sets, checked at once; throws FcUffdError CONFIG_INVALID. */
export function validateServerOptions(o: ValidatedServerOptions): void {
  validateSocketPath(o.socketPath);
  validateSocketMode(o.socketMode);
  validateFaultAround(o.faultAround);
  validateHandshakeTimeout(o.handshakeTimeoutMs);
  validateLoopThreads(o.loopThreads);
  if (o.removedRangesPath) validateOutputTemplate('--removed-out', o.removedRangesPath);
  if (o.recordWorkingSetPath) validateOutputTemplate('--record-ws', o.recordWorkingSetPath);
}
