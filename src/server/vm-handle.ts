import type { Logger } from 'pino';
import type { FcUffdError } from '../errors.js';
import type { HandshakeGeneration } from '../firecracker/handshake.js';
import type { GuestRegion } from '../memory/regions.js';
import type { VmChannel } from '../memory/snapshot.js';
import type { PeerCredentials, VmEndReason } from '../serve/protocol.js';
import type { StatsSnapshot, VmStats } from '../serve/stats.js';
import type { Listener } from './listener.js';

export type VmState = 'handshake' | 'serving' | 'ended';

/** One VM (one VMM connection) as the library shows it: plain data, a copy taken when asked. */
export interface VmInfo {
  /** `vm-<n>`, unique within the server. */
  id: string;
  /** The orchestrator's name for this VM: the `identify` callback's answer, else the socket's `tag`. */
  tag?: string;
  /** The socket the VMM connected to. */
  socketPath: string;
  peer: PeerCredentials;
  state: VmState;
  startedAtMs: number;
  generation?: HandshakeGeneration;
  pageSizeBytes?: number;
  regions?: GuestRegion[];
  endReason?: VmEndReason;
  /** Why the VM could not be served (its handshake was refused, or serving failed). */
  error?: FcUffdError;
  /** The VMM was sent SIGKILL: it could not be served correctly, or `stop({ kill: true })` asked. */
  killed?: boolean;
  /** Snapshot ranges the balloon removed that were not installed again (file offsets, end exclusive). */
  removedRanges?: Array<[number, number]>;
  /**
   * Counters and latency of this VM alone. Latencies are histogram estimates: each quantile is the
   * midpoint of the power-of-two bucket it falls in (within a factor of 1.5 of the true value).
   */
  stats: StatsSnapshot;
}

export interface StopVmOptions {
  /** Also SIGKILL the VMM (through its pidfd, never a recycled pid); default false: its next faults hang. */
  kill?: boolean;
}

/** A handle on one VM, given by every server event; stays valid (read-only) after the VM ends. */
export interface VmHandle {
  readonly id: string;
  readonly tag: string | undefined;
  readonly peer: PeerCredentials;
  /** The socket (and its options) this VM came in on. */
  readonly listener: Listener;
  readonly state: VmState;
  /** Resolves with the final VmInfo when the VM's service ends, for any reason; never rejects. */
  readonly ended: Promise<VmInfo>;
  /** Stops serving this VM (end reason 'stopped'); resolves like `ended`. */
  stop(options?: StopVmOptions): Promise<VmInfo>;
  stats(): StatsSnapshot;
  info(): VmInfo;
}

/** Server-side state of a VM; what users see of it is its VmHandle side. */
export class Vm implements VmHandle {
  readonly ended: Promise<VmInfo>;
  /** stop() was asked: the end is reported as 'stopped' even if the VMM's exit is seen first. */
  stopRequested = false;
  /** The VMM was killed by stop({ kill: true }). */
  killedByStop = false;
  private final: VmInfo | undefined;
  private resolveEnded: (info: VmInfo) => void = () => {};

  constructor(
    readonly data: Omit<VmInfo, 'stats'>,
    readonly statsCounters: VmStats,
    readonly listener: Listener,
    readonly log: Logger,
    readonly channel: VmChannel,
    /** The VMM's pidfd (-1: none), shared with the fault-loop thread; closed when the VM ends. */
    readonly pidfd: number,
    private readonly stopper: (vm: Vm, options: StopVmOptions) => void,
  ) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  get id(): string {
    return this.data.id;
  }

  get tag(): string | undefined {
    return this.data.tag;
  }

  get peer(): VmInfo['peer'] {
    return this.data.peer;
  }

  get state(): VmState {
    return this.data.state;
  }

  stats(): StatsSnapshot {
    return this.final?.stats ?? this.statsCounters.snapshot();
  }

  info(): VmInfo {
    return this.final ?? { ...this.data, stats: this.statsCounters.snapshot() };
  }

  stop(options: StopVmOptions = {}): Promise<VmInfo> {
    if (this.final === undefined) this.stopper(this, options);
    return this.ended;
  }

  /** Freezes the VM's info; `ended` resolves with it. */
  end(): VmInfo {
    this.final = { ...this.data, stats: this.statsCounters.snapshot() };
    this.resolveEnded(this.final);
    return this.final;
  }
}
