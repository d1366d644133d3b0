/** How long a fault's request has the server to itself before background requests follow it. */
export const HEAD_START_MS = 2;

/**
 * Which remote reads go first, process-wide. A read a fault waits for is taken in on the main
 * thread; a background read's body (GetOptions.background) on the store body thread (StorePool.get),
 * and while any fault-wait is open it is not taken in at all: the HTTP client then stops reading
 * that socket and TCP slows its sender, so the fault's bytes have the link and the server to
 * themselves and the held bytes cost nothing until they are taken in. (Before the body thread,
 * bulk bodies were taken in on the main thread, and a fault's frame that arrived meanwhile waited
 * behind them in the event loop: its want-to-bytes p50 was 12 ms on a 1 ms link, 5-7 ms once bulk
 * bodies were held.)
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
  /**
   * [0]: fault-waits open, in shared memory: background bodies are taken in on the store body
   * thread (StorePool.get), which holds them by this count (ReadPriority.attach).
   */
  readonly shared: Int32Array;
  /** performance.now() when the newest fault-wait opened (fault-waits open on the main thread). */
  private newestOpenedMs = -Infinity;

  constructor(
    /**
     * A held body goes on after this long even if fault-waits stay open: with faults arriving
     * back to back (many vCPUs, many VMs) bulk reads still progress, a piece per hold at least.
     */
    private readonly maxHoldMs = 20,
    private readonly headStartMs = HEAD_START_MS,
    shared?: Int32Array,
  ) {
    this.shared = shared ?? new Int32Array(new SharedArrayBuffer(4));
  }

  /** Another thread's view of `priority`: its pace follows the fault-waits `priority` opens. */
  static attach(shared: Int32Array, maxHoldMs?: number): ReadPriority {
    return new ReadPriority(maxHoldMs, undefined, shared);
  }

  /** Opens a fault-wait; the returned function closes it (a second call does nothing). */
  begin(): () => void {
    Atomics.add(this.shared, 0, 1);
    this.newestOpenedMs = performance.now();
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      if (Atomics.sub(this.shared, 0, 1) === 1) Atomics.notify(this.shared, 0);
    };
  }

  /**
   * For a background request, before it is sent: undefined to send it now, or a promise for when
   * the newest open fault-wait has had its head start.
   */
  readonly headStart = (): Promise<void> | undefined => {
    if (Atomics.load(this.shared, 0) === 0) return undefined;
    const waitMs = this.newestOpenedMs + this.headStartMs - performance.now();
    // A Node timer counts whole ms from the event loop's cached clock, so it can fire up to 1 ms
    // early by performance.now(): the wait is rounded up, and what is left under 1 ms is not waited.
    return waitMs >= 1 ? new Promise<void>((resolve) => setTimeout(resolve, Math.ceil(waitMs))) : undefined;
  };

  /**
   * For a background body, before each piece: undefined to go on, or when it may (every
   * fault-wait closed, or maxHoldMs passed). Works on any thread that shares `shared`: the last
   * close notifies it. The timer is what keeps the thread alive meanwhile (Atomics.waitAsync
   * does not hold Node's event loop open).
   */
  readonly pace = (): Promise<void> | undefined => {
    const shared = this.shared;
    if (Atomics.load(shared, 0) === 0) return undefined;
    const deadlineMs = performance.now() + this.maxHoldMs;
    return new Promise<void>((resolve) => {
      let over = false;
      const go = (): void => {
        if (over) return;
        over = true;
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(go, this.maxHoldMs);
      const watch = (): void => {
        const open = Atomics.load(shared, 0);
        const leftMs = deadlineMs - performance.now();
        if (open === 0 || leftMs <= 0) {
          go();
          return;
        }
        // Wakes on the notify of the last close (or at the deadline, so no waiter outlives it);
        // 'not-equal' when the count changed since it was read: look again.
        const wait = Atomics.waitAsync(shared, 0, open, leftMs);
        if (wait.async) void wait.value.then(() => !over && watch());
        else watch();
      };
      watch();
    });
  };
}

/** The process's read priority: fault-waits open on the main thread, where every store read starts. */
export const readPriority = new ReadPriority();
