// The remote-store benchmark's network link: tools/bin/fc-link (tools/link/fc-link.c says why it is
// C and what it models) between a store client and a real server, one process per link setting.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const LINK_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools', 'bin', 'fc-link');

export interface LinkSettings {
  /** Round-trip time the link adds: all of it to each response byte, none to requests. */
  rttMs: number;
  /** Rate per direction at which bytes are serialized, bytes per second: one wire all connections share, in turns. */
  bytesPerSecond: number;
}

export class Link {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  /** Starts a link to `target` (a host name or IPv4 address, and a port); it ends with `close()` or with this process. */
  static async start(target: { host: string; port: number }, s: LinkSettings): Promise<Link> {
    // stdin is a pipe the link watches: if this process dies, the link exits instead of lingering.
    const child = spawn(LINK_PATH, [target.host, String(target.port), String(s.rttMs), String(s.bytesPerSecond)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`${LINK_PATH} exited with ${code} before it listened`)));
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('\n')) resolve(Number(out.trim()));
      });
    });
    child.removeAllListeners('exit');
    return new Link(child, port);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The link process, for CPU accounting. */
  get pid(): number {
    return this.child.pid!;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.end();
    await exited;
  }
}
