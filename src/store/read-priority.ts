/** How long a fault's request has the server to itself before background requests follow it. */
export const HEAD_START_MS = 2;

/**
 * Which remote reads go first, process-wide: a fault's request goes to the server first. A
 * background request (GetOptions.background) that would be sent within HEAD_START_MS of a
 * fault-wait opening waits out the rest of that time (once; it is not held again by later faults).
 * Sent together, a fault's ranged read and the whole read of its chunk that it starts are served
 * side by side: Ceph RGW served the frame 2-3x slower, and on a shared link both share the wire.
 * The remote bench measures the frame read alone, side by side, and with the whole read sent as a
 * background read: the last table of bench/results/remote.md. The cost is the background read's
 * time, up to 2 ms more, and only while faults come. A fault-wait is open while a read that is
 * not background is under way (ObjectStore opens it), from the request to the last byte.
 *
 * Background bodies are taken in on the store body thread (StorePool.get), never on the main
 * thread where a fault's bytes are. Decided, measured: they are not also held while a fault-wait
 * is open. Holding them kept the link for a fault's frame (S3 at 1 ms: frame p50 7.4-9.7 ms
 * without, 6.0-7.4 with), but at 20 ms RTT faults come back to back, bulk bodies were held most of
 * the time and more faults fetched their own frames: working-set restores took 10 % longer with
 * holds of up to 20 ms (HTTP 513 vs 461-469 ms) and on-demand ones 5-10 % longer with holds of up
 * to 2 ms (HTTP 579-589 vs 539-552 ms), the 1 ms rows equal within the spread. (Before the body
 * thread, bulk bodies were taken in on the main thread and holding them there was worth it: a
 * frame that arrived meanwhile waited behind them in the event loop, want-to-bytes p50 12 ms on a
 * 1 ms link, 5-7 ms once they were held.)
 */
export class ReadPriority {
  private open = 0;
  /** performance.now() when the newest fault-wait opened. */
  private newestOpenedMs = -Infinity;

  constructor(private readonly headStartMs = HEAD_START_MS) {}

  /** Opens a fault-wait; the returned function closes it (a second call does nothing). */
  begin(): () => void {
    this.open++;
    this.newestOpenedMs = performance.now();
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      this.open--;
    };
  }

  /**
   * For a background request, before it is sent: undefined to send it now, or a promise for when
   * the newest open fault-wait has had its head start.
   */
  readonly headStart = (): Promise<void> | undefined => {
    if (this.open === 0) return undefined;
    const waitMs = this.newestOpenedMs + this.headStartMs - performance.now();
    // A Node timer counts whole ms from the event loop's cached clock, so it can fire up to 1 ms
    // early by performance.now(): the wait is rounded up, and what is left under 1 ms is not waited.
    return waitMs >= 1 ? new Promise<void>((resolve) => setTimeout(resolve, Math.ceil(waitMs))) : undefined;
  };
}

/** The process's read priority (every store read starts on the main thread). */
export const readPriority = new ReadPriority();
