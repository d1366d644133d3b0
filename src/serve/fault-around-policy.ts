// The interface alone, so policies (fault-around.ts, adaptive-window.ts) and their factory import it
// without importing each other.
/** Which snapshot bytes to install around one fault. Implementations may keep per-VM state (streams). */
export interface FaultAroundPolicy {
  /** Page-aligned [startOffset, startOffset + lenBytes) to install for a fault at faultOffset (snapshot offset, page
   *  aligned), never outside [regionStartOffset, regionEndOffset). Must contain the faulting page. */
  window(faultOffset: number, regionStartOffset: number, regionEndOffset: number): { startOffset: number; lenBytes: number };
}
