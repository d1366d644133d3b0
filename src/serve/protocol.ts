// Messages between the main thread and the fault-loop threads (structured-clonable plain data).
import type { ErrorCode } from '../errors.js';
import type { GuestRegion } from '../memory/regions.js';
import type { MessagePort } from 'node:worker_threads';
import type { SnapshotRef } from '../memory/snapshot.js';
import type { HandshakeGeneration } from '../firecracker/handshake.js';
import type { TraceBlock } from '../trace/format.js';
import type { FaultAround } from './fault-around.js';

/** What to do when a VM cannot be served correctly: SIGKILL its VMM, or leave it hanging (debugging). */
export type OnFatal = 'kill' | 'hang';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** Everything a fault-loop thread needs to serve one VM. */
export interface VmInit {
  vmId: string;
  connFd: number;
  peer: PeerCredentials;
  /**
   * The VMM's pidfd (-1 when its pid is unknown or pidfd_open failed). The main thread opens and
   * closes it; every kill goes through it, so a recycled pid is never signalled.
   */
  pidfd: number;
  snapshot: SnapshotRef;
  /** The worker's end of its channel to the main thread's snapshot service. */
  port: MessagePort;
  /** eventfd the main thread signals after posting on `port`. */
  sourceWakeFd: number;
  /** Bytes of a fixed window, or adaptive (fault-around.ts). */
  faultAround: FaultAround;
  onFatal: OnFatal;
  handshakeTimeoutMs: number;
  statsBuffer: SharedArrayBuffer;
  /** Record first touches for a working-set file. */
  recordWorkingSet: boolean;
  /** Record a restore timeline (`serve --trace`), posted as 'trace' blocks. */
  trace?: boolean;
  /** A working set to install ahead of the guest: page indices and their page size. */
  prefetch?: { pages: Uint32Array; pageSizeBytes: number };
}

/** Why a VM's service ended: the VMM went away, the handler was told to stop, or it could not go on. */
export type VmEndReason = 'vmm-exited' | 'stopped' | 'fatal';

export interface VmErrorInfo {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

/** Main thread → a fault-loop thread (followed by a signal on the thread's control eventfd). */
export type LoopThreadControl = { type: 'start'; init: VmInit } | { type: 'stop'; vmId: string } | { type: 'shutdown' };

/** What a fault-loop thread is started with. */
export interface LoopThreadData {
  /** The thread drains `control` when this eventfd polls readable. */
  controlFd: number;
  control: MessagePort;
}

/**
 * A fault-loop thread → its pool, once: booted, it serves VMs from now on. The pool keeps it
 * (never passed on as a LoopThreadMessage).
 */
export interface LoopThreadReady {
  type: 'ready';
  /** The nice value the thread runs at (loop-thread.ts PRIORITY_BOOST: lower than the process's when permitted). */
  nice: number;
}

/** A fault-loop thread → the main thread, about one of its VMs. */
export type LoopThreadMessage =
  | {
      type: 'handshake';
      vmId: string;
      generation: HandshakeGeneration;
      pageSizeBytes: number;
      regions: GuestRegion[];
      warnings: string[];
    }
  | { type: 'log'; vmId: string; level: 'info' | 'warn' | 'error'; msg: string }
  | ({ type: 'trace'; vmId: string } & TraceBlock)
  | {
      type: 'end';
      vmId: string;
      reason: VmEndReason;
      killed: boolean;
      removedRanges: Array<[number, number]>;
      /** First touches, when recording. */
      touches?: { pages: Uint32Array; timesMs: Uint32Array; pageSizeBytes: number };
      error?: VmErrorInfo;
    };
