import type { Logger } from 'pino';
import type { VmChannel } from '../memory/snapshot.js';
import type { VmStats } from '../serve/stats.js';
import type { SocketListener } from './listener.js';
import type { Listener, StopVmOptions, VmHandle, VmInfo, VmState } from './types.js';
import type { StatsSnapshot } from '../serve/stats.js';

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
    readonly socket: SocketListener,
    readonly log: Logger,
    readonly channel: VmChannel,
    /** The VMM's pidfd (-1: none), shared with the fault-loop thread; closed when the VM ends. */
    readonly pidfd: number,
    private readonly stopper: (vm: Vm, options: StopVmOptions) => void,
  ) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  get listener(): Listener {
    return this.socket;
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
