import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { makeDirs, makeDirsAsync, writeFailureReason } from '../atomic-write.js';
import { removeStaleTemps, trackTemp, untrackTemp } from '../temp-files.js';
import { checkDigestName, StoreError, type ChunkStore, type GetOptions } from './types.js';

/** errno codes that a later try may not hit (resource exhaustion, interrupted I/O). */
const TRANSIENT = new Set(['EAGAIN', 'EINTR', 'EMFILE', 'ENFILE', 'EBUSY', 'ETIMEDOUT', 'EIO']);

export interface DirStoreOptions {
  /** fsync every object before it is renamed into place (default true: a crash never leaves a torn object). */
  fsync?: boolean;
  /** Create the store when missing (default true). Readers pass false: a mistyped path is an error, not a new empty store. */
  create?: boolean;
}

/**
 * A store in a local directory, shareable by concurrent processes:
 *
 *   DIR/chunks/ab/abcdef…   one file per chunk, named by its digest, fanned out by its first byte
 *   DIR/manifests/<id>.json one file per manifest, named by the digest of its bytes
 *   DIR/tmp/                objects being written
 *
 * Writes go to a unique temporary file that is renamed into place, so a reader sees a whole object
 * or none, and two processes writing the same object both succeed (the bytes are the same).
 */
export class DirStore implements ChunkStore {
  private readonly fsync: boolean;

  private constructor(
    readonly root: string,
    options: DirStoreOptions,
  ) {
    this.fsync = options.fsync ?? true;
  }

  /** Opens (creating if needed) a store rooted at `root`. */
  static open(root: string, options: DirStoreOptions = {}): DirStore {
    if (options.create === false && !fs.existsSync(path.join(root, 'manifests')))
      throw new StoreError(
        'config',
        `no chunk store at ${root} (it has no manifests/ directory; \`fc-uffd pack --store ${root}\` creates one)`,
        false,
      );
    try {
      for (const sub of ['chunks', 'manifests', 'tmp']) makeDirs(path.join(root, sub));
    } catch (err) {
      throw writeError(`cannot create store directory ${root}`, err, root);
    }
    // Objects a writer killed mid-write left behind (named NAME.PID.RANDOM, see writeObject).
    removeStaleTemps(path.join(root, 'tmp'), (name) => {
      const m = /\.(\d+)\.[0-9a-f]{12}$/.exec(name);
      return m ? Number(m[1]) : undefined;
    });
    return new DirStore(root, options);
  }

  get description(): string {
    return `dir:${this.root}`;
  }

  chunkPath(digest: string): string {
    checkDigestName(digest);
    return path.join(this.root, 'chunks', digest.slice(0, 2), digest);
  }

  manifestPath(id: string): string {
    checkDigestName(id);
    return path.join(this.root, 'manifests', `${id}.json`);
  }

  async manifestIdsWithPrefix(prefix: string): Promise<string[]> {
    const names = await fsp.readdir(path.join(this.root, 'manifests'));
    return names.filter((n) => n.startsWith(prefix) && n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length));
  }

  hasChunk(digest: string): Promise<boolean> {
    return exists(this.chunkPath(digest));
  }

  getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
    return readObject(this.chunkPath(digest), `chunk ${digest}`, options);
  }

  putChunk(digest: string, data: Uint8Array): Promise<void> {
    return this.writeObject(this.chunkPath(digest), data);
  }

  hasManifest(id: string): Promise<boolean> {
    return exists(this.manifestPath(id));
  }

  getManifest(id: string, options?: GetOptions): Promise<Uint8Array> {
    return readObject(this.manifestPath(id), `manifest ${id}`, options);
  }

  putManifest(id: string, data: Uint8Array): Promise<void> {
    return this.writeObject(this.manifestPath(id), data);
  }

  async close(): Promise<void> {}

  private async writeObject(target: string, data: Uint8Array): Promise<void> {
    if (await exists(target)) return;
    const tmp = path.join(this.root, 'tmp', `${path.basename(target)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}`);
    try {
      await makeDirsAsync(path.dirname(target));
      trackTemp(tmp);
      const fh = await fsp.open(tmp, 'wx', 0o444);
      try {
        await fh.writeFile(data);
        if (this.fsync) await fh.datasync();
      } finally {
        await fh.close();
      }
      // rename(2) replaces atomically: a concurrent writer of the same name wrote the same bytes.
      await fsp.rename(tmp, target);
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      // The object's name, not the temp file's: that one is gone and means nothing to an operator.
      throw writeError(`cannot write ${target}`, err, this.root);
    } finally {
      untrackTemp(tmp);
    }
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw ioError(`cannot check ${p}`, err);
  }
}

async function readObject(p: string, what: string, options?: GetOptions): Promise<Uint8Array> {
  options?.signal?.throwIfAborted();
  try {
    if (!options?.range) return await fsp.readFile(p, options?.signal ? { signal: options.signal } : {});
    const fh = await fsp.open(p, 'r');
    try {
      const buf = Buffer.alloc(options.range.length);
      const { bytesRead } = await fh.read(buf, 0, buf.length, options.range.offset);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new StoreError('not-found', `${what} is not in the store (${p})`, false, err);
    throw ioError(`cannot read ${what} (${p})`, err);
  }
}

/** A failed write in the store at `root`, said as a reason (read-only, permission, space) that names no temp file. */
function writeError(message: string, err: unknown, root: string): StoreError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return new StoreError('io', `${message}: ${writeFailureReason(err, root)}${code ? ` (${code})` : ''}`, TRANSIENT.has(code), err);
}

function ioError(message: string, err: unknown): StoreError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return new StoreError('io', `${message}: ${(err as Error).message}`, TRANSIENT.has(code), err);
}
