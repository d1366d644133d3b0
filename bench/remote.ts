// Suite `remote`: the real 128 MiB guest restored by the emulator's replay of its real restore trace
// from a chunked snapshot in a local directory, in Ceph RGW (S3) and in nginx (HTTP), the remote
// ones through a link (tools/bin/fc-link) at (a) 1 ms RTT + 500 MB/s and (b) 20 ms RTT + 100 MB/s; on
// demand, with a recorded working set and a cold disk cache, and with a warm disk cache. Reports
// restore-to-done and touch latency (medians of the runs), the want-to-post time of frames fetched
// from the store, and the transfer floor (compressed bytes the restore needs / bandwidth + 1 RTT).
//   node dist/bench/remote.js [--runs N] [--only dir,http,s3] [--links a,b] [--modes …] [--skip-receive] (--help)
// Servers: FC_UFFD_TEST_HTTP_URL / FC_UFFD_TEST_S3_ENDPOINT (S3 keys from AWS_*), or started here
// with tools/services/*.sh and stopped by pid. Skips (printing why) without the real guest fixture.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CLI_NODE_FLAGS } from '../src/cli/node-flags.js';
import { ControlClient } from '../src/client/control-client.js';
import { Link } from '../tools/link.js';
import { runEmulator, type EmulatorReport } from '../tools/emulator/run.js';
import { DirStore } from '../src/store/dir.js';
import { openStore } from '../src/store/open.js';
import { pack } from '../src/snapshot/pack.js';
import { chunkLength, frameOffsets, summarizeManifest, type Manifest } from '../src/snapshot/manifest.js';
import type { FrameTiming } from '../src/snapshot/frame-load.js';
import { realGuest } from './lib/data.js';
import { benchCommand, mdTable, RESULTS_DIR, writeResults } from './lib/results.js';
import { fmt, quantile, spread } from './lib/stats.js';
import { cpuNs, hostBusyPct, hostCpuTicks, threadSchedNs } from './lib/trial.js';
import type { RemoteServeConfig } from './lib/remote-serve.js';
import type { ReceiveChildConfig, ReceiveChildResult } from './lib/receive-child.js';

const MiB = 1024 * 1024;
const ROOT = path.resolve(RESULTS_DIR, '..', '..');
const SERVICES = path.join(ROOT, 'tools/services');
const SERVE = path.join(ROOT, 'dist/bench/lib/remote-serve.js');
const RECEIVE = path.join(ROOT, 'dist/bench/lib/receive-child.js');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const LINKS = {
  a: { name: '1 ms RTT + 500 MB/s', rttMs: 1, bytesPerSecond: 500e6 },
  b: { name: '20 ms RTT + 100 MB/s', rttMs: 20, bytesPerSecond: 100e6 },
} as const;
type LinkKey = keyof typeof LINKS;
type StoreKind = 'dir' | 'http' | 's3';
type Mode = 'on-demand' | 'ws-cold-cache' | 'warm-cache' | 'daemon-ws-cold';

const USAGE = `usage: node dist/bench/remote.js [--runs N] [--only dir,http,s3] [--links a,b]
                                [--modes on-demand,ws-cold-cache,warm-cache,daemon-ws-cold] [--skip-receive]
  --runs N        trials per row, and runs per receive variant (default 5)
  --only K,...    stores: dir (the local directory: the bound of the remote targets), http, s3
  --links L,...   a: 1 ms RTT + 500 MB/s, b: 20 ms RTT + 100 MB/s
  --modes M,...   on-demand, ws-cold-cache (working set, cold disk cache), warm-cache,
                  daemon-ws-cold (ws-cold-cache in an fc-uffd daemon warmed by a restore of another snapshot)
  --skip-receive  leave out the receive table
A run of part of the matrix writes results too (targets whose rows are missing read NaN).
`;
const MODES: readonly Mode[] = ['on-demand', 'ws-cold-cache', 'warm-cache', 'daemon-ws-cold'];

function usageError(message: string): never {
  process.stderr.write(`remote bench: ${message}\n${USAGE}`);
  process.exit(2);
}

/** A comma-separated list of names from `allowed` (an exit with the usage on anything else). */
function listOf<T extends string>(flag: string, text: string, allowed: readonly T[]): T[] {
  const names = text.split(',').map((x) => x.trim());
  const bad = names.filter((x) => !(allowed as readonly string[]).includes(x));
  if (bad.length || names.length === 0) usageError(`--${flag}: ${bad.join(', ') || '(empty)'} is not one of ${allowed.join(', ')}`);
  return names as T[];
}

function parseOptions(): ReturnType<typeof parse> {
  try {
    return parse();
  } catch (err) {
    return usageError((err as Error).message);
  }
}
function parse() {
  return parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      only: { type: 'string', default: 'dir,http,s3' },
      links: { type: 'string', default: 'a,b' },
      modes: { type: 'string', default: MODES.join(',') },
      'skip-receive': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}
