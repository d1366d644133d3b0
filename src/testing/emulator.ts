// The Firecracker emulator for users' own tests (`firecracker-uffd/testing`): a C program that plays
// Firecracker's side of a restore (maps guest memory, registers a userfaultfd, sends the handshake,
// touches pages and checks every byte). It is built from the package's tools/ directory, not on a
// registry install: `make -C node_modules/firecracker-uffd/tools bin/fc-emu` (gcc, make, Linux headers),
// or `npm run build:tools` in a clone. FC_UFFD_EMULATOR=/path/to/fc-emu points elsewhere.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FcUffdError } from '../errors.js';

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Where the emulator binary is expected (FC_UFFD_EMULATOR overrides); it may not be built. */
export const EMULATOR_PATH = process.env.FC_UFFD_EMULATOR ?? path.join(PACKAGE_ROOT, 'tools/bin/fc-emu');

/** The emulator's path; throws FcUffdError EMULATOR_MISSING saying how to build it when it is absent. */
export function emulatorPath(): string {
  if (!fs.existsSync(EMULATOR_PATH))
    throw new FcUffdError(
      'EMULATOR_MISSING',
      `the Firecracker emulator is not built at ${EMULATOR_PATH}: build it with \`make -C ${path.join(PACKAGE_ROOT, 'tools')} bin/fc-emu\` (needs gcc, make and the Linux headers; \`npm run build:tools\` in a clone), or set FC_UFFD_EMULATOR to a built fc-emu`,
      { path: EMULATOR_PATH },
    );
  return EMULATOR_PATH;
}

export interface EmulatorOptions {
  socket: string;
  mem: string;
  memSizeBytes?: number;
  pageSize?: '4k' | '2m';
  fcVersion?: '1.6' | '1.11' | '1.14';
  vcpus?: number;
  pattern?: string;
  touchPages?: number;
  share?: 'same' | 'split';
  writePercent?: number;
  kernelAccess?: number;
  kvm?: boolean;
  balloonCycles?: number;
  balloonMaxPages?: number;
  removedOut?: string;
  seed?: number;
  holdMs?: number;
  handshakeJson?: string;
  /** Appended to every region object of the generated handshake, e.g. `"future_field":1`. */
  handshakeExtra?: string;
  fds?: number;
  closeBeforeSend?: boolean;
  sendEmpty?: boolean;
  noWorkload?: boolean;
  deadlineMs?: number;
}

/** The emulator's one-line JSON report (fields it always prints). */
export interface EmulatorReport {
  ok: boolean;
  fcVersion: string;
  pageSizeBytes: number;
  memSizeBytes: number;
  vcpus: number;
  touches: number;
  pagesVerified: number;
  writes: number;
  kernelAccesses: number;
  mismatches: number;
  firstMismatch: unknown;
  handshakeToDoneMs: number;
  touchLatencyUs: { count: number; p50: number; p99: number; max: number };
  /** The vCPUs' time in first touches, summed: what the restore waited for its handler (with several vCPUs, overlapping). */
  touchWaitMs: number;
  kvm: null | { vcpus: number; pagesTouched: number; checksumOk: boolean };
  balloon: null | {
    cycles: number;
    pagesRemoved: number;
    rezeroVerified: number;
    rezeroNonzeroVerified: number;
    /** Removals of a page that had a duplicate fault since its previous removal (PS_DUP_FAULT in fc-emu.h). */
    racyRemovals: number;
    /** Pages removed and untouched at the end whose last removal was racy: the handler may have installed them late. */
    racyRemovedOffsets: number[];
  };
  [key: string]: unknown;
}

export interface EmulatorResult {
  /** Exit code, or null when a signal ended it (then `signal` says which). */
  code: number | null;
  signal: NodeJS.Signals | null;
  report: EmulatorReport | undefined;
  stdout: string;
  stderr: string;
  /** The emulator's pid: the handler's log lines about this VMM carry it. */
  pid: number | undefined;
}

export function emulatorArgs(o: EmulatorOptions): string[] {
  const args = ['--socket', o.socket, '--mem', o.mem, '--json'];
  const flag = (name: string, v: string | number | boolean | undefined): void => {
    if (v === undefined || v === false) return;
    if (v === true) args.push(`--${name}`);
    else args.push(`--${name}`, String(v));
  };
  flag('mem-size', o.memSizeBytes);
  flag('page-size', o.pageSize);
  flag('fc-version', o.fcVersion);
  flag('vcpus', o.vcpus);
  flag('pattern', o.pattern);
  flag('touch-pages', o.touchPages);
  flag('share', o.share);
  flag('write-percent', o.writePercent);
  flag('kernel-access', o.kernelAccess);
  flag('kvm', o.kvm);
  flag('balloon-cycles', o.balloonCycles);
  flag('balloon-max-pages', o.balloonMaxPages);
  flag('removed-out', o.removedOut);
  flag('seed', o.seed);
  flag('hold-ms', o.holdMs);
  flag('handshake-json', o.handshakeJson);
  flag('handshake-extra', o.handshakeExtra);
  flag('fds', o.fds);
  flag('close-before-send', o.closeBeforeSend);
  flag('send-empty', o.sendEmpty);
  flag('no-workload', o.noWorkload);
  flag('deadline-ms', o.deadlineMs);
  return args;
}

/**
 * Runs the emulator as its own process (as Firecracker is) and collects its report. `onSpawn`: told
 * the child at once (a caller that kills its children on Ctrl-C keeps it).
 */
export async function runEmulator(o: EmulatorOptions, onSpawn?: (child: ChildProcess) => void): Promise<EmulatorResult> {
  const bin = emulatorPath();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, emulatorArgs(o), { stdio: ['ignore', 'pipe', 'pipe'] });
    onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const line = stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .pop();
      let report: EmulatorReport | undefined;
      if (line) {
        try {
          report = JSON.parse(line) as EmulatorReport;
        } catch {
          report = undefined;
        }
      }
      resolve({ code, signal, report, stdout, stderr, pid: child.pid });
    });
  });
}
