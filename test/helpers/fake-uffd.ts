// A fake uffd and page source for unit tests of the fault loop and its parts: the kernel's side
// modelled (which pages are mapped, with what first byte), no kernel involved. UffdOps
// (src/kernel/uffd.ts) is the seam.
import assert from 'node:assert/strict';
import { SPAN_BOUNDARY_BYTES, type FetchAhead, type PageSource, type SourceSpan } from '../../src/memory/source.js';
import type { UffdOps } from '../../src/kernel/uffd.js';
import type { CopySource } from '../../src/kernel/native.js';
import { ERRNO } from '../../src/kernel/errors.js';
import { UFFD_EVENT_PAGEFAULT, UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP } from '../../src/kernel/constants.js';

export const PS = 4096;
export const HOST = 0x7f00_0000_0000;

/** A source whose page p holds the byte value (p % 250) + 1, except the listed zero pages. */
export class FakeSource implements PageSource {
  readonly wakeFd = -1;
  readonly data: Uint8Array;
  constructor(
    readonly sizeBytes: number,
    readonly zeroPages = new Set<number>(),
  ) {
    this.data = new Uint8Array(sizeBytes);
    for (let p = 0; p < sizeBytes / PS; p++) if (!zeroPages.has(p)) this.data.fill((p % 250) + 1, p * PS, (p + 1) * PS);
  }
  isZero(off: number, len: number): boolean {
    for (let p = off / PS; p < (off + len) / PS; p++) if (!this.zeroPages.has(p)) return false;
    return true;
  }
  /** When set, bytes are "still being fetched" until arrive(): span() answers undefined. */
  fetching = false;
  readonly prepared: Array<[number, number]> = [];
  span(off: number, len: number): SourceSpan | undefined {
    assert.ok((off % SPAN_BOUNDARY_BYTES) + len <= SPAN_BOUNDARY_BYTES, `span [${off}, +${len}) crosses a 2 MiB boundary`);
    return this.fetching ? undefined : { src: this.data, srcOffset: off };
  }
  prepare(off: number, len: number): void {
    this.prepared.push([off, len]);
  }
  /** Set to act as a source that fetches from far away (PageSource.fetchAhead). */
  fetchAhead?: FetchAhead;
  onWake(): void {}
  close(): void {}
}

export type Call = { op: 'copy' | 'zeropage' | 'wake'; dst: number; len: number; wake?: boolean };

/** The kernel's side, modelled: which pages are mapped and with what first byte. */
export class FakeUffd implements UffdOps {
  readonly mapped = new Map<number, number>();
  readonly calls: Call[] = [];
  /** Errnos returned by the next install ioctls, in order (null: behave normally), then normal. */
  script: Array<number | null> = [];
  /** Host pages every install refuses with this errno (ENOENT: the VMM unmapped them meanwhile). */
  readonly refuse = new Map<number, number>();
  /**
   * The kernel's UFFDIO_COPY into hugetlbfs with the huge page pool empty (Linux 6.18): EEXIST for a
   * page that is not mapped, and nothing installed.
   */
  poolEmpty = false;

  private fill(dst: number, len: number, byteAt: (i: number) => number): number {
    const next = this.script.shift();
    if (next !== undefined && next !== null) return -next;
    let done = 0;
    while (done < len) {
      // As the kernel does: progress before a refused page is reported first, the error on the next call.
      const refused = this.refuse.get(dst + done);
      if (refused !== undefined) return done > 0 ? done : -refused;
      if (this.mapped.has(dst + done) || this.poolEmpty) return done > 0 ? done : -ERRNO.EEXIST;
      this.mapped.set(dst + done, byteAt(done));
      done += PS;
    }
    return done;
  }
  copy(dst: number, src: CopySource, srcOffset: number, len: number, wake: boolean): number {
    this.calls.push({ op: 'copy', dst, len, wake });
    const bytes = src as Uint8Array;
    return this.fill(dst, len, (i) => bytes[srcOffset + i]!);
  }
  zeropage(dst: number, len: number, wake: boolean): number {
    this.calls.push({ op: 'zeropage', dst, len, wake });
    return this.fill(dst, len, () => 0);
  }
  wake(start: number, len: number): number {
    this.calls.push({ op: 'wake', dst: start, len });
    return 0;
  }
  unregister(): number {
    return 0;
  }
}

export function events(list: Array<{ fault?: number; remove?: [number, number]; unmap?: boolean }>): DataView {
  const buf = Buffer.alloc(32 * list.length);
  list.forEach((e, i) => {
    if (e.fault !== undefined) {
      buf.writeUInt8(UFFD_EVENT_PAGEFAULT, i * 32);
      buf.writeBigUInt64LE(BigInt(e.fault), i * 32 + 16);
    } else if (e.remove) {
      buf.writeUInt8(UFFD_EVENT_REMOVE, i * 32);
      buf.writeBigUInt64LE(BigInt(e.remove[0]), i * 32 + 8);
      buf.writeBigUInt64LE(BigInt(e.remove[1]), i * 32 + 16);
    } else {
      buf.writeUInt8(UFFD_EVENT_UNMAP, i * 32);
    }
  });
  return new DataView(buf.buffer);
}
