import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { chunkKey, manifestKey } from './layout.js';
import { sha256OffThread } from './sha256-thread.js';
import { listManifestIds, StoreError, type ChunkStore, type GetOptions } from './types.js';

export interface DiskCacheOptions {
  /** Cache directory (created if needed); any number of processes may share it. */
  dir: string;
  /** Bytes the entries may take; least recently used entries go beyond it. */
  maxBytes: number;
  /**
   * Checks a chunk blob fetched from the inner store before it is cached (throw to refuse: it is
   * fetched again, never cached). Meant to be cheap (it runs on the main thread on every miss): the
   * content is checked by `verifyChunkContent` when a read of the entry is repeated (see below).
   */
  verifyChunk?: (digest: string, blob: Uint8Array) => void | Promise<void>;
  /**
   * Checks a chunk blob's content against its name (throw to refuse), off the main thread. A
   * chunk's name is the sha256 of its decoded content, not of the blob, so only the chunk codec can
   * check it; the snapshot layer passes a decode on a codec thread (openSnapshotStore, the only
   * opener outside tests). It is the check of a repeated chunk read, and with it chunks are cached
   * without a hash of their payload (`FCUCACH2` entries, see the class comment). Without it, chunks
   * are cached with their hash (`FCUCACH1`) and a repeated read checks that hash only (a `FCUCACH2`
   * entry, which has none, counts as damaged then). Manifests are always cached with their hash
   * and checked on every read (id = sha256).
   */
  verifyChunkContent?: (digest: string, blob: Uint8Array) => Promise<void>;
}

/** Header of an entry holding the sha256 of its payload: manifests, and chunks cached without `verifyChunkContent`. */
const MAGIC_HASHED = Buffer.from('FCUCACH1');
/** Header of a chunk entry cached with `verifyChunkContent`: the 32 bytes after it are reserved (zero, never read). */
const MAGIC_UNHASHED = Buffer.from('FCUCACH2');
const HEADER_BYTES = MAGIC_HASHED.length + 32;
const UNHASHED_HEADER = Buffer.concat([MAGIC_UNHASHED, Buffer.alloc(HEADER_BYTES - MAGIC_UNHASHED.length)]);
/** Eviction brings the total down to this share of the limit, so it does not run on every write. */
const EVICT_TO = 0.9;
/** Temporary files older than this are a crashed writer's: removed by the next scan. */
const STALE_TMP_MS = 3600_000;
/** Fetches of an object whose bytes fail the miss check, before the read fails (integrity, retryable). */
const FETCH_ATTEMPTS = 3;
/**
 * Reads remembered as handed out unchecked (oldest forgotten first). A consumer's retry follows its
 * failed check within milliseconds, thousands of reads sooner than this bound forgets it.
 */
const MAX_UNCHECKED_READS = 65536;

type Kind = 'chunk' | 'manifest';

