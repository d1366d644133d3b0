// The library's public types, in one place: what src/index.ts exports is exactly this plus the
// classes and functions it names. Anything else under src/ is internal and may change freely.
export type { ServerOptions, VmInfo, VmState } from './server/server.js';
export type { Handshake, HandshakeGeneration } from './firecracker/handshake.js';
export type { ErrorCode } from './errors.js';
export type { GuestRegion } from './memory/regions.js';
export type { ServedSnapshot } from './memory/snapshot.js';
export type { OnFatal, VmEndReason, VmErrorInfo, PeerCredentials } from './serve/protocol.js';
export type { StatsSnapshot, LatencySummary } from './serve/stats.js';
export type { ChunkedSnapshotOptions } from './snapshot/chunked-source.js';
export type { PackOptions, PackResult, UnpackOptions, UnpackResult, LoadedManifest } from './snapshot/pack.js';
export type { Manifest, ChunkEntry } from './snapshot/manifest.js';
export type { ChunkStore, GetOptions } from './store/types.js';
export type { WorkingSet, Prediction } from './serve/working-set.js';
export type { ControlClientOptions, ErrorBody, HealthInfo, RestoreDetail, RestoreInfo, RestoreRequest, RestoreState, VmSummary } from './client/control-client.js';
export type { DaemonOptions } from './daemon/daemon.js';
