// The control API's wire shapes (snake_case, as Firecracker's own API), shared by the daemon's
// routes and the typed client. docs/control-api.yaml documents the same shapes.
import type { ErrorCode } from '../errors.js';

/** PUT /restores/{name}: exactly one of `mem` or `snapshot` + `store`. */
export interface RestoreRequest {
  /** A raw Firecracker memory file. */
  mem?: string;
  /** A chunked snapshot: manifest id in `store`, or a manifest file. */
  snapshot?: string;
  /** The chunk store of `snapshot`: a directory, s3://BUCKET/PREFIX or http(s)://HOST/PREFIX (the daemon's store flags apply). */
  store?: string;
  /** The uffd socket: a file name, or a path, directly inside the daemon's sockets dir (default `{name}.sock`). */
  socket?: string;
  /** A working-set file installed ahead of every VM's guest. */
  prefetch?: string;
  /** Record each VM's working set here when it ends (`{vm}`, `{pid}` replaced). */
  record_ws?: string;
  /** Bytes installed per fault, a power of two, 4096 .. 2 MiB; or "adaptive" (one page for scattered faults, a window growing to 2 MiB for sequential ones). */
  fault_around?: number | 'adaptive';
  on_fatal?: 'kill' | 'hang';
  /** Write each VM's balloon-removed ranges here when it ends (`{vm}`, `{pid}` replaced). */
  removed_out?: string;
  handshake_timeout_ms?: number;
  /** Chunked snapshots: chunks fetched ahead of a requested one. */
  prefetch_chunks?: number;
}

export type RestoreState = 'serving' | 'draining';

export interface VmSummary {
  id: string;
  state: 'handshake' | 'serving' | 'ended';
  pid: number;
  uid: number;
  started_at_ms: number;
  end_reason?: string;
  error?: { code: string; message: string };
  stats: {
    faults: number;
    pages_copied: number;
    pages_zeroed: number;
    bytes_copied: number;
    prefetched_pages: number;
    latency_p50_us: number;
    latency_p99_us: number;
  };
}

export interface RestoreInfo {
  name: string;
  state: RestoreState;
  socket: string;
  snapshot: { kind: 'memfile' | 'chunked'; description: string; identity: string; size_bytes: number };
  created_at_ms: number;
  vms_live: number;
  vms_total: number;
}

export interface RestoreDetail extends RestoreInfo {
  vms: VmSummary[];
}

export interface HealthInfo {
  status: 'ok' | 'stopping';
  restores: number;
  vms_live: number;
  loop_threads: number;
  chunk_cache: { capacity_bytes: number; size_bytes: number; chunks: number; hits: number; misses: number; evictions: number };
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}
