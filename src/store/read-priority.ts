/** How long a fault's request has the server to itself before background requests follow it. */
export const HEAD_START_MS = 2;

/**
 * Which remote reads go first on the main thread, process-wide. Every store's bodies are taken in
 * on the one main thread, a piece at a time; a fault's frame that arrives while bulk bodies stream
 * in waits behind them in the event loop (measured: its want-to-bytes p50 was 12 ms on a 1 ms link,
 * 5-7 ms once bulk bodies were held). So while any fault-wait is open, a background read's body
 * (GetOptions.background) is not taken in: the HTTP client then stops reading that socket and TCP
 * slows its sender, so the held bytes cost nothing until they are taken in.
 *
 * A fault-wait is open while a read that is not background is under way (ObjectStore opens it),
 * from the request to the last byte. Decided, measured: keeping it open until the frame is decoded
 * too halved the frame's wait (HTTP at 1 ms: p50 17-19 -> 8.5-9.3 ms), but bulk held that much
 * longer made more faults fetch their own frames (S3: 26-34 -> 41-53 ranged reads per restore) and
 * S3 restores took 5-25 % longer; restore time won.
 *
 * A fault's request also goes to the server first: a background request that would be sent within
 * HEAD_START_MS of a fault-wait opening waits out the rest of that time (once; it is not held
 * again by later faults). Sent together, a fault's ranged read and the whole read of its chunk that
 * it starts are served side by side: Ceph RGW served the frame 2-3x slower, and on a shared link
 * both share the wire. The remote bench measures the frame read alone, side by side, and with the
 * whole read sent as a background read (head start and body hold): the last table of
 * bench/results/remote.md. The cost is the background read's time, up to 2 ms more, and only while
 * faults come.
 */
export class ReadPriority {
  private open = 0;
  private held = new Set<() => void>();
  /** performance.now() when the newest fault-wait opened. */
  private newestOpenedMs = -Infinity;

  constructor(
    /**
     * A held body goes on after this long even if fault-waits stay open: with faults arriving
     * back to back (many vCPUs, many VMs) bulk reads still progress, a piece per hold at least.
     */
    private readonly maxHoldMs = 20,
    private readonly headStartMs = HEAD_START_MS,
  ) {}

  /** Opens a fault-wait; the returned function closes it (a second call does nothing). */
  begin(): () => void {
    this.open++;
    this.newestOpenedMs = performance.now();
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      if (--this.open > 0) return;
      const held = this.held;
      this.held = new Set();
      for (const go of held) go();
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

  /** For a background body, before each piece: undefined to go on, or when it may. */
  readonly pace = (): Promise<void> | undefined => {
    if (this.open === 0) return undefined;
    return new Promise<void>((resolve) => {
      const go = (): void => {
        clearTimeout(timer);
        this.held.delete(go);
        resolve();
      };
      const timer = setTimeout(go, this.maxHoldMs);
      this.held.add(go);
    });
  };
}

/** The process's read priority (one main thread takes in every store's bodies). */
export const readPriority = new ReadPriority();
