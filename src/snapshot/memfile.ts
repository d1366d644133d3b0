import crypto from 'node:crypto';
import fs from 'node:fs';
import { POSIX_FADV_WILLNEED, SEEK_DATA, SEEK_HOLE } from '../kernel/constants.js';
import { ERRNO, errnoName } from '../kernel/errors.js';
import { native, type Mapping } from '../kernel/native.js';
import { FcUffdError } from '../errors.js';
import { CLASS_GRANULE_BYTES, PAGE_ZERO, PageClassMap, type PageSource, type SourceSpan } from '../memory/source.js';
import { registerSnapshotKind, type ServedSnapshot, type SnapshotRef } from '../memory/snapshot.js';
import { startZeroScan, type ZeroScan } from './zero-scan.js';

/** What a VM worker needs to serve from a raw memory file (structured-clonable). */
export interface MemoryFileRef {
  readonly kind: 'memfile';
  readonly path: string;
  /** An fd of the main thread's open file: workers share the process's fd table. */
  readonly fd: number;
  readonly sizeBytes: number;
  readonly classMap: SharedArrayBuffer;
}

/** Pages hashed into a memory file's identity. */
const IDENTITY_SAMPLES = 1024;

/**
 * A Firecracker memory file (the regions concatenated; holes read as zero), opened once per
 * process and shared by every VM restored from it. It keeps a map of which 4 KiB pages are zero so
 * faults on them are answered with UFFDIO_ZEROPAGE (no host memory until the guest writes): holes
 * are known at once from SEEK_DATA/SEEK_HOLE, zero-filled data pages as a background scan reaches
 * them. A page not scanned yet is simply copied: correct, only less frugal.
 */
export class MemoryFile {
  readonly classes: PageClassMap;
  /**
   * `memfile:<size>:<sha256 of 1024 pages sampled evenly>`: cheap at open (no full read of a
   * multi-GiB file), and two different snapshots share it only if they agree on every sampled
   * page. It guards working sets against being replayed on the wrong snapshot, where the cost of
   * a collision is a worse prediction, never wrong memory.
   */
  readonly identity: string;
  private scanning: ZeroScan | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly fd: number,
    readonly sizeBytes: number,
  ) {
    this.classes = PageClassMap.forSize(sizeBytes);
    const hash = crypto.createHash('sha256');
    const page = Buffer.alloc(CLASS_GRANULE_BYTES);
    const pages = Math.floor(sizeBytes / CLASS_GRANULE_BYTES);
    for (let i = 0; i < IDENTITY_SAMPLES && i < pages; i++) {
      const n = fs.readSync(
        fd,
        page,
        0,
        CLASS_GRANULE_BYTES,
        Math.floor((i * pages) / Math.min(IDENTITY_SAMPLES, pages)) * CLASS_GRANULE_BYTES,
      );
      hash.update(page.subarray(0, n));
    }
    this.identity = `memfile:${sizeBytes}:${hash.digest('hex').slice(0, 32)}`;
  }

  static open(path: string): MemoryFile {
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDONLY); // libuv opens with O_CLOEXEC;
    } catch (err) {
      throw new FcUffdError('SNAPSHOT_OPEN', `cannot open memory file ${path}: ${(err as Error).message}`);
    }
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      fs.closeSync(fd);
      throw new FcUffdError('SNAPSHOT_OPEN', `memory file ${path} is not a regular file`);
    }
    if (st.size === 0) {
      fs.closeSync(fd);
      throw new FcUffdError('SNAPSHOT_EMPTY', `memory file ${path} is empty`);
    }
    const file = new MemoryFile(path, fd, st.size);
    file.markHoles();
    return file;
  }

  ref(): MemoryFileRef {
    return { kind: 'memfile', path: this.path, fd: this.fd, sizeBytes: this.sizeBytes, classMap: this.classes.buffer };
  }

  /** Marks every hole as zero and every data extent as unknown, from the filesystem's extent map. */
  private markHoles(): void {
    let offset = 0;
    while (offset < this.sizeBytes) {
      const data = native.lseek(this.fd, offset, SEEK_DATA);
      if (data === -ERRNO.ENXIO) {
        // No data after `offset`: the rest is a hole.
        this.markZeroAligned(offset, this.sizeBytes);
        return;
      }
      if (data < 0) return; // The filesystem cannot tell: everything stays unknown (copied).
      this.markZeroAligned(offset, data);
      const hole = native.lseek(this.fd, data, SEEK_HOLE);
      if (hole < 0) return;
      offset = hole;
    }
  }

  /** Marks the whole 4 KiB pages inside [start, end) as zero. */
  private markZeroAligned(start: number, end: number): void {
    const first = Math.ceil(start / CLASS_GRANULE_BYTES) * CLASS_GRANULE_BYTES;
    const last = Math.floor(end / CLASS_GRANULE_BYTES) * CLASS_GRANULE_BYTES;
    if (last > first) this.classes.mark(first, last - first, PAGE_ZERO);
  }

  /** Classifies every unknown page by reading it, off the fault path (zero-scan.ts: its own thread, at idle priority). */
  scan(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.scanning ??= startZeroScan(this.fd, this.sizeBytes, this.classes.buffer);
    return this.scanning.done;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.scanning?.stop();
    fs.closeSync(this.fd);
  }
}

/**
 * The fault loop's view of a memory file inside a VM worker: UFFDIO_COPY straight from a read-only
 * mapping (one copy, from the page cache), zero knowledge from the shared class map.
 */
export class MemoryFileSource implements PageSource {
  readonly sizeBytes: number;
  readonly wakeFd = -1;
  private readonly fd: number;
  private readonly mapping: Mapping;
  private readonly classes: PageClassMap;

  constructor(ref: MemoryFileRef) {
    this.sizeBytes = ref.sizeBytes;
    this.fd = ref.fd;
    this.classes = new PageClassMap(ref.classMap);
    const m = native.mapFile(ref.fd, ref.sizeBytes);
    if (typeof m === 'number') throw new FcUffdError('SNAPSHOT_OPEN', `mmap of memory file ${ref.path} failed: ${errnoName(-m)}`);
    this.mapping = m;
  }

  isZero(fileOffset: number, len: number): boolean {
    return this.classes.isZero(fileOffset, len);
  }

  span(fileOffset: number): SourceSpan {
    return { src: this.mapping, srcOffset: fileOffset };
  }

  prepare(fileOffset: number, len: number): void {
    // Reads ahead asynchronously; on a warm page cache this is a few lookups.
    native.fadvise(this.fd, fileOffset, len, POSIX_FADV_WILLNEED);
  }

  onWake(): void {}

  close(): void {
    native.unmapFile(this.mapping);
  }
}

/** A raw Firecracker memory file as a ServedSnapshot. */
export class ServedMemoryFile implements ServedSnapshot {
  private constructor(private readonly file: MemoryFile) {}

  static open(path: string): ServedMemoryFile {
    return new ServedMemoryFile(MemoryFile.open(path));
  }

  get description(): string {
    return this.file.path;
  }

  get identity(): string {
    return this.file.identity;
  }

  get sizeBytes(): number {
    return this.file.sizeBytes;
  }

  ready(): Promise<void> {
    return this.file.scan();
  }

  attachVm(): SnapshotRef {
    return this.file.ref();
  }

  detachVm(): void {}

  close(): void {
    this.file.close();
  }
}

registerSnapshotKind<MemoryFileRef>('memfile', (ref) => new MemoryFileSource(ref));