/**
 * A local disk tier in front of a (remote) store, kept across restarts and shared by processes.
 * It sits above the store's retries and concurrency limit (openStore): a hit never queues behind
 * remote requests, and a miss's fetch is retried and limited like any remote read.
 *
 * - Entry files use the store layout (chunks/ab/<digest>, manifests/<id>.json) and start with a
 *   40-byte header, an 8-byte magic and 32 bytes:
 *   - `FCUCACH1` + the payload's sha256: manifests, chunks cached without `verifyChunkContent`,
 *     and chunks cached by earlier versions.
 *   - `FCUCACH2` + 32 reserved bytes (zero, never compared with anything): chunks cached with
 *     `verifyChunkContent` (always, in production). Their payload is not hashed on the way in:
 *     every consumer of a chunk verifies it anyway, and a repeated read checks it with
 *     `verifyChunkContent`, which checks more than a hash of the blob would (the decoded content
 *     against the chunk's name). Hashing it cost every miss a whole-blob sha256 (~56 ms of CPU per
 *     cold restore of the 128 MiB benchmark guest).
 *   An older fc-uffd sharing the directory knows only `FCUCACH1`: it takes a `FCUCACH2` entry for
 *   a damaged one, deletes it and fetches the chunk again. Decided: one extra fetch per entry while
 *   versions are mixed on a host, against a hash of every chunk on every miss.
 * - A manifest's read checks its hash, and that the hash is its id; a mismatch (a torn disk, bit
 *   rot, a foreign file) deletes the entry and fetches the manifest again, never serves it.
 * - A chunk's read, whole or ranged (a v2 chunk's frame), is served unchecked (an entry without a
 *   known magic is still dropped): the consumer checks what it reads (every chunk consumer
 *   decodes and verifies against the manifest's hashes) and, when the check fails, reads the same
 *   bytes once more. Hashing every whole read here as well cost a restore from a warm cache the
 *   sha256 of every chunk (~60 ms of CPU for the 128 MiB benchmark guest) for nothing. So the cache
 *   remembers reads it handed out unchecked; a repeat of one (same object, same range, or whole)
 *   first checks the whole entry (a `FCUCACH1` entry's hash, then `verifyChunkContent`), and a
 *   damaged entry is deleted and the read goes to the inner store. A consumer thus never gets the
 *   same unchecked cached bytes twice in a row, and a damaged entry is gone after the first failed
 *   check.
 * - A miss runs only the cheap `verifyChunk` (a blob's structure) before caching. The decode that
 *   would check a chunk's content is not repeated here: the consumer decodes and verifies the same
 *   bytes anyway, and its retry makes the cache check and drop a blob that fails (above).
 * - Writes go to DIR/tmp and are renamed into place: readers in any process see a whole entry or
 *   none, and two processes filling the same entry both succeed (the bytes are the same).
 * - Recency is the entry's mtime, bumped on every hit: per file, atomic, shared by all processes
 *   and kept across restarts without an index that would need locking and could itself be torn.
 *   atime is not used because relatime/noatime mounts do not keep it. Eviction stats every entry
 *   (a 10 GiB cache of 4 MiB chunks is ~2,500 files) and removes the oldest; a reader that still
 *   has an evicted file open reads it whole, one that opens it after sees a miss.
 * - A ranged miss goes to the inner store and is not cached (a part cannot be verified).
 */
export class DiskCacheStore implements ChunkStore {
  hits = 0;
  misses = 0;
  /** Entries found damaged on disk (deleted and fetched again). */
  corruptEntries = 0;
  evictedEntries = 0;
  /** Whole-entry checks made because a read was repeated (for tests and stats). */
  repeatChecks = 0;
  private approxBytes = 0;
  private evicting: Promise<void> | undefined;
  /** Entries being written after their bytes were handed out, by file (a read of one waits; so does close). */
  private readonly writes = new Map<string, Promise<void>>();
  /** Reads (kind:name[@offset+length]) whose bytes were handed out without a content check. */
  private readonly unchecked = new Set<string>();

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
  manifestIdsWithPrefix(prefix: string): Promise<string[]> {
    return listManifestIds(this.inner, prefix);
  }
  async close(): Promise<void> {
    await Promise.all(this.writes.values());
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
    options?.signal?.throwIfAborted();
    const file = this.entryPath(kind, name);
    const range = options?.range;
    const read = range ? `${kind}:${name}@${range.offset}+${range.length}` : `${kind}:${name}`;
    // The same bytes asked for again after an unchecked hand-out: the consumer's check may have
    // failed on them, so they are checked this time (whole entry, content included).
    const repeat = this.unchecked.delete(read);
    if (repeat) this.repeatChecks++;
    await this.writes.get(file); // an entry this process is writing is read once written, not fetched again
    const cached =
      (kind === 'chunk' || range) && !repeat ? await this.readUnchecked(file, range) : await this.readWhole(kind, name, file, repeat);
    if (cached) {
      this.hits++;
      const now = new Date();
      fsp.utimes(file, now, now).catch(() => undefined); // recency; a lost race with eviction is harmless
      // A manifest's whole read is checked in full (its id is its hash); a chunk's content is not.
      if (!repeat && (range || kind === 'chunk')) this.handedOutUnchecked(read);
      return range && repeat
        ? cached.subarray(Math.min(range.offset, cached.length), Math.min(range.offset + range.length, cached.length))
        : cached;
    }
    this.misses++;
    const fetch = (): Promise<Uint8Array> =>
      kind === 'chunk' ? this.inner.getChunk(name, options) : this.inner.getManifest(name, options);
    if (range) return fetch();
    for (let attempt = 1; ; attempt++) {
      const bytes = await fetch();
      try {
        await this.verifyFetched(kind, name, bytes);
      } catch (err) {
        if (attempt >= FETCH_ATTEMPTS) throw err;
        continue;
      }
      if (kind === 'chunk') this.handedOutUnchecked(read);
      // Bytes in shared memory go to the caller at once and are cached behind its back: the hash
      // thread and the file write only read them (so does every consumer). Hashing and writing a
      // chunk took several ms on every miss's path before its decode could start. Other bytes
      // would be moved to the hash thread (and detached here) until it answers, so they wait.
      if (bytes.buffer instanceof SharedArrayBuffer) {
        const write = this.writeEntry(kind, file, bytes).then(
          () => undefined,
          () => undefined, // the hash thread failed: the cache is an optimisation, the read is served
        );
        this.writes.set(file, write);
        void write.finally(() => this.writes.delete(file));
        return bytes;
      }
      return await this.writeEntry(kind, file, bytes);
    }
  }

