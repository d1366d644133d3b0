// The library's entry point. Exports are chosen, not collected: the public types (src/api.ts), the
// server, the snapshot kinds, stores, pack/unpack, working sets, errors and the daemon. Kernel and
// memory internals (uffd records, interval sets, guest memory maps, VM channels, the fault-loop
// thread pool) stay private. The Firecracker emulator for tests is `firecracker-uffd/testing`.
export type * from './api.js';
export { UffdServer, ENDED_VM_HISTORY } from './server/server.js';
export { DEFAULT_FAULT_AROUND_BYTES, DEFAULT_HANDSHAKE_TIMEOUT_MS } from './server/listener.js';
export { createMetrics, serveMetrics } from './server/metrics.js';
export { FcUffdError } from './errors.js';
export { SyscallError } from './kernel/errors.js';
export { createLogger } from './log.js';
export { ServedMemoryFile } from './snapshot/memfile.js';
export { ServedChunkedSnapshot } from './snapshot/chunked-source.js';
export { ChunkCache, sharedChunkCache } from './snapshot/chunk-cache.js';
export { ChunkCodecPool } from './snapshot/chunk-pool.js';
export { pack, unpack, loadManifest, parseRanges } from './snapshot/pack.js';
export { DEFAULT_CHUNK_BYTES, MANIFEST_VERSION } from './snapshot/manifest.js';
export { DirStore } from './store/dir.js';
export { ResilientStore } from './store/resilient.js';
export { StoreError } from './store/types.js';
export { readWorkingSet, writeWorkingSet, mergeWorkingSets, comparePrediction } from './serve/working-set.js';
export { ControlClient } from './client/control-client.js';
export { Daemon } from './daemon/daemon.js';
