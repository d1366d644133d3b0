import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { chunkKey, manifestKey } from './layout.js';
import { StoreError, type ChunkStore, type GetOptions } from './types.js';

export interface DiskCacheOptions {
  /** Cache directory (created if needed); any number of processes may share it. */
  dir: string;
  /** Bytes the entries may take; least recently used entries go beyond it. */
  maxBytes: number;
  /**
   * Checks a chunk blob fetched from the inner store before it is cached (throw to refuse). A
   * chunk's name is the sha256 of its decoded content, not of the blob, so only the chunk codec
   * can check it; phase 2 passes the blob decoder. Manifests are always checked (id = sha256).
   */
  verifyChunk?: (digest: string, blob: Uint8Array) => void | Promise<void>;
}

const MAGIC = Buffer.from('FCUCACH1');
const HEADER_BYTES = MAGIC.length + 32;
/** Eviction brings the total down to this share of the limit, so it does not run on every write. */
const EVICT_TO = 0.9;
/** Temporary files older than this are a crashed writer's: removed by the next scan. */
const STALE_TMP_MS = 3600_000;

type Kind = 'chunk' | 'manifest';

/**
 * A local disk tier in front of a (remote) store, kept across restarts and shared by processes.
 *
 * - Entry files use the store layout (chunks/ab/<digest>, manifests/<id>.json) and hold a header
 *   with the sha256 of the payload: every read checks it, and a mismatch (a torn disk, bit rot,
 *   a foreign file) deletes the entry and fetches the object again, never serves it.
 * - Writes go to DIR/tmp and are renamed into place: readers in any process see a whole entry or
 *   none, and two processes filling the same entry both succeed (the bytes are the same).
 * - Recency is the entry's mtime, bumped on every hit: per file, atomic, shared by all processes
 *   and kept across restarts without an index that would need locking and could itself be torn.
 *   atime is not used because relatime/noatime mounts do not keep it. Eviction stats every entry
 *   (a 10 GiB cache of 4 MiB chunks is ~2,500 files) and removes the oldest; a reader that still
 *   has an evicted file open reads it whole, one that opens it after sees a miss.
 * - Whole objects only: a ranged read of a cached entry is cut from the verified entry; a ranged
 *   miss goes to the inner store and is not cached (a part cannot be verified).
 */
export class DiskCacheStore implements ChunkStore {
  hits = 0;
  misses = 0;
  /** Entries found damaged on disk (deleted and fetched again). */
  corruptEntries = 0;
  evictedEntries = 0;
  private approxBytes = 0;
  private evicting: Promise<void> | undefined;

  private constructor(
    readonly inner: ChunkStore,
    private readonly o: DiskCacheOptions,
  ) {}

