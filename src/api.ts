// The library's public types, in one place: what src/index.ts exports is exactly this plus the
// classes and functions it names. Every type a public signature uses is here; anything else under
// src/ is internal and may change freely.
export type { UffdServerOptions, ServerOptions, UffdServerEvents, ServerHealth } from './server/server.js';
export type { ListenOptions, Listener, Snapshot, VmHandle, VmInfo, VmState, StopVmOptions } from './server/types.js';
export type { TypedEmitter, EventArgs } from './server/typed-emitter.js';
export type { HandshakeGeneration } from './firecracker/handshake.js';
export type { ErrorCode } from './errors.js';
export type { GuestRegion } from './memory/regions.js';
export type { OnFatal, VmEndReason, PeerCredentials } from './serve/protocol.js';
export type { StatsSnapshot, LatencySummary, CounterName } from './serve/stats.js';
export type { ChunkedSnapshotOptions, ChunkedServeStats } from './snapshot/chunked-source.js';
export type { PackOptions, PackResult, UnpackOptions, UnpackResult, LoadedManifest } from './snapshot/pack.js';
export type { Manifest, ChunkEntry } from './snapshot/manifest.js';
export type { ChunkStore, GetOptions, StoreErrorKind } from './store/types.js';
export type { DirStoreOptions } from './store/dir.js';
export type { ResilienceOptions } from './store/resilient.js';
export type { WorkingSet, Prediction } from './serve/working-set.js';
export type {
  ControlClientOptions,
  ErrorBody,
  HealthInfo,
  RestoreDetail,
  RestoreInfo,
  RestoreRequest,
  RestoreState,
  VmSummary,
} from './client/control-client.js';
export type { DaemonOptions } from './daemon/daemon.js';
