// Messages between the main thread and a VM's worker (structured-clonable plain data).
import type { GuestRegion } from '../memory/regions.js';
import type { MessagePort } from 'node:worker_threads';
import type { SnapshotRef } from './snapshot-source.js';
import type { HandshakeGeneration } from '../firecracker/handshake.js';

/** What to do when a VM cannot be served correctly: SIGKILL its VMM, or leave it hanging (debugging). */
export type OnFatal = 'kill' | 'hang';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export interface VmWorkerInit {
  vmId: string;
  connFd: number;
  peer: PeerCredentials;
  snapshot: SnapshotRef;
  /** The worker's end of its channel to the main thread's snapshot service. */
  port: MessagePort;
  /** eventfd the main thread signals after posting on `port`. */
  sourceWakeFd: number;
  faultAroundBytes: number;
  onFatal: OnFatal;
  handshakeTimeoutMs: number;
  statsBuffer: SharedArrayBuffer;
  /** eventfd the main thread signals to stop this VM's loop. */
  stopFd: number;
  /** Record first touches for a working-set file. */
  recordWorkingSet: boolean;
  /** A working set to install ahead of the guest: page indices and their page size. */
  prefetch?: { pages: Uint32Array; pageSizeBytes: number };
}

/** Why a VM's service ended: the VMM went away, the handler was told to stop, or it could not go on. */
export type VmEndReason = 'vmm-exited' | 'stopped' | 'fatal';

export interface VmErrorInfo {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export type VmWorkerMessage =
  | {
      type: 'handshake';
      generation: HandshakeGeneration;
      pageSizeBytes: number;
      regions: GuestRegion[];
      warnings: string[];
    }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  | {
      type: 'end';
      reason: VmEndReason;
      killed: boolean;
      removedRanges: Array<[number, number]>;
      /** First touches, when recording. */
      touches?: { pages: Uint32Array; timesMs: Uint32Array; pageSizeBytes: number };
      error?: VmErrorInfo;
    };
