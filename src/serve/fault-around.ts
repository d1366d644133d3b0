import { FcUffdError } from '../errors.js';
import { AdaptiveFaultAround } from './adaptive-window.js';
import type { FaultAroundPolicy } from './fault-around-policy.js';

export type { FaultAroundPolicy } from './fault-around-policy.js';

/**
 * The aligned block of `blockBytes` around the fault, clipped to the region. When the region starts
 * inside a block, the window starts at the region and still spans `blockBytes` (then clipped to the
 * region's end). `blockBytes` equal to the page size installs only the faulting page.
 */
export class FixedFaultAround implements FaultAroundPolicy {
  readonly blockBytes: number;

  constructor(blockBytes: number, pageSizeBytes: number) {
    this.blockBytes = Math.max(blockBytes, pageSizeBytes);
    if ((this.blockBytes & (this.blockBytes - 1)) !== 0)
      throw new FcUffdError('CONFIG', `fault-around must be a power of two, got ${blockBytes}`);
  }

  window(faultOffset: number, regionStartOffset: number, regionEndOffset: number): { startOffset: number; lenBytes: number } {
    const startOffset = Math.max(regionStartOffset, faultOffset - (faultOffset % this.blockBytes));
    const endOffset = Math.min(regionEndOffset, startOffset + this.blockBytes);
    return { startOffset, lenBytes: endOffset - startOffset };
  }
}

/**
 * A VM's fault-around as an operator sets it: bytes of a fixed aligned window (the page size
 * disables fault-around), or 'adaptive' (AdaptiveFaultAround: one page for scattered faults,
 * growing windows for streams).
 */
export type FaultAround = number | 'adaptive';

/** What a VM's options say about fault-around (VmInit carries it). */
export interface FaultAroundOptions {
  faultAround: FaultAround;
}

/**
 * The one place a VM's fault-around policy is built from its options. Adaptive windows are built
 * without `isZero`: counting only data pages against a window made the real trace slower in the
 * simulator (larger windows of mostly zero pages delayed the faulting vCPU more than they saved).
 */
export function faultAroundPolicyFor(options: FaultAroundOptions, pageSizeBytes: number): FaultAroundPolicy {
  if (options.faultAround === 'adaptive') return new AdaptiveFaultAround({ pageSizeBytes });
  return new FixedFaultAround(options.faultAround, pageSizeBytes);
}
