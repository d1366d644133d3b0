// A TCP proxy that injects network faults between a store client and a real server, for the tests
// (the benchmark's link is tools/link.ts: cheaper, and it models bandwidth). Settings apply to bytes forwarded after `set()`; `set()` also drops open
// connections so a client's next request starts clean under the new settings.
import net from 'node:net';

export interface FaultSettings {
  /** Added one-way delay in each direction (RTT grows by twice this): a request is late reaching the server. */
  latencyMs?: number;
  /** Hold every byte (both directions) until stall is cleared. */
  stall?: boolean;
  /** Reset the connection once this many response bytes (headers included) were forwarded. */
  cutAfterResponseBytes?: number;
  /** Forward this many response bytes (headers included), then hold the rest: a body that stops arriving. */
  stallAfterResponseBytes?: number;
  /** End the response cleanly (FIN) after this many bytes of the first response's body: a truncated body. */
  truncateBodyAfterBytes?: number;
  /** Invert the byte at this offset of the first response body on each connection. */
  flipBodyByteAt?: number;
  /**
   * Flip in this many bodies at most (counted from set()); default: every connection's first. A
   * test of "damaged once, read again whole" needs it: a retry may go out on a new connection
   * (the kept-alive ones busy with other reads), whose first body would be flipped too.
   */
  flipBodies?: number;
  /** Answer every request with this status and an empty body instead of forwarding it. */
  cannedStatus?: 404 | 500 | 503;
}

const REASONS: Record<number, string> = { 404: 'Not Found', 500: 'Internal Server Error', 503: 'Service Unavailable' };
const REQUEST_LINE_END = Buffer.from(' HTTP/1.1\r\n');
const HEADERS_END = Buffer.from('\r\n\r\n');

export class FaultProxy {
  private settings: FaultSettings = {};
  private readonly sockets = new Set<net.Socket>();
  private stallWaiters: Array<() => void> = [];
  /** HTTP requests seen (request lines in the client's stream; bodies could in theory fake one). */
  requests = 0;
  /** Bodies flipped since the last set(). */
  flipsDone = 0;
  connections = 0;
  /** The start of the last request forwarded (what a client sent, headers included). */
  lastRequestHead = '';

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const proxy = new FaultProxy(server, (server.address() as net.AddressInfo).port, target);
    server.on('connection', (client) => proxy.accept(client));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  set(settings: FaultSettings): void {
    this.settings = { ...settings };
    this.flipsDone = 0;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (!settings.stall) this.releaseStall();
  }

  async close(): Promise<void> {
    this.set({});
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private releaseStall(): void {
    const waiters = this.stallWaiters;
    this.stallWaiters = [];
    for (const w of waiters) w();
  }

  private accept(client: net.Socket): void {
    this.connections++;
    this.sockets.add(client);
    // Nagle's algorithm would hold a response's last small write until the peer's delayed ACK
    // (measured: a 170 KB GET took ~12 ms through an unshaped proxy); the clients and nginx set
    // TCP_NODELAY, so the proxy does too and adds only the delays it is asked for.
    client.setNoDelay(true);
    const s = this.settings;
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    if (s.cannedStatus !== undefined) {
      this.answerCanned(client, s.cannedStatus);
      return;
    }
    const upstream = net.connect({ port: this.target.port, host: this.target.host, noDelay: true });
    this.sockets.add(upstream);
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    this.pipe(client, upstream, (chunk) => {
      const n = countOf(chunk, REQUEST_LINE_END);
      if (n > 0) this.lastRequestHead = chunk.subarray(0, 4096).toString('latin1');
      this.requests += n;
      return { data: chunk };
    });
    let responseBytes = 0;
    let head = Buffer.alloc(0);
    let bodyStart = -1; // stream offset of the first response body
    this.pipe(upstream, client, (chunk) => {
      const at = responseBytes;
      responseBytes += chunk.length;
      if (bodyStart < 0 && head.length < 65536) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf(HEADERS_END);
        if (end >= 0) bodyStart = end + HEADERS_END.length;
      }
      let data = chunk;
      let after: 'reset' | 'end' | undefined;
      if (s.cutAfterResponseBytes !== undefined && responseBytes >= s.cutAfterResponseBytes) {
        data = chunk.subarray(0, Math.max(0, s.cutAfterResponseBytes - at));
        after = 'reset';
      }
      if (s.stallAfterResponseBytes !== undefined && responseBytes > s.stallAfterResponseBytes)
        data = data.subarray(0, Math.max(0, s.stallAfterResponseBytes - at));
      if (bodyStart >= 0 && s.truncateBodyAfterBytes !== undefined && responseBytes >= bodyStart + s.truncateBodyAfterBytes) {
        data = data.subarray(0, Math.max(0, bodyStart + s.truncateBodyAfterBytes - at));
        after = 'end';
      }
      if (bodyStart >= 0 && s.flipBodyByteAt !== undefined && (s.flipBodies === undefined || this.flipsDone < s.flipBodies)) {
        const i = bodyStart + s.flipBodyByteAt - at;
        if (i >= 0 && i < data.length) {
          this.flipsDone++;
          data = Buffer.from(data);
          data[i]! ^= 0xff;
        }
      }
      return after ? { data, after } : { data };
    });
  }

  /**
   * Forwards `from` to `to` through `transform`, in order, each chunk delayed by the latency (a
   * pipeline delay: chunks in flight overlap, they do not add up).
   */
  private pipe(from: net.Socket, to: net.Socket, transform: (chunk: Buffer) => { data: Buffer; after?: 'reset' | 'end' }): void {
    const s = this.settings;
    let chain = Promise.resolve();
    let done = false;
    const delayMs = s.latencyMs ?? 0;
    from.on('data', (chunk: Buffer) => {
      if (done) return;
      const arrivedMs = performance.now();
      chain = chain.then(async () => {
        if (done) return;
        while (this.settings.stall && s === this.settings) await new Promise<void>((r) => this.stallWaiters.push(r));
        const waitMs = arrivedMs + delayMs - performance.now();
        if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
        if (to.destroyed) return;
        const { data, after } = transform(chunk);
        if (data.length > 0) to.write(data);
        if (after === 'reset') {
          done = true;
          to.resetAndDestroy();
          from.destroy();
        } else if (after === 'end') {
          done = true;
          to.end();
          from.destroy();
        }
      });
    });
    from.on('end', () => {
      chain = chain.then(() => {
        if (!done && !to.destroyed) to.end();
      });
    });
  }

  private answerCanned(client: net.Socket, status: number): void {
    let pending = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      // One answer per complete request head; bodies (PUT) are not expected here.
      for (let end = pending.indexOf(HEADERS_END); end >= 0; end = pending.indexOf(HEADERS_END)) {
        pending = pending.subarray(end + HEADERS_END.length);
        this.requests++;
        client.write(`HTTP/1.1 ${status} ${REASONS[status]}\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n`);
      }
    });
  }
}

function countOf(haystack: Buffer, needle: Buffer): number {
  let n = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + needle.length)) n++;
  return n;
}