const { values } = parseOptions();
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const RUNS = Number(values.runs);
if (!Number.isSafeInteger(RUNS) || RUNS < 1) usageError(`--runs: ${values.runs} is not a positive integer`);
const KINDS = listOf<StoreKind>('only', values.only, ['dir', 'http', 's3']);
const LINK_KEYS = listOf<LinkKey>('links', values.links, ['a', 'b']);
const MODES_RUN = listOf<Mode>('modes', values.modes, MODES);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-bench-remote-'));
const stops: Array<() => void> = [];
/** Handlers and emulators running now: Ctrl-C kills them before the work directory they write in is removed. */
const running = new Set<ChildProcess>();
/** A child to kill on Ctrl-C while it runs. */
function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A Node script of this project run with the fc-uffd executable's flags (the bench measures what users run), tracked, with what it printed so far. */
function startNode(script: string, args: string[]): { child: ChildProcess; out: () => string; err: () => string; closed: Promise<void> } {
  const child = spawn(process.execPath, [...CLI_NODE_FLAGS, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  return { child, out: () => out, err: () => err, closed };
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function startService(script: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  const dir = fs.mkdtempSync(path.join(work, 'svc-'));
  stops.push(() => execFileSync('bash', [path.join(SERVICES, 'stop.sh'), path.join(dir, 'pids')], { stdio: 'inherit' }));
  let out: Buffer;
  try {
    out = execFileSync('bash', [path.join(SERVICES, script), dir, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
  } catch (err) {
    // Ctrl-C reached the script while this process waited for it: it stopped what it had started
    // and exited 130 (tools/services/daemons.sh); this process's own handler cannot run yet.
    if ((err as { status?: number }).status === 130) interrupted();
    throw new Error(`${script} failed (its message is above)`, { cause: err });
  }
  return out.toString().trim().split('\n').pop()!;
}

interface Trial {
  doneMs: number;
  touchP50Us: number;
  touchP99Us: number;
  /** The VM's time in first touches, summed: how much of doneMs it waited for the handler. */
  touchWaitMs: number;
  frameFetchMs: number[];
  frameTimings: FrameTiming[];
  /** CPU of the serving process (all its threads) from ready to the VM's end. */
  cpuMs: number;
  /** CPU of the serving process's main thread, and its time runnable but waiting for a CPU. */
  mainCpuMs: number;
  mainWaitMs: number;
  /** CPU of the link process over the restore (null: no link, a local directory). */
  linkCpuMs: number | null;
  /** The share of all the host's CPUs busy over the restore (every process: handler, emulator, link, servers), %. */
  hostBusyPct: number;
}

/** One restore: our library server on `store`, the emulator replaying the trace. */
async function trial(cfg: Omit<RemoteServeConfig, 'socket'>, mem: string, trace: string, link?: Link): Promise<Trial> {
  const socket = path.join(work, `s-${Date.now()}-${Math.random().toString(36).slice(2)}.sock`);
  const server = startNode(SERVE, [JSON.stringify({ ...cfg, socket })]);
  try {
    const t0 = Date.now();
    while (!server.out().includes('ready\n')) {
      if (server.child.exitCode !== null || Date.now() - t0 > 30_000) throw new Error(`server did not start: ${server.err().slice(-500)}`);
      await sleep(5);
    }
    const linkCpuAtStart = link ? cpuNs(link.pid) : undefined;
    const host0 = hostCpuTicks();
    const report = await replayTrace(socket, mem, trace, () => `server: ${server.err().slice(-500)}`);
    const busy = hostBusyPct(host0, hostCpuTicks());
    const linkCpuMs = link && linkCpuAtStart !== undefined ? (cpuNs(link.pid) - linkCpuAtStart) / 1e6 : null;
    const t1 = Date.now();
    while (!server.out().includes('vmEnded')) {
      if (Date.now() - t1 > 10_000) throw new Error('server printed no VM end');
      await sleep(5);
    }
    const ended = JSON.parse(
      server
        .out()
        .split('\n')
        .find((l) => l.includes('vmEnded'))!,
    ) as {
      frameFetchMs: number[];
      frameTimings: FrameTiming[];
      cpuMs: number;
      mainCpuMs: number;
      mainWaitMs: number;
    };
    return {
      frameTimings: ended.frameTimings,
      doneMs: report.handshakeToDoneMs,
      touchP50Us: report.touchLatencyUs.p50,
      touchP99Us: report.touchLatencyUs.p99,
      touchWaitMs: report.touchWaitMs,
      frameFetchMs: ended.frameFetchMs,
      cpuMs: ended.cpuMs,
      mainCpuMs: ended.mainCpuMs,
      mainWaitMs: ended.mainWaitMs,
      linkCpuMs,
      hostBusyPct: busy,
    };
  } finally {
    server.child.kill('SIGTERM');
    await server.closed;
    fs.rmSync(socket, { force: true });
  }
}

/** The emulator replaying the real restore trace against `socket` (checking every byte against `mem`); its report. */
async function replayTrace(socket: string, mem: string, trace: string, serverTail: () => string): Promise<EmulatorReport> {
  const r = await runEmulator({ socket, mem, pageSize: '4k', vcpus: 1, pattern: `trace:${trace}`, deadlineMs: 120_000 }, track);
  if (r.code !== 0 || !r.report) throw new Error(`emulator exit ${r.code ?? r.signal}: ${r.stderr.slice(-500)} / ${serverTail()}`);
  return r.report;
}

/**
 * `src` with one byte changed in every chunk that holds data (its first non-zero byte, kept
 * non-zero): the same sizes, zero pages and compression, and not one chunk or frame in common.
 */
function writeWarmUpImage(src: string, dst: string, chunkSizeBytes: number): void {
  const image = fs.readFileSync(src);
  for (let at = 0; at < image.length; at += chunkSizeBytes) {
    const chunk = image.subarray(at, Math.min(at + chunkSizeBytes, image.length));
    const k = chunk.findIndex((b) => b !== 0);
    if (k >= 0) chunk[k] = chunk[k]! === 0xff ? 0x01 : chunk[k]! + 1;
  }
  fs.writeFileSync(dst, image);
}

/**
 * The daemon rows' warm-up: the guest with a byte changed in every chunk (no chunk in common),
 * packed in the local directory store (the remote stores get it with the measured snapshot), with
 * a working set recorded from it.
 */
async function packWarmUp(image: string, dirStore: string, chunkSizeBytes: number, trace: string): Promise<WarmUp> {
  const mem = path.join(work, 'warm-up.mem');
  writeWarmUpImage(image, mem, chunkSizeBytes);
  const r = await pack({ memPath: mem, store: DirStore.open(dirStore, { fsync: false }) });
  const warmUp = { mem, manifest: r.id, ws: path.join(work, 'warm-up.ws') };
  await trial({ store: dirStore, manifest: r.id, recordWs: warmUp.ws }, mem, trace);
  return warmUp;
}

/** The snapshot a daemon trial restores first, to warm the handler: another image (no chunk in common), its manifest and working set. */
interface WarmUp {
  mem: string;
  manifest: string;
  ws: string;
}

/**
 * One restore in an `fc-uffd daemon`, the handler a host runs once for every VM: started fresh
 * with an empty disk cache, it first serves a restore of another snapshot (`warm`: no chunk in
 * common, so no cache helps; its code, connections and threads are then warm, as they are on a
 * host after its first restore), then the measured one (working set, cold caches). CPU: every
 * thread of the daemon over the measured restore (to the emulator's exit).
 */
async function daemonTrial(
  linked: LinkedStore,
  warm: WarmUp,
  measured: { manifest: string; ws: string; mem: string },
  trace: string,
  link?: Link,
): Promise<Trial> {
  const dir = fs.mkdtempSync(path.join(work, 'daemon-'));
  const control = path.join(dir, 'control.sock');
  const args = ['daemon', '--control', control, '--cache-dir', path.join(dir, 'cache'), '--log-level', 'warn'];
  if (linked.s3Endpoint) args.push('--s3-endpoint', linked.s3Endpoint);
  const daemon = startNode(CLI, args);
  const client = new ControlClient(control);
  try {
    const t0 = Date.now();
    while (!(
      fs.existsSync(control) &&
      (await client.health().then(
        () => true,
        () => false,
      ))
    )) {
      if (daemon.child.exitCode !== null || Date.now() - t0 > 30_000) throw new Error(`daemon did not start: ${daemon.err().slice(-500)}`);
      await sleep(10);
    }
    const tail = (): string => `daemon: ${daemon.err().slice(-500)}`;
    const first = await client.createRestore('warm-up', { store: linked.store, snapshot: warm.manifest, prefetch: warm.ws });
    await replayTrace(first.socket, warm.mem, trace, tail);
    // Its VM ended in the daemon too, so none of its work is counted in the measured restore's.
    const t1 = Date.now();
    while ((await client.health()).vms_live > 0) {
      if (Date.now() - t1 > 10_000) throw new Error(`the warm-up VM did not end: ${tail()}`);
      await sleep(5);
    }
    const second = await client.createRestore('measured', { store: linked.store, snapshot: measured.manifest, prefetch: measured.ws });
    const pid = daemon.child.pid!;
    const [cpu0, main0, link0, host0] = [cpuNs(pid), threadSchedNs(pid, pid), link ? cpuNs(link.pid) : NaN, hostCpuTicks()];
    const report = await replayTrace(second.socket, measured.mem, trace, tail);
    const [main1, host1] = [threadSchedNs(pid, pid), hostCpuTicks()];
    return {
      doneMs: report.handshakeToDoneMs,
      touchP50Us: report.touchLatencyUs.p50,
      touchP99Us: report.touchLatencyUs.p99,
      touchWaitMs: report.touchWaitMs,
      frameFetchMs: [],
      frameTimings: [],
      cpuMs: (cpuNs(pid) - cpu0) / 1e6,
      mainCpuMs: (main1.cpuNs - main0.cpuNs) / 1e6,
      mainWaitMs: (main1.waitNs - main0.waitNs) / 1e6,
      linkCpuMs: link ? (cpuNs(link.pid) - link0) / 1e6 : null,
      hostBusyPct: hostBusyPct(host0, host1),
    };
  } finally {
    await client.close();
    daemon.child.kill('SIGTERM');
    await daemon.closed;
    fs.rmSync(dir, { recursive: true, force: true }); // its disk cache: ~70 MiB a trial
  }
}

/**
 * The link's floor as this machine delivers it: sequential ranged GETs of real frames, one at a
 * time, from a bare store client through the same link (no server, no VM, no codec). What the
 * handler adds to an uncached fault is its frame time minus this.
 */
async function bareFrameGetMs(spec: LinkedStore, m: Manifest, count: number): Promise<number[]> {
  const store = await openLinked(spec);
  const out: number[] = [];
  try {
    const frames = storedFrames(m);
    for (let n = 0; n < count; n++) {
      const f = frames[Math.floor((n * frames.length) / count)]!;
      const t0 = performance.now();
      await store.getChunk(f.digest, { range: { offset: f.offset, length: f.length } });
      out.push(performance.now() - t0);
    }
  } finally {
    await store.close();
  }
  return out;
}

/** A remote store reached through the link: its URL, and for S3 the link as its endpoint. */
interface LinkedStore {
  store: string;
  s3Endpoint?: string;
}

/** A bare store client of `spec` (no cache, no bucket check), as the benchmark's own reads use. */
function openLinked(spec: LinkedStore): ReturnType<typeof openStore> {
  return openStore(spec.store, { checkBucket: false, ...(spec.s3Endpoint ? { s3: { endpoint: spec.s3Endpoint } } : {}) });
}

/** Every stored (non-zero) frame of the manifest: its chunk's digest and its byte range in the blob. */
function storedFrames(m: Manifest): Array<{ digest: string; offset: number; length: number }> {
  return m.chunks.flatMap((c, i) => {
    if (!c?.frameBytes) return [];
    const offsets = frameOffsets(c, chunkLength(m, i), m.frameSizeBytes!);
    return c.frameBytes.flatMap((b, k) => (b > 0 ? [{ digest: c.digest, offset: offsets[k]!, length: b }] : []));
  });
}

/** A fault's frame read next to the whole read of its chunk, three ways (p50 ms over the frames read). */
interface HeadStartRow {
  store: StoreKind;
  link: string;
  frames: number;
  /** The frame read alone. */
  aloneMsP50: number;
  /** The frame read, and the whole read sent with it as another fault's read: both at once. */
  sideBySideMsP50: number;
  sideBySideWholeMsP50: number;
  /** The frame read, and the whole read sent as the handler sends it: a background read (read-priority.ts). */
  backgroundMsP50: number;
  backgroundWholeMsP50: number;
}

/**
 * What ReadPriority's head start is for: real frames read by a store client through the link,
 * each alone, then with its chunk's whole read sent right after it either as a read a fault waits
 * for (no head start: side by side) or as the handler's background read (which waits out the head
 * start, its body taken in on the store body thread). Times from the frame's request.
 */
async function headStartReads(spec: LinkedStore, m: Manifest, count: number): Promise<Omit<HeadStartRow, 'store' | 'link'>> {
  const store = await openLinked(spec);
  const frames = storedFrames(m);
  const alone: number[] = [];
  const side = { frame: [] as number[], whole: [] as number[] };
  const background = { frame: [] as number[], whole: [] as number[] };
  const since = async (t0: number, p: Promise<unknown>): Promise<number> => {
    await p;
    return performance.now() - t0;
  };
  try {
    for (let n = 0; n < count; n++) {
      // A frame of another chunk each time and for each way (the server caches nothing between them).
      const pick = (way: number): (typeof frames)[number] => frames[(n * 3 + way) % frames.length]!;
      const ranged = (f: (typeof frames)[number]): Promise<Uint8Array> =>
        store.getChunk(f.digest, { range: { offset: f.offset, length: f.length } });
      let t0 = performance.now();
      alone.push(await since(t0, ranged(pick(0))));
      for (const [way, out, options] of [
        [1, side, {}],
        [2, background, { background: true }],
      ] as const) {
        const f = pick(way);
        t0 = performance.now();
        const frame = since(t0, ranged(f));
        const whole = since(t0, store.getChunk(f.digest, options));
        out.frame.push(await frame);
        out.whole.push(await whole);
      }
    }
  } finally {
    await store.close();
  }
  const p50 = (v: number[]): number => spread(v)!.median;
  return {
    frames: count,
    aloneMsP50: p50(alone),
    sideBySideMsP50: p50(side.frame),
    sideBySideWholeMsP50: p50(side.whole),
    backgroundMsP50: p50(background.frame),
    backgroundWholeMsP50: p50(background.whole),
  };
}

interface Target {
  store: string;
  link: string | null;
  what: string;
  valueMs: number;
  boundMs: number;
  met: boolean;
  /**
   * What else the same row measured that bears on it: for a frame target, the bare ranged GET
   * through the same link (what the link and the server take with no handler) and how far the
   * handler's frames were above it; for a done target, how busy the host's CPUs were.
   */
  context: string;
}

interface Row {
  store: StoreKind;
  link: string | null;
  mode: Mode;
  runs: number;
  doneMsMedian: number;
  doneMsRuns: number[];
  /** The serving process's CPU per restore (all threads, user + system). */
  cpuMsMedian: number;
  mainCpuMsMedian: number;
  mainWaitMsMedian: number;
  /** The link process's CPU per restore (null for the local directory). */
  linkCpuMsMedian: number | null;
  hostBusyPctMedian: number;
  touchWaitMsMedian: number;
  touchP50UsMedian: number;
  touchP99UsMedian: number;
  /** Frames fetched from the store: want-to-post time over all runs. */
  frameFetchMsP50: number | null;
  frameFetchMsP99: number | null;
  frameFetches: number;
  /** Uncached frames: want to bytes, bytes to decoded (medians), and how many store reads were ahead of the median one. */
  frameFetchPartMsP50: number | null;
  frameDecodeMsP50: number | null;
  readsAheadP50: number | null;
  floorMs: number | null;
  /** On demand, remote: a bare ranged frame GET through the same link (bareFrameGetMs), p50 over the run. */
  bareGetMsP50: number | null;
  loadAvg: [number, number];
}

/** The receive cost of one store's read path under one set of Node flags: medians over the runs. */
interface ReceiveRow {
  store: StoreKind;
  path: ReceiveChildConfig['path'];
  nodeFlags: string;
  runs: number;
  mib: number;
  wallMsMedian: number;
  mainCpuMsMedian: number;
  mainCpuMsMax: number;
  otherCpuMsMedian: number;
  otherCpuMsMax: number;
}

/**
 * What taking the snapshot's chunk bodies in costs a fresh process (the server straight, no link):
 * every chunk GET at once, as a working-set prefetch asks. For HTTP by the handler's read path (a
 * fault's, on the main thread) and by the one it replaced, with Node's default flags and with the
 * fc-uffd executable's, and as background reads (on the store body thread); for S3 by the
 * handler's two (bench/lib/receive-child.ts). Variants interleaved run by run, so they see the same load.
 */
function measureReceive(endpoints: Partial<Record<StoreKind, { spec: string; s3Endpoint?: string }>>, digests: string[]): ReceiveRow[] {
  type Variant = { store: StoreKind; spec: string; s3Endpoint?: string; path: ReceiveChildConfig['path']; flags: readonly string[] };
  const variants: Variant[] = [];
  if (endpoints.http) {
    for (const path of ['request-stream', 'store'] as const)
      for (const flags of [[], CLI_NODE_FLAGS]) variants.push({ store: 'http', spec: endpoints.http.spec, path, flags });
    variants.push({ store: 'http', spec: endpoints.http.spec, path: 'store-background', flags: CLI_NODE_FLAGS });
  }
  if (endpoints.s3)
    for (const path of ['store', 'store-background'] as const) variants.push({ store: 's3', ...endpoints.s3, path, flags: CLI_NODE_FLAGS });
  const results = variants.map((): ReceiveChildResult[] => []);
  for (let i = 0; i < RUNS; i++)
    variants.forEach((v, k) => {
      const cfg: ReceiveChildConfig = { store: v.spec, ...(v.s3Endpoint ? { s3Endpoint: v.s3Endpoint } : {}), digests, path: v.path };
      let out: string;
      try {
        out = execFileSync(process.execPath, [...v.flags, RECEIVE, JSON.stringify(cfg)], { encoding: 'utf8' });
      } catch (err) {
        // Ctrl-C reached the child while this process waited for it (its handler cannot run then).
        if ((err as { signal?: string }).signal === 'SIGINT') interrupted();
        throw err;
      }
      results[k]!.push(JSON.parse(out) as ReceiveChildResult);
    });
  return variants.map((v, k) => {
    const r = results[k]!;
    return {
      store: v.store,
      path: v.path,
      nodeFlags: v.flags.length ? v.flags.join(' ') : '(none)',
      runs: r.length,
      mib: r[0]!.bytes / MiB,
      wallMsMedian: spread(r.map((x) => x.wallMs))!.median,
      mainCpuMsMedian: spread(r.map((x) => x.mainCpuMs))!.median,
      mainCpuMsMax: Math.max(...r.map((x) => x.mainCpuMs)),
      otherCpuMsMedian: spread(r.map((x) => x.otherCpuMs))!.median,
      otherCpuMsMax: Math.max(...r.map((x) => x.otherCpuMs)),
    };
  });
}

async function main(): Promise<void> {
  const real = realGuest(path.join(os.tmpdir(), 'fc-uffd-bench'), path.resolve(ROOT, '../shared/fixtures/real-guest-128m'));
  if (typeof real === 'string') {
    process.stdout.write(`skipped: ${real}\n`);
    return;
  }
  const t0 = Date.now();
  const dirStore = path.join(work, 'dir-store');
  const packed = await pack({ memPath: real.image.path, store: DirStore.open(dirStore, { fsync: false }) });
  const manifest = packed.id;
  const sum = summarizeManifest(packed.manifest);
  const neededBytes = sum.storedBytes; // the trace touches every data chunk (docs/chunked-format.md)
  process.stdout.write(
    `packed ${real.image.origin}: ${(sum.storedBytes / MiB).toFixed(1)} MiB stored, manifest ${manifest.slice(0, 12)}\n`,
  );

  // The working set, recorded once from the local directory (it is in snapshot pages: any store).
  const ws = path.join(work, 'guest.ws');
  await trial({ store: dirStore, manifest, recordWs: ws }, real.image.path, real.trace);

  const warmUp = MODES_RUN.includes('daemon-ws-cold')
    ? await packWarmUp(real.image.path, dirStore, packed.manifest.chunkSizeBytes, real.trace)
    : undefined;

  const endpoints: Partial<Record<StoreKind, { spec: string; host: string; port: number; s3Endpoint?: string }>> = {};
  if (KINDS.includes('http')) {
    const url = process.env.FC_UFFD_TEST_HTTP_URL ?? startService('nginx-start.sh', [String(await freePort())]);
    const u = new URL(url);
    endpoints.http = { spec: `${url.replace(/\/$/, '')}/remote-bench`, host: u.hostname, port: Number(u.port) };
  }
  if (KINDS.includes('s3')) {
    process.env.AWS_ACCESS_KEY_ID ??= 'testkey';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'testsecret';
    const url =
      process.env.FC_UFFD_TEST_S3_ENDPOINT ??
      startService('ceph-start.sh', [String(await freePort())], {
        FC_UFFD_CEPH_MON_PORT: String(await freePort()),
        FC_UFFD_CEPH_MON_V1_PORT: String(await freePort()),
      });
    const bucket = `fc-uffd-remote-bench-${Date.now()}`;
    const admin = new S3Client({ endpoint: url, region: 'us-east-1', forcePathStyle: true });
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    admin.destroy();
    const u = new URL(url);
    endpoints.s3 = { spec: `s3://${bucket}/p`, host: u.hostname, port: Number(u.port), s3Endpoint: url };
  }
  // Pack into each remote store (streaming uploads, manifest last), straight to the server.
  for (const [kind, e] of Object.entries(endpoints)) {
    const store = await openStore(e.spec, e.s3Endpoint ? { s3: { endpoint: e.s3Endpoint } } : {});
    const tp = Date.now();
    const r = await pack({ memPath: real.image.path, store });
    if (warmUp) await pack({ memPath: warmUp.mem, store });
    await store.close();
    if (r.id !== manifest) throw new Error(`${kind}: packed to another manifest id`);
    process.stdout.write(`packed into ${kind} in ${Date.now() - tp} ms (${r.newChunks} chunks uploaded)\n`);
  }
  const stored = [...new Set(packed.manifest.chunks.flatMap((c) => (c && c.storedBytes > 0 ? [c.digest] : [])))];
  const receive = values['skip-receive'] ? [] : measureReceive(endpoints, stored);
  for (const x of receive)
    process.stdout.write(
      `receive ${x.store} ${x.path} ${x.nodeFlags}: main ${x.mainCpuMsMedian.toFixed(0)} ms, other threads ${x.otherCpuMsMedian.toFixed(0)} ms CPU, wall ${x.wallMsMedian.toFixed(0)} ms\n`,
    );

  /** A restore by a fresh handler (bench/lib/remote-serve.ts) of the guest, replaying its trace. */
  const served = (cfg: Omit<RemoteServeConfig, 'socket'>, link?: Link): Promise<Trial> => trial(cfg, real.image.path, real.trace, link);
  /** What a daemon trial restores after its warm-up. */
  const measured = { manifest, ws, mem: real.image.path };
  const rows: Row[] = [];
  const headStart: HeadStartRow[] = [];
  const run = async (
    store: StoreKind,
    linkKey: LinkKey | null,
    mode: Mode,
    /** Run i's restore. */
    trialOf: (i: number) => Promise<Trial>,
    bare?: () => Promise<number[]>,
    link?: Link,
  ): Promise<void> => {
    // A local row is the bound of remote rows: its on-demand one bounds the warm-cache rows too.
    const bounds: Mode[] = store === 'dir' && mode === 'on-demand' ? ['on-demand', 'warm-cache'] : [mode];
    if (!bounds.some((m) => MODES_RUN.includes(m))) return;
    const la0 = os.loadavg()[0]!;
    const trials: Trial[] = [];
    const bareMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      // Interleaved with the trials, so both see the same load.
      if (bare) bareMs.push(...(await bare()));
      trials.push(await trialOf(i));
    }
    const frames = trials.flatMap((t) => t.frameFetchMs);
    const l = linkKey ? LINKS[linkKey] : null;
    const row: Row = {
      store,
      link: l?.name ?? null,
      mode,
      runs: RUNS,
      doneMsMedian: spread(trials.map((t) => t.doneMs))!.median,
      doneMsRuns: trials.map((t) => Math.round(t.doneMs * 10) / 10),
      cpuMsMedian: spread(trials.map((t) => t.cpuMs))!.median,
      mainCpuMsMedian: spread(trials.map((t) => t.mainCpuMs))!.median,
      mainWaitMsMedian: spread(trials.map((t) => t.mainWaitMs))!.median,
      linkCpuMsMedian: link ? spread(trials.map((t) => t.linkCpuMs ?? NaN))!.median : null,
      hostBusyPctMedian: spread(trials.map((t) => t.hostBusyPct))!.median,
      touchWaitMsMedian: spread(trials.map((t) => t.touchWaitMs))!.median,
      touchP50UsMedian: spread(trials.map((t) => t.touchP50Us))!.median,
      touchP99UsMedian: spread(trials.map((t) => t.touchP99Us))!.median,
      frameFetchMsP50: frames.length ? spread(frames)!.median : null,
      frameFetchMsP99: frames.length
        ? quantile(
            [...frames].sort((a, b) => a - b),
            0.99,
          )
        : null,
      frameFetches: frames.length,
      frameFetchPartMsP50: spread(trials.flatMap((t) => t.frameTimings.map((x) => x.fetchMs)))?.median ?? null,
      frameDecodeMsP50: spread(trials.flatMap((t) => t.frameTimings.map((x) => x.decodeMs)))?.median ?? null,
      readsAheadP50: spread(trials.flatMap((t) => t.frameTimings.map((x) => x.readsAhead)))?.median ?? null,
      floorMs: l ? (neededBytes / l.bytesPerSecond) * 1000 + l.rttMs : null,
      bareGetMsP50: spread(bareMs)?.median ?? null,
      loadAvg: [la0, os.loadavg()[0]!],
    };
    rows.push(row);
    process.stdout.write(
      `${store} ${row.link ?? 'local'} ${mode}: done ${row.doneMsMedian.toFixed(1)} ms (runs ${row.doneMsRuns.join(', ')}), frames p50 ${row.frameFetchMsP50?.toFixed(2) ?? '-'} ms\n`,
    );
  };

  if (KINDS.includes('dir')) {
    await run('dir', null, 'on-demand', () => served({ store: dirStore, manifest }));
    await run('dir', null, 'ws-cold-cache', () => served({ store: dirStore, manifest, prefetch: ws }));
    if (warmUp) await run('dir', null, 'daemon-ws-cold', () => daemonTrial({ store: dirStore }, warmUp, measured, real.trace));
  }
  for (const [kind, e] of Object.entries(endpoints) as Array<[StoreKind, NonNullable<(typeof endpoints)[StoreKind]>]>) {
    for (const lk of LINK_KEYS) {
      const link = await Link.start({ host: e.host, port: e.port }, LINKS[lk]);
      try {
        const linked = (): LinkedStore => {
          if (e.s3Endpoint) return { store: e.spec, s3Endpoint: link.url };
          const u = new URL(e.spec);
          u.host = new URL(link.url).host;
          return { store: u.toString().replace(/\/$/, '') };
        };
        await run(
          kind,
          lk,
          'on-demand',
          () => served({ ...linked(), manifest }, link),
          () => bareFrameGetMs(linked(), packed.manifest, 8),
          link,
        );
        if (MODES_RUN.includes('on-demand'))
          headStart.push({ store: kind, link: LINKS[lk].name, ...(await headStartReads(linked(), packed.manifest, 40)) });
        await run(
          kind,
          lk,
          'ws-cold-cache',
          // Each run's cold disk cache is its own, removed once measured (~35 MiB).
          async (i) => {
            const cacheDir = path.join(work, `cold-${kind}-${lk}-${i}`);
            try {
              return await served({ ...linked(), manifest, prefetch: ws, cacheDir }, link);
            } finally {
              fs.rmSync(cacheDir, { recursive: true, force: true });
            }
          },
          undefined,
          link,
        );
        const warm = path.join(work, `warm-${kind}-${lk}`);
        if (MODES_RUN.includes('warm-cache')) await trial({ ...linked(), manifest, cacheDir: warm }, real.image.path, real.trace); // fills the disk cache
        await run(kind, lk, 'warm-cache', () => served({ ...linked(), manifest, cacheDir: warm }, link), undefined, link);
        if (warmUp) await run(kind, lk, 'daemon-ws-cold', () => daemonTrial(linked(), warmUp, measured, real.trace, link), undefined, link);
      } finally {
        await link.close();
      }
    }
  }

  const localDone = rows.find((r) => r.store === 'dir' && r.mode === 'on-demand')?.doneMsMedian ?? NaN;
  const localWs = rows.find((r) => r.store === 'dir' && r.mode === 'ws-cold-cache')?.doneMsMedian ?? NaN;
  const localDaemonWs = rows.find((r) => r.store === 'dir' && r.mode === 'daemon-ws-cold')?.doneMsMedian ?? NaN;
  const targets: Target[] = rows
    .filter((r) => r.store !== 'dir')
    .map((r) => {
      const l = Object.values(LINKS).find((x) => x.name === r.link)!;
      const busy = `host CPUs ${fmt(r.hostBusyPctMedian)} % busy`;
      if (r.mode === 'ws-cold-cache') {
        const bound = 1.25 * Math.max(localWs, r.floorMs!);
        return {
          store: r.store,
          link: r.link,
          what: 'working set + cold disk cache: done <= 1.25 x max(local dir (ws), transfer floor)',
          valueMs: r.doneMsMedian,
          boundMs: bound,
          met: r.doneMsMedian <= bound,
          context: busy,
        };
      }
      if (r.mode === 'daemon-ws-cold') {
        const bound = 1.25 * Math.max(localDaemonWs, r.floorMs!);
        return {
          store: r.store,
          link: r.link,
          what: 'the same in a warm daemon: done <= 1.25 x max(local dir (ws, warm daemon), transfer floor)',
          valueMs: r.doneMsMedian,
          boundMs: bound,
          met: r.doneMsMedian <= bound,
          context: busy,
        };
      }
      if (r.mode === 'on-demand') {
        const meanFrame =
          sum.storedBytes / packed.manifest.chunks.reduce((n, c) => n + (c?.frameSha256?.filter((h) => h !== '').length ?? 0), 0);
        const bound = l.rttMs + (meanFrame / l.bytesPerSecond) * 1000 + 2;
        return {
          store: r.store,
          link: r.link,
          what: 'on demand: uncached frame p50 <= 1 RTT + mean frame transfer + 2 ms',
          valueMs: r.frameFetchMsP50 ?? NaN,
          boundMs: bound,
          met: (r.frameFetchMsP50 ?? Infinity) <= bound,
          context:
            r.bareGetMsP50 === null
              ? ''
              : `bare ranged GET ${fmt(r.bareGetMsP50)}; frame p50 - bare GET = ${fmt((r.frameFetchMsP50 ?? NaN) - r.bareGetMsP50)}`,
        };
      }
      const bound = 1.1 * localDone;
      return {
        store: r.store,
        link: r.link,
        what: 'warm disk cache: done <= 1.1 x local dir (on demand)',
        valueMs: r.doneMsMedian,
        boundMs: bound,
        met: r.doneMsMedian <= bound,
        context: busy,
      };
    });
  const result = {
    elapsedS: (Date.now() - t0) / 1000,
    image: real.image.origin,
    storedMiB: sum.storedBytes / MiB,
    frameSizeBytes: packed.manifest.frameSizeBytes,
    runs: RUNS,
    link: 'tools/bin/fc-link (C, one epoll thread): each response byte leaves once the bytes before it were serialized at the link rate, then after the whole RTT; requests are not delayed. The rate is per direction, one wire shared by all connections in turns of a read (at most 64 KiB; turns are given at most 1 ms ahead), as the link from a host to its store is shared by all its flows',
    rows,
    targets,
    receive,
    headStart,
    // Read before writeResults replaces the file they come from.
    earlierTargets: earlierRuns(),
  };
  const md = render(result);
  writeResults('remote', result, md.all, { targets: md.targets, receive: md.receive });
}

/** A target's verdict in an earlier run of the same command: the machine is shared, and verdicts near 1.0 flip from run to run. */
interface EarlierTargets {
  generatedAt: string;
  loadAvg1AtStart: number;
  targets: Array<Pick<Target, 'store' | 'link' | 'what' | 'valueMs' | 'boundMs' | 'met'>>;
}

/** Runs kept next to this one in the targets table. */
const EARLIER_RUNS_KEPT = 2;

/**
 * The targets of the last runs of this same command (bench/results/remote.json as it is before this
 * run overwrites it, and the runs it kept): another command (part of the matrix, other --runs)
 * starts afresh.
 */
function earlierRuns(): EarlierTargets[] {
  const file = path.join(RESULTS_DIR, 'remote.json');
  if (!fs.existsSync(file)) return [];
  const prev = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    command?: string;
    generatedAt?: string;
    host?: { loadAvg1AtStart?: number };
    results?: { targets?: Target[]; earlierTargets?: EarlierTargets[] };
  };
  if (prev.command !== benchCommand() || !prev.results?.targets || !prev.generatedAt) return [];
  const targets = prev.results.targets.map(({ store, link, what, valueMs, boundMs, met }) => ({
    store,
    link,
    what,
    valueMs,
    boundMs,
    met,
  }));
  return [
    ...(prev.results.earlierTargets ?? []),
    { generatedAt: prev.generatedAt, loadAvg1AtStart: prev.host?.loadAvg1AtStart ?? NaN, targets },
  ].slice(-EARLIER_RUNS_KEPT);
}

function render(r: {
  elapsedS: number;
  storedMiB: number;
  frameSizeBytes?: number;
  runs: number;
  link: string;
  rows: Row[];
  targets: Target[];
  receive: ReceiveRow[];
  headStart: HeadStartRow[];
  earlierTargets: EarlierTargets[];
}): { all: string; targets: string; receive: string } {
  const ms = (x: number | null): string => fmt(x);
  const at = (iso: string): string => `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
  const verdict = (t: { valueMs: number; boundMs: number; met: boolean }): string =>
    `${fmt(t.valueMs / t.boundMs)} ${t.met ? 'met' : '**missed**'}`;
  const targets = mdTable(
    [
      'target',
      'store',
      'link',
      'measured ms',
      'bound ms',
      'measured / bound',
      'met',
      'also measured in that row',
      ...r.earlierTargets.map((e) => `earlier run ${at(e.generatedAt)} (load ${fmt(e.loadAvg1AtStart)})`),
    ],
    r.targets.map((t) => [
      t.what,
      t.store,
      t.link ?? '',
      ms(t.valueMs),
      ms(t.boundMs),
      fmt(t.valueMs / t.boundMs),
      t.met ? 'met' : '**missed**',
      t.context,
      ...r.earlierTargets.map((e) => {
        const same = e.targets.find((x) => x.store === t.store && x.link === t.link && x.what === t.what);
        return same ? verdict(same) : '-';
      }),
    ]),
  );
  const rows = mdTable(
    [
      'store',
      'link',
      'mode',
      'restore-to-done ms (median)',
      'runs',
      'of which the VM waited ms (median)',
      'handler CPU ms (median)',
      'of which main thread; its wait for a CPU ms',
      'link CPU ms (median)',
      'host CPUs busy % (median)',
      'touch p50 / p99 µs',
      'uncached frame want→post p50 / p99 ms (n)',
      'of which want→bytes / decode p50 ms',
      'bare ranged GET p50 ms',
      'store reads ahead (p50)',
      'transfer floor ms',
      'load avg start→end',
    ],
    r.rows.map((x) => [
      x.store,
      x.link ?? 'local',
      x.store === 'dir' && x.mode === 'ws-cold-cache'
        ? 'working set'
        : x.store === 'dir' && x.mode === 'daemon-ws-cold'
          ? 'working set, warm daemon'
          : x.mode,
      ms(x.doneMsMedian),
      x.doneMsRuns.join(', '),
      ms(x.touchWaitMsMedian),
      ms(x.cpuMsMedian),
      `${ms(x.mainCpuMsMedian)}; ${ms(x.mainWaitMsMedian)}`,
      ms(x.linkCpuMsMedian),
      x.hostBusyPctMedian.toFixed(0),
      `${fmt(x.touchP50UsMedian)} / ${fmt(x.touchP99UsMedian)}`,
      `${ms(x.frameFetchMsP50)} / ${ms(x.frameFetchMsP99)} (${x.frameFetches})`,
      `${ms(x.frameFetchPartMsP50)} / ${ms(x.frameDecodeMsP50)}`,
      ms(x.bareGetMsP50),
      fmt(x.readsAheadP50),
      ms(x.floorMs),
      x.loadAvg.map((v) => v.toFixed(1)).join(' → '),
    ]),
  );
  const head = `Real 128 MiB guest, its restore trace replayed by the emulator (1 vCPU), ${fmt(r.storedMiB)} MiB stored, ${(r.frameSizeBytes ?? 0) / 1024} KiB frames; medians of ${r.runs} runs (${fmt(r.elapsedS)} s in all). Link: ${r.link}. "The VM waited": its vCPU's time in first touches of pages, summed (the rest of restore-to-done is its own work, and its wait for a CPU). "Bare ranged GET": real frames read one at a time by a store client through the same link, interleaved with the on-demand runs: the link as this machine delivers it, so the handler's own share of a fault is the frame time minus it. "Handler CPU": every thread of the serving process, from ready to the VM's end, and of it the main thread's (which takes in the bodies of the reads faults wait for; background bodies are taken in on the store body thread) with the time it was runnable but waiting for a CPU (schedstat); "link CPU": the link process over the same restore; the link, the servers and the emulator share the same CPUs. "Host CPUs busy": the share of all ${os.cpus().length} CPUs in use over the restore, by every process (/proc/stat, 10 ms ticks): near 100, the restore waits for a CPU, and the CPU the link, the server and taking bodies in cost a remote row lengthens it.`;
  const receive = r.receive.length
    ? [
        `Taking the snapshot's ${fmt(r.receive[0]!.mib)} MiB of chunk bodies in, in a fresh process: every chunk GET from the server at once (no link), as a working-set prefetch asks; CPU from the first request to the last byte, medians (max) of ${r.receive[0]!.runs} runs. "store": the store as the handler opens it (undici dispatch into shared memory), read as a fault's reads are, on the main thread; "store-background": read as background reads are (a working set's, a chunk's rest behind its frame), on the store body thread; "request-stream": undici request() with its body read through the async iterator, the path it replaced. "Other threads": V8's compile and GC helper, libuv's pool, the store body thread. The wall time is what the server and this host deliver at most, whatever the link.`,
        '',
        mdTable(
          ['store', 'read path', 'Node flags', 'main thread CPU ms', 'other threads CPU ms', 'wall ms'],
          r.receive.map((x) => [
            x.store,
            x.path,
            x.nodeFlags,
            `${fmt(x.mainCpuMsMedian)} (${fmt(x.mainCpuMsMax)})`,
            `${fmt(x.otherCpuMsMedian)} (${fmt(x.otherCpuMsMax)})`,
            fmt(x.wallMsMedian),
          ]),
        ),
      ].join('\n')
    : 'Receive cost: not measured (no remote store in this run).';
  const headStart = r.headStart.length
    ? [
        `A fault's frame read and its chunk's whole read sent right after it (what a fault on an uncached chunk makes the handler do), through the link, by a store client with no handler: p50 ms of ${r.headStart[0]!.frames} real frames each way, times from the frame's request. "Side by side": the whole read sent as another read a fault waits for; "background": sent as the handler sends it, 2 ms behind the frame's request (HEAD_START_MS), its body taken in on the store body thread (src/store/read-priority.ts).`,
        '',
        mdTable(
          ['store', 'link', 'frame alone', 'frame / whole, side by side', 'frame / whole, whole as background'],
          r.headStart.map((x) => [
            x.store,
            x.link,
            fmt(x.aloneMsP50),
            `${fmt(x.sideBySideMsP50)} / ${fmt(x.sideBySideWholeMsP50)}`,
            `${fmt(x.backgroundMsP50)} / ${fmt(x.backgroundWholeMsP50)}`,
          ]),
        ),
      ].join('\n')
    : '';
  return { all: [head, '', rows, '', targets, '', receive, '', headStart].join('\n'), targets, receive };
}

/** Stops the services this run started and removes its work directory (once). */
function cleanUp(): void {
  for (const stop of stops.splice(0).reverse()) {
    try {
      stop();
    } catch (err) {
      process.stderr.write(`stopping a service: ${(err as Error).message}\n`);
    }
  }
  // Retried: after Ctrl-C the children (which got it too) may still be writing in it.
  fs.rmSync(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
}

// Ctrl-C or a kill: the same clean-up (a finally does not run when the signal ends the process),
// after the handlers and emulators are killed: after a Ctrl-C they got the signal too and could
// still write in the work directory; a kill of this process alone would leave them running. A link
// exits when this process's pipe to it closes.
function interrupted(signal: 'SIGINT' | 'SIGTERM' = 'SIGINT'): never {
  process.stderr.write(`${signal === 'SIGINT' ? 'interrupted' : 'terminated'}: cleaning up\n`);
  for (const child of running) child.kill('SIGKILL');
  cleanUp();
  process.exit(signal === 'SIGINT' ? 130 : 143);
}
process.once('SIGINT', () => interrupted('SIGINT'));
process.once('SIGTERM', () => interrupted('SIGTERM'));

try {
  await main();
} finally {
  cleanUp();
}