  static async open(inner: ChunkStore, options: DiskCacheOptions): Promise<DiskCacheStore> {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes <= 0)
      throw new StoreError('config', `cache size must be a positive number of bytes, not ${options.maxBytes}`, false);
    try {
      for (const sub of ['chunks', 'manifests', 'tmp']) await fsp.mkdir(path.join(options.dir, sub), { recursive: true });
    } catch (err) {
      throw new StoreError('config', `cannot create cache directory ${options.dir}: ${(err as Error).message}`, false, err);
    }
    const cache = new DiskCacheStore(inner, options);
    cache.approxBytes = (await cache.scan()).reduce((sum, e) => sum + e.sizeBytes, 0);
    if (cache.approxBytes > options.maxBytes) await cache.evict();
    return cache;
  }

  get description(): string {
    return `${this.inner.description} (disk cache ${this.o.dir})`;
  }

  /** Bytes of entries, as this process last counted them (other processes add to it unseen). */
  get sizeBytes(): number {
    return this.approxBytes;
  }

  getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
    return this.get('chunk', digest, options);
  }
  getManifest(id: string, options?: GetOptions): Promise<Uint8Array> {
    return this.get('manifest', id, options);
  }
  async hasChunk(digest: string, options?: GetOptions): Promise<boolean> {
    return (await exists(this.entryPath('chunk', digest))) || this.inner.hasChunk(digest, options);
  }
  async hasManifest(id: string): Promise<boolean> {
    return (await exists(this.entryPath('manifest', id))) || this.inner.hasManifest(id);
  }
  putChunk(digest: string, data: Uint8Array): Promise<void> {
    return this.inner.putChunk(digest, data);
  }
  putManifest(id: string, data: Uint8Array): Promise<void> {
    return this.inner.putManifest(id, data);
  }
  async close(): Promise<void> {
    await this.evicting;
    await this.inner.close();
  }

  /** Drops an entry (a consumer found its content wrong after decoding). */
  async invalidate(kind: Kind, name: string): Promise<void> {
    await fsp.rm(this.entryPath(kind, name), { force: true });
  }

  private entryPath(kind: Kind, name: string): string {
    return path.join(this.o.dir, kind === 'chunk' ? chunkKey(name) : manifestKey(name));
  }

  private async get(kind: Kind, name: string, options?: GetOptions): Promise<Uint8Array> {
    const file = this.entryPath(kind, name);
    const cached = await this.readEntry(file);
    const range = options?.range;
    if (cached) {
      this.hits++;
      const now = new Date();
      fsp.utimes(file, now, now).catch(() => undefined); // recency; a lost race with eviction is harmless
      return range ? cached.subarray(Math.min(range.offset, cached.length), Math.min(range.offset + range.length, cached.length)) : cached;
    }
    this.misses++;
    if (range) return kind === 'chunk' ? this.inner.getChunk(name, options) : this.inner.getManifest(name, options);
    const bytes = kind === 'chunk' ? await this.inner.getChunk(name, options) : await this.inner.getManifest(name, options);
    await this.verifyFetched(kind, name, bytes);
    await this.writeEntry(file, bytes);
    return bytes;
  }

  private async verifyFetched(kind: Kind, name: string, bytes: Uint8Array): Promise<void> {
    try {
      if (kind === 'manifest') {
        const got = sha256(bytes).toString('hex');
        if (got !== name) throw new Error(`its sha256 is ${got}`);
      } else if (this.o.verifyChunk) {
        await this.o.verifyChunk(name, bytes);
      }
    } catch (err) {
      // Retryable: bytes damaged on the way may arrive whole the next time.
      throw new StoreError(
        'integrity',
        `${kind} ${name} from ${this.inner.description} is not what its name says (${(err as Error).message}); not cached`,
        true,
        err,
      );
    }
  }

  /** The verified payload, or undefined for a miss (absent, or damaged and now deleted). */
  private async readEntry(file: string): Promise<Buffer | undefined> {
    let raw: Buffer;
    try {
      raw = await fsp.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StoreError('io', `cannot read cache entry ${file}: ${(err as Error).message}`, false, err);
    }
    const payload = raw.subarray(HEADER_BYTES);
    if (
      raw.length >= HEADER_BYTES &&
      raw.subarray(0, MAGIC.length).equals(MAGIC) &&
      sha256(payload).equals(raw.subarray(MAGIC.length, HEADER_BYTES))
    )
      return payload;
    this.corruptEntries++;
    await fsp.rm(file, { force: true });
    return undefined;
  }

  private async writeEntry(file: string, payload: Uint8Array): Promise<void> {
    const tmp = path.join(this.o.dir, 'tmp', `${path.basename(file)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}`);
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
      await fsp.writeFile(tmp, [MAGIC, sha256(payload), payload], { flag: 'wx' });
      await fsp.rename(tmp, file);
    } catch {
      // The cache is an optimisation: a full or read-only disk must not fail the read.
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      return;
    }
    this.approxBytes += HEADER_BYTES + payload.byteLength;
    if (this.approxBytes > this.o.maxBytes && !this.evicting) this.evicting = this.evict().finally(() => (this.evicting = undefined));
  }

  /** Removes least recently used entries until the cache is at EVICT_TO of its limit. */
  private async evict(): Promise<void> {
    const entries = await this.scan();
    entries.sort((a, b) => a.mtimeMs - b.mtimeMs);
    let total = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
    const target = this.o.maxBytes * EVICT_TO;
    for (const e of entries) {
      if (total <= target) break;
      try {
        await fsp.unlink(e.path);
        this.evictedEntries++;
      } catch {
        // Another process evicted it first.
      }
      total -= e.sizeBytes;
    }
    this.approxBytes = total;
  }

  private async scan(): Promise<Array<{ path: string; sizeBytes: number; mtimeMs: number }>> {
    const out: Array<{ path: string; sizeBytes: number; mtimeMs: number }> = [];
    const add = async (file: string): Promise<void> => {
      const st = await fsp.stat(file).catch(() => undefined);
      if (st?.isFile()) out.push({ path: file, sizeBytes: st.size, mtimeMs: st.mtimeMs });
    };
    const chunks = path.join(this.o.dir, 'chunks');
    for (const fan of await fsp.readdir(chunks).catch(() => []))
      for (const f of await fsp.readdir(path.join(chunks, fan)).catch(() => [])) await add(path.join(chunks, fan, f));
    for (const f of await fsp.readdir(path.join(this.o.dir, 'manifests')).catch(() => [])) await add(path.join(this.o.dir, 'manifests', f));
    const tmp = path.join(this.o.dir, 'tmp');
    for (const f of await fsp.readdir(tmp).catch(() => [])) {
      const st = await fsp.stat(path.join(tmp, f)).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > STALE_TMP_MS) await fsp.rm(path.join(tmp, f), { force: true });
    }
    return out;
  }
}

function sha256(data: Uint8Array): Buffer {
  return crypto.createHash('sha256').update(data).digest();
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}
