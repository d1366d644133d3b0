import type { FramedChunkLoad } from './frame-load.js';

/**
 * Decompressed, verified chunks in memory, keyed by digest, bounded in bytes, least recently used
 * evicted first. One cache serves every snapshot and VM of a process (`sharedChunkCache()`), so two
 * VMs restored from one base, or two manifests sharing chunks, hold each chunk once. Values are
 * SharedArrayBuffers: VM workers copy pages from them without a copy to their thread. A worker may
 * still hold a chunk the cache evicted (until it installed that chunk's pages), so the bound is on
 * what the cache keeps, not on every live reference.
 */
export class ChunkCache {
  private readonly entries = new Map<string, SharedArrayBuffer>();
  /** Framed chunks being loaded (frames first, then the whole), shared by every snapshot and VM. */
  private readonly framed = new Map<string, FramedChunkLoad>();
  private readonly loading = new Map<string, Promise<SharedArrayBuffer>>();
  private bytes = 0;
  readonly stats = { hits: 0, misses: 0, evictions: 0, loadsJoined: 0 };

  constructor(readonly capacityBytes: number = DEFAULT_CACHE_BYTES) {}

  get sizeBytes(): number {
    return this.bytes;
  }

  get count(): number {
    return this.entries.size;
  }

  has(digest: string): boolean {
    return this.entries.has(digest);
  }

  isLoading(digest: string): boolean {
    return this.loading.has(digest);
  }

  /** The chunk if cached (marks it most recently used). */
  get(digest: string): SharedArrayBuffer | undefined {
    const v = this.entries.get(digest);
    if (v === undefined) return undefined;
    this.entries.delete(digest);
    this.entries.set(digest, v);
    this.stats.hits++;
    return v;
  }

  /** The chunk, from the cache or by `loader` (one load per digest at a time; failures are not cached). */
  load(digest: string, loader: () => Promise<SharedArrayBuffer>): Promise<SharedArrayBuffer> {
    const v = this.get(digest);
    if (v) return Promise.resolve(v);
    const inflight = this.loading.get(digest);
    if (inflight) {
      this.stats.loadsJoined++;
      return inflight;
    }
    this.stats.misses++;
    const forget = (): void => {
      if (this.loading.get(digest) === p) this.loading.delete(digest);
    };
    const p: Promise<SharedArrayBuffer> = loader().then(
      (buf) => {
        forget();
        this.put(digest, buf);
        return buf;
      },
      (err: unknown) => {
        forget();
        throw err;
      },
    );
    this.loading.set(digest, p);
    return p;
  }

  /**
   * The framed load of `digest` under way, or a new one from `create`: one ranged read per frame
   * however many VMs want it. A new load's ranged read of `firstFrame` goes out before its whole
   * read (`signal`: the wanting VM's, see FramedChunkLoad.frame). It is forgotten once its whole
   * chunk is cached or failed.
   */
  framedLoad(digest: string, create: () => FramedChunkLoad, firstFrame?: number, signal?: AbortSignal): FramedChunkLoad {
    let f = this.framed.get(digest);
    // An abandoned load (every VM that joined it ended) is being aborted, a failed one is done: a
    // new want starts afresh (a failed load is forgotten a moment after it fails, not at once).
    if (f === undefined || f.abandoned || f.failed) {
      if (f) this.loading.delete(digest);
      const created = create();
      if (firstFrame !== undefined) void created.frame(firstFrame, signal).catch(() => undefined);
      f = created;
      this.framed.set(digest, created);
      const forget = (): void => {
        if (this.framed.get(digest) === created) this.framed.delete(digest);
      };
      this.load(digest, () => created.whole()).then(forget, forget);
    }
    return f;
  }

  put(digest: string, buf: SharedArrayBuffer): void {
    if (this.entries.has(digest)) return;
    if (buf.byteLength > this.capacityBytes) return;
    this.entries.set(digest, buf);
    this.bytes += buf.byteLength;
    for (const [k, b] of this.entries) {
      if (this.bytes <= this.capacityBytes) break;
      this.entries.delete(k);
      this.bytes -= b.byteLength;
      this.stats.evictions++;
    }
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}

export const DEFAULT_CACHE_BYTES = 1024 * 1024 * 1024;

let shared: ChunkCache | undefined;

/** The process-wide cache every ServedChunkedSnapshot uses unless given its own. */
export function sharedChunkCache(): ChunkCache {
  shared ??= new ChunkCache();
  return shared;
}
