import { native } from '../kernel/native.js';
import { chunkKey, checkContentRange, checkRange, manifestKey } from './layout.js';
import { readPriority } from './read-priority.js';
import { StoreError, type ChunkStore, type GetOptions } from './types.js';

/** A ranged read: bytes [offset, offset + length), length > 0 by the time a backend sees it. */
export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * The ChunkStore part of every store over named objects (HTTP, S3): chunks and manifests are
 * objects at layout.ts's keys, and a ranged read's rules (checked, an empty range still says
 * whether the object is there) are the same everywhere. A backend supplies only what differs: how
 * to head, get and put one key, and its own wording for a missing object.
 */
export abstract class ObjectStore implements ChunkStore {
  abstract readonly description: string;

  /** Whether the object at `key` exists. */
  protected abstract headObject(key: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * The object's bytes, or `range` of them (never empty; a range past the end reads as empty).
   * `what` names the object for a not-found message ("chunk <digest>").
   */
  protected abstract getObject(key: string, what: string, range: ByteRange | undefined, read: BodyRead): Promise<Uint8Array>;
  /** Stores `data` at `key`; an existing object (same name, same bytes) is left alone. */
  protected abstract putObject(key: string, data: Uint8Array): Promise<void>;
  /** The error for a missing object found by a HEAD (an empty ranged read of it). */
  protected abstract notFound(key: string, what: string): StoreError;
  abstract close(): Promise<void>;

  hasChunk(digest: string, options?: GetOptions): Promise<boolean> {
    return this.headObject(chunkKey(digest), options?.signal);
  }
  getChunk(digest: string, options?: GetOptions): Promise<Uint8Array> {
    return this.get(chunkKey(digest), `chunk ${digest}`, options);
  }
  putChunk(digest: string, data: Uint8Array): Promise<void> {
    return this.putObject(chunkKey(digest), data);
  }
  hasManifest(id: string): Promise<boolean> {
    return this.headObject(manifestKey(id));
  }
  getManifest(id: string, options?: GetOptions): Promise<Uint8Array> {
    return this.get(manifestKey(id), `manifest ${id}`, options);
  }
  putManifest(id: string, data: Uint8Array): Promise<void> {
    return this.putObject(manifestKey(id), data);
  }

  private async get(key: string, what: string, options?: GetOptions): Promise<Uint8Array> {
    const range = options?.range;
    if (range) checkRange(range);
    if (range?.length === 0) {
      // No HTTP range means zero bytes; still say whether the object is there.
      if (!(await this.headObject(key, options?.signal))) throw this.notFound(key, what);
      return new Uint8Array(0);
    }
    const read: BodyRead = options?.signal ? { signal: options.signal } : {};
    if (options?.background) {
      // At most HEAD_START_MS; an abort meanwhile is seen by the read itself.
      await readPriority.headStart();
      return this.getObject(key, what, range, { ...read, background: true });
    }
    const done = readPriority.begin();
    try {
      return await this.getObject(key, what, range, read);
    } finally {
      done();
    }
  }
}

/** How one GET's body is read: its abort signal, and whether a fault waits for it. */
export interface BodyRead {
  signal?: AbortSignal;
  /** No fault waits for it: a backend takes its body in off the main thread where it can (the remote stores' body thread). */
  background?: boolean;
}

/**
 * Checks a 206 answer's Content-Range and Content-Length against the range asked for. Returns the
 * byte count the body must have, or an error text for the backend to prefix with its operation.
 */
export function rangedAnswerLength(contentRange: string | undefined, contentLength: number | undefined, range: ByteRange): number | string {
  const want = checkContentRange(contentRange, range);
  if (typeof want === 'string') return want;
  if (contentLength !== undefined && contentLength !== want)
    return `Content-Length ${contentLength} disagrees with Content-Range ${contentRange}`;
  return want;
}

/**
 * A body of `expected` bytes read into shared memory (a SharedArrayBuffer), piece by piece as the
 * HTTP client hands them over: a codec thread reads a chunk's frames straight from it (a view of
 * shared memory crosses to a thread without a copy), where an ArrayBuffer would be copied once
 * more per frame on the main thread, which drives every store read of every VM. Exactly
 * `expected` bytes or an integrity error, its message led by `where`.
 */
export class SharedBody {
  private readonly out: Buffer;
  private got = 0;

  constructor(
    private readonly expected: number,
    private readonly where: string,
  ) {
    this.out = Buffer.from(new SharedArrayBuffer(expected));
  }

  /** Takes `piece` in; an integrity error (thrown) once the body runs past the length announced. */
  add(piece: Uint8Array): void {
    if (this.got + piece.length > this.expected)
      throw new StoreError('integrity', `${this.where}: body longer than the ${this.expected} bytes announced`, true);
    native.copyBytes(this.out, this.got, piece);
    this.got += piece.length;
  }

  /** The whole body; an integrity error (thrown) if it ended short. */
  end(): Buffer {
    if (this.got !== this.expected)
      throw new StoreError('integrity', `${this.where}: body truncated: ${this.got} of ${this.expected} bytes`, true);
    return this.out;
  }
}

/** The asked-for part of a whole object: what a server (or a cache before it) that ignores Range sent. */
export function sliceOfWhole(whole: Uint8Array, range: ByteRange | undefined): Uint8Array {
  return range ? whole.subarray(Math.min(range.offset, whole.length), Math.min(range.offset + range.length, whole.length)) : whole;
}
