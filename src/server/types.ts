// The server's public types: sockets (Listener), VMs (VmHandle, VmInfo) and what they are made from.
import type { FaultAround } from '../serve/fault-around.js';
import type { FcUffdError } from '../errors.js';
import type { HandshakeGeneration } from '../firecracker/handshake.js';
import type { GuestRegion } from '../memory/regions.js';
import type { OnFatal, PeerCredentials, VmEndReason } from '../serve/protocol.js';
import type { WorkingSet } from '../serve/working-set.js';
import type { ServedMemoryFile } from '../snapshot/memfile.js';
import type { ServedChunkedSnapshot } from '../snapshot/chunked-source.js';
import type { StatsSnapshot } from '../serve/stats.js';

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

/**
 * A snapshot a server can serve. Only these two kinds: each has a page source on the fault-loop
 * threads, so the interface they share (ServedSnapshot) is not for users to implement.
 */
export type Snapshot = ServedMemoryFile | ServedChunkedSnapshot;

/** One socket Firecracker connects to, the snapshot it serves, and how its VMs are served. */
export interface ListenOptions {
  /** Unix socket Firecracker's `mem_backend.backend_path` points at (its directory must exist). */
  socketPath: string;
  /**
   * What to serve: `ServedMemoryFile.open()` or `await ServedChunkedSnapshot.open()`. The caller
   * owns it: close it after the listener (or the server) is closed. Many sockets may share one.
   */
  snapshot: Snapshot;
  /** Given to every VM of this socket as `vm.tag`, unless the server's `identify` names it. */
  tag?: string;
  /** Mode of the socket file; 0o600 (default) lets only this user's VMMs connect. */
  socketMode?: number;
  /**
   * What to install around each fault: bytes of an aligned block (4096 disables fault-around), or
   * 'adaptive' (one page for scattered faults, a window growing to 2 MiB for streams). Default 256 KiB.
   */
  faultAround?: FaultAround;
  /** A VM that cannot be served correctly: 'kill' (default) SIGKILLs its VMM, 'hang' leaves it (debugging). */
  onFatal?: OnFatal;
  /** A VMM that connects but sends no handshake within this is refused (default 5000). */
  handshakeTimeoutMs?: number;
  /**
   * Where to write each VM's balloon-removed ranges when it ends (lines `<start> <end>`, snapshot
   * file offsets, end exclusive), for `fc-uffd pack --removed`. `{vm}` and `{pid}` are replaced
   * by the VM's id and its VMM's pid. An existing file is never replaced (the VM's id is added).
   */
  removedRangesPath?: string;
  /** Record each VM's first touches into a working-set file here when it ends ({vm}, {pid} replaced). */
  recordWorkingSetPath?: string;
  /** Record each VM's restore timeline into a trace file here ({vm}, {pid} replaced); see `fc-uffd report`. */
  tracePath?: string;
  /** Install this working set ahead of every VM's guest (refused if recorded against another snapshot). */
  prefetch?: WorkingSet;
  /** Cancels listen() while it runs (rejects with code ABORTED; nothing is left behind). */
  signal?: AbortSignal;
}

/** A socket being listened on; close it to stop accepting new VMs there. */
export interface Listener {
  readonly socketPath: string;
  readonly snapshot: Snapshot;
  readonly tag: string | undefined;
  readonly closed: boolean;
  /** Live VMs that came in on this socket. */
  vms(): VmHandle[];
  /**
   * Stops accepting (the socket file is removed at once, so Firecracker finds none). Its live VMs
   * are served on unless `stopVms`, which stops them and resolves once they ended.
   */
  close(options?: { stopVms?: boolean }): Promise<void>;
}
