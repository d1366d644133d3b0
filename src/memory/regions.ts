/** One guest memory region: where the VMM mapped it and where its bytes sit in the snapshot. */
export interface GuestRegion {
  readonly hostAddr: number;
  readonly sizeBytes: number;
  /** Offset of the region's first byte in the snapshot's memory file. */
  readonly fileOffset: number;
}

/**
 * The guest address space as the handler sees it: the VMM's host mappings and their snapshot
 * offsets. Lookup is by host address (what a fault reports); the handler never needs guest
 * physical addresses.
 */
export class GuestMemory {
  readonly regions: readonly GuestRegion[];

  constructor(
    regions: readonly GuestRegion[],
    readonly pageSizeBytes: number,
  ) {
    this.regions = [...regions].sort((a, b) => a.hostAddr - b.hostAddr);
  }

  get sizeBytes(): number {
    return this.regions.reduce((sum, r) => sum + r.sizeBytes, 0);
  }

  /** Index of the region holding host address `addr`, or -1. */
  regionIndexOf(addr: number): number {
    let lo = 0;
    let hi = this.regions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = this.regions[mid]!;
      if (addr < r.hostAddr) hi = mid - 1;
      else if (addr >= r.hostAddr + r.sizeBytes) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** Index of the region holding snapshot offset `fileOffset`, or -1 (a few regions: a scan). */
  regionIndexOfFileOffset(fileOffset: number): number {
    return this.regions.findIndex((r) => fileOffset >= r.fileOffset && fileOffset < r.fileOffset + r.sizeBytes);
  }

  /** Snapshot file offset of host address `addr`, or -1 outside every region. */
  fileOffsetOf(addr: number): number {
    const i = this.regionIndexOf(addr);
    if (i < 0) return -1;
    const r = this.regions[i]!;
    return addr - r.hostAddr + r.fileOffset;
  }
}