  private handedOutUnchecked(read: string): void {
    this.unchecked.add(read);
    if (this.unchecked.size > MAX_UNCHECKED_READS) this.unchecked.delete(this.unchecked.values().next().value!);
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

  /**
   * The entry's payload, or only `range` of it (short at its end), in shared memory (a codec thread
   * reads it without a copy); undefined for a miss (absent, or not a cache entry and now deleted).
   * Unchecked: see the class comment.
   */
  private async readUnchecked(file: string, range: { offset: number; length: number } | undefined): Promise<Uint8Array | undefined> {
    const fh = await this.openEntry(file);
    if (!fh) return undefined;
    let head: Buffer;
    let out: Buffer;
    try {
      head = Buffer.alloc(HEADER_BYTES);
      const length = range?.length ?? Math.max(0, (await fh.stat()).size - HEADER_BYTES);
      out = Buffer.from(new SharedArrayBuffer(length));
      const [h, got] = await Promise.all([fh.read(head, 0, HEADER_BYTES, 0), readFully(fh, out, HEADER_BYTES + (range?.offset ?? 0))]);
      if (h.bytesRead === HEADER_BYTES && entryFormat(head) && (range || got === length)) return out.subarray(0, got);
    } catch (err) {
      throw new StoreError('io', `cannot read cache entry ${file}: ${(err as Error).message}`, false, err);
    } finally {
      await fh.close();
    }
    await this.drop(file);
    return undefined;
  }

  /**
   * The whole payload, checked (see verifiedPayload), or undefined for a miss (absent, or damaged
   * and now deleted). `content`: a chunk's content is checked too.
   */
  private async readWhole(kind: Kind, name: string, file: string, content: boolean): Promise<Uint8Array | undefined> {
    const fh = await this.openEntry(file);
    if (!fh) return undefined;
    const head = Buffer.alloc(HEADER_BYTES);
    let payload: Uint8Array;
    try {
      const { size } = await fh.stat();
      // The payload in a buffer of its own (not a pooled slice): the hash thread takes it without a copy.
      payload = new Uint8Array(Math.max(0, size - HEADER_BYTES));
      const [h, p] = await Promise.all([fh.read(head, 0, HEADER_BYTES, 0), readFully(fh, payload, HEADER_BYTES)]);
      if (h.bytesRead < HEADER_BYTES || p < payload.length) payload = new Uint8Array(0); // shrank under us: damaged
    } catch (err) {
      throw new StoreError('io', `cannot read cache entry ${file}: ${(err as Error).message}`, false, err);
    } finally {
      await fh.close();
    }
    const format = entryFormat(head);
    const bytes = format && (await this.verifiedPayload(kind, name, format, head, payload, content));
    if (bytes) return bytes;
    await this.drop(file);
    return undefined;
  }

  /**
   * The payload if the entry is what its name says, else undefined; use the returned buffer (a
   * hashed payload went to the hash thread and back). A manifest needs its hash, and that to be its
   * id. A chunk needs its hash if it has one, and with `content` also `verifyChunkContent`, which
   * is all a `FCUCACH2` entry can be checked with.
   */
  private async verifiedPayload(
    kind: Kind,
    name: string,
    format: EntryFormat,
    head: Buffer,
    payload: Uint8Array,
    content: boolean,
  ): Promise<Uint8Array | undefined> {
    let bytes = payload;
    if (format === 'hashed') {
      const hashed = await sha256OffThread(payload);
      bytes = hashed.bytes;
      if (!hashed.digest.equals(head.subarray(MAGIC_HASHED.length))) return undefined;
      if (kind === 'manifest') return hashed.digest.toString('hex') === name ? bytes : undefined;
      if (!content || !this.o.verifyChunkContent) return bytes;
    } else if (kind === 'manifest' || !this.o.verifyChunkContent) {
      return undefined;
    }
    try {
      await this.o.verifyChunkContent(name, bytes);
      return bytes;
    } catch {
      return undefined;
    }
  }

  private async openEntry(file: string): Promise<fsp.FileHandle | undefined> {
    try {
      return await fsp.open(file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StoreError('io', `cannot read cache entry ${file}: ${(err as Error).message}`, false, err);
    }
  }

  /** A damaged entry: deleted (the read goes to the inner store). */
  private async drop(file: string): Promise<void> {
    this.corruptEntries++;
    await fsp.rm(file, { force: true });
  }

  /**
   * Caches `payload`: a chunk as `FCUCACH2` when there is `verifyChunkContent`, anything else with
   * its hash (computed off the main thread). Returns the bytes to use (a hashed payload went to the
   * hash thread and back).
   */
  private async writeEntry(kind: Kind, file: string, payload: Uint8Array): Promise<Uint8Array> {
    let header = UNHASHED_HEADER;
    let bytes = payload;
    if (kind === 'manifest' || !this.o.verifyChunkContent) {
      const hashed = await sha256OffThread(payload);
      header = Buffer.concat([MAGIC_HASHED, hashed.digest]);
      bytes = hashed.bytes;
    }
    const tmp = path.join(this.o.dir, 'tmp', `${path.basename(file)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}`);
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
      await fsp.writeFile(tmp, [header, bytes], { flag: 'wx' });
      await fsp.rename(tmp, file);
    } catch {
      // The cache is an optimisation: a full or read-only disk must not fail the read.
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      return bytes;
    }
    this.approxBytes += HEADER_BYTES + bytes.byteLength;
    if (this.approxBytes > this.o.maxBytes && !this.evicting) this.evicting = this.evict().finally(() => (this.evicting = undefined));
    return bytes;
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

type EntryFormat = 'hashed' | 'unhashed';

/** An entry header's format by its magic, or undefined for a file that is not a cache entry. */
function entryFormat(head: Buffer): EntryFormat | undefined {
  const magic = head.subarray(0, MAGIC_HASHED.length);
  return magic.equals(MAGIC_HASHED) ? 'hashed' : magic.equals(MAGIC_UNHASHED) ? 'unhashed' : undefined;
}

function sha256(data: Uint8Array): Buffer {
  return crypto.createHash('sha256').update(data).digest();
}

/** Reads into all of `into` from `position` (fewer only at the end of the file); returns the bytes read. */
async function readFully(fh: fsp.FileHandle, into: Uint8Array, position: number): Promise<number> {
  let got = 0;
  while (got < into.length) {
    const { bytesRead } = await fh.read(into, got, into.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}
