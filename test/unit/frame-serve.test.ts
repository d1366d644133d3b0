// Serving framed chunks on the main thread: the wanted frame is fetched (ranged read), verified and
// posted before the rest of its chunk arrives; one ranged read per frame however many VMs want it;
// a damaged frame is read again once, then stops the VM; version 1 snapshots are served whole.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { native } from '../../src/kernel/native.js';
import { DirStore } from '../../src/store/dir.js';
import { StoreError, type ChunkStore, type GetOptions } from '../../src/store/types.js';
import { FcUffdError } from '../../src/errors.js';
import { ChunkCodecPool } from '../../src/snapshot/chunk-pool.js';
import { ChunkCache } from '../../src/snapshot/chunk-cache.js';
import { aheadChunks, ServedChunkedSnapshot, type ChunkReply, type ChunkWant } from '../../src/snapshot/chunked-source.js';
import { analyzeChunk, encodeChunkBlob, sha256Hex } from '../../src/snapshot/chunk-format.js';
import { encodeManifest, manifestId, frameOffsets, type Manifest } from '../../src/snapshot/manifest.js';
import { INLINE_DECODE_MAX_BYTES } from '../../src/snapshot/frame-load.js';
import { loadManifest, pack } from '../../src/snapshot/pack.js';
import { tempDir } from '../helpers/files.js';
import { WrappedStore } from '../helpers/wrapped-store.js';

const MiB = 1024 * 1024;
const FRAME = 256 * 1024;
const dir = tempDir('fc-uffd-frames-');
const pool = new ChunkCodecPool(2);
const fds: number[] = [];
/** Every VM end a test made: an attached port keeps the process alive until it is closed. */
const ports: Array<{ snap: ServedChunkedSnapshot; channel: { port: MessagePort; wakeFd: number }; port2: MessagePort }> = [];
after(async () => {
  for (const p of ports) {
    p.snap.detachVm(p.channel);
    p.channel.port.close();
    p.port2.close();
  }
  await pool.close();
  for (const fd of fds) fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** 8 MiB: random pages with zero pages sprinkled in, so frames have holes. */
function image(): Buffer {
  const data = crypto.randomBytes(8 * MiB);
  for (let p = 0; p < 2048; p += 7) data.fill(0, p * 4096, (p + 1) * 4096);
  return data;
}

/** Wraps a store: whole reads wait for `release()` and may be damaged; ranged reads are counted and may be damaged. */
class GateStore extends WrappedStore {
  ranged: Array<{ offset: number; length: number }> = [];
  wholeReads = 0;
  damageRanged = 0;
  /** Whole reads to damage (a flipped byte at this offset of the blob). */
  damageWhole = 0;
  damageWholeAt = 0;
  private open!: () => void;
  private readonly gate = new Promise<void>((r) => (this.open = r));
  override get description(): string {
    return `gate(${this.inner.description})`;
  }
  release(): void {
    this.open();
  }
  override async getChunk(digest: string, o?: GetOptions): Promise<Uint8Array> {
    if (!o?.range) {
      this.wholeReads++;
      await this.gate;
      const blob = Uint8Array.from(await this.inner.getChunk(digest));
      if (this.damageWhole > 0) {
        this.damageWhole--;
        blob[this.damageWholeAt]! ^= 0x40;
      }
      return blob;
    }
    this.ranged.push(o.range);
    const bytes = Uint8Array.from(await this.inner.getChunk(digest, o));
    if (this.damageRanged > 0) {
      this.damageRanged--;
      bytes[bytes.length >> 1]! ^= 0x40;
    }
    return bytes;
  }
}

/** Wraps a store: every read hangs until its signal fires (counted) or `release()`; then it is served. */
class HangStore extends WrappedStore {
  readonly reads: Array<{ range: boolean; signal: AbortSignal | undefined; aborted: boolean }> = [];
  private open!: () => void;
  private readonly gate = new Promise<void>((r) => (this.open = r));
  override get description(): string {
    return `hang(${this.inner.description})`;
  }
  release(): void {
    this.open();
  }
  override async getChunk(digest: string, o?: GetOptions): Promise<Uint8Array> {
    const read = { range: o?.range !== undefined, signal: o?.signal, aborted: false };
    this.reads.push(read);
    await new Promise<void>((resolve, reject) => {
      void this.gate.then(resolve);
      o?.signal?.addEventListener('abort', () => {
        read.aborted = true;
        reject(new StoreError('aborted', 'read aborted', false));
      });
    });
    return this.inner.getChunk(digest, o?.range ? { range: o.range } : {});
  }
  /** Manifest reads hang too (and are counted in `reads`) when set. */
  hangManifest = false;
  override async getManifest(id: string, o?: GetOptions): Promise<Uint8Array> {
    if (this.hangManifest) await this.getChunk('', o?.signal ? { signal: o.signal } : {});
    return this.inner.getManifest(id);
  }
}

/**
 * Wraps a store: whole reads wait for `release()` (GateStore); each ranged read n waits until the
 * test calls `answers[n]`, or until its signal fires (`aborted[n]`), when it is rejected, unless n
 * is in `answerAfterAbort` (its bytes were on the way: it still answers when told).
 */
class StepStore extends GateStore {
  readonly answers: Array<() => void> = [];
  readonly aborted: boolean[] = [];
  constructor(
    inner: ChunkStore,
    private readonly answerAfterAbort = new Set<number>(),
  ) {
    super(inner);
  }
  override get description(): string {
    return `step(${this.inner.description})`;
  }
  override async getChunk(digest: string, o?: GetOptions): Promise<Uint8Array> {
    if (!o?.range) return super.getChunk(digest, o);
    const n = this.ranged.push(o.range) - 1;
    this.aborted[n] = false;
    await new Promise<void>((resolve, reject) => {
      this.answers[n] = resolve;
      o.signal?.addEventListener('abort', () => {
        this.aborted[n] = true;
        if (!this.answerAfterAbort.has(n)) reject(new StoreError('aborted', 'read aborted', false));
      });
    });
    return this.inner.getChunk(digest, { range: o.range });
  }
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

let seq = 0;
async function packed(frameSizeBytes = FRAME): Promise<{ data: Buffer; store: DirStore; id: string }> {
  const data = image();
  const mem = path.join(dir, `mem-${seq}`);
  fs.writeFileSync(mem, data);
  const store = DirStore.open(path.join(dir, `store-${seq++}`), { fsync: false });
  const r = await pack({ memPath: mem, store, pool, frameSizeBytes });
  return { data, store, id: r.id };
}

/** A VM's end: sends wants, collects replies. */
function vm(snap: ServedChunkedSnapshot): {
  want: (m: Omit<ChunkWant, 'type'>) => void;
  next: (pred: (r: ChunkReply) => boolean) => Promise<ChunkReply>;
  end: () => void;
  replies: ChunkReply[];
} {
  const { port1, port2 } = new MessageChannel();
  const wakeFd = native.eventfdCreate();
  fds.push(wakeFd);
  const channel = { port: port1, wakeFd };
  snap.attachVm(channel);
  ports.push({ snap, channel, port2 });
  const replies: ChunkReply[] = [];
  const waiters: Array<() => void> = [];
  port2.on('message', (m: ChunkReply) => {
    replies.push(m);
    for (const w of waiters.splice(0)) w();
  });
  port2.unref();
  return {
    replies,
    end: () => snap.detachVm(channel),
    want: (m) => port2.postMessage({ type: 'want', ...m }),
    next: async (pred) => {
      for (;;) {
        const i = replies.findIndex(pred);
        if (i >= 0) return replies.splice(i, 1)[0]!;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

describe('framed serving', () => {
  test('a fault in frame k is served before the rest of its chunk arrives; the whole chunk follows; one ranged read per frame for two VMs', async () => {
    const { data, store, id } = await packed();
    const gate = new GateStore(store);
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store: gate, cache: new ChunkCache(), pool, prefetchChunks: 0 });
    const a = vm(snap);
    const b = vm(snap);
    a.want({ chunk: 1, frame: 5 });
    b.want({ chunk: 1, frame: 5 });
    const ra = await a.next((r) => r.type !== 'chunk');
    const rb = await b.next((r) => r.type !== 'chunk');
    assert.equal(ra.type, 'frame');
    assert.equal(rb.type, 'frame');
    assert.equal(gate.wholeReads, 1, 'the whole read was started behind the frame');
    assert.equal(snap.cache.has(snap.manifest.chunks[1]!.digest), false, 'the whole chunk has not arrived');
    const off = 4 * MiB + 5 * FRAME;
    assert.deepEqual(
      Buffer.from(new Uint8Array((ra as { buffer: SharedArrayBuffer }).buffer, 5 * FRAME, FRAME)),
      data.subarray(off, off + FRAME),
    );
    assert.equal(gate.ranged.length, 1, 'one ranged read for both VMs');
    const e = snap.manifest.chunks[1]!;
    const offsets = frameOffsets(e, 4 * MiB, FRAME);
    assert.deepEqual(gate.ranged[0], { offset: offsets[5], length: offsets[6]! - offsets[5]! });
    gate.release();
    a.want({ chunk: 1 });
    const whole = await a.next((r) => r.type === 'chunk');
    assert.equal(whole.type, 'chunk');
    assert.deepEqual(Buffer.from(new Uint8Array((whole as { buffer: SharedArrayBuffer }).buffer)), data.subarray(4 * MiB, 8 * MiB));
    assert.equal(gate.wholeReads, 1);
    assert.equal(gate.ranged.length, 1, 'the frame already decoded was not read again');
    snap.close();
  });

  test("a fault's frame of up to 512 KiB is decoded on the main thread, a larger one on a codec thread", async () => {
    /** Counts the frame decodes given to its threads. */
    class CountingPool extends ChunkCodecPool {
      frameTasks = 0;
      override decodeFrames(...args: Parameters<ChunkCodecPool['decodeFrames']>): Promise<void> {
        this.frameTasks++;
        return super.decodeFrames(...args);
      }
    }
    for (const [frameBytes, threadTasks] of [
      [INLINE_DECODE_MAX_BYTES, 0],
      [2 * INLINE_DECODE_MAX_BYTES, 1],
    ] as const) {
      const { data, store, id } = await packed(frameBytes);
      const gate = new GateStore(store); // the whole read waits: only the ranged read decodes
      const counting = new CountingPool(1);
      try {
        const snap = await ServedChunkedSnapshot.open({
          manifest: id,
          store: gate,
          cache: new ChunkCache(),
          pool: counting,
          prefetchChunks: 0,
        });
        const a = vm(snap);
        a.want({ chunk: 1, frame: 1 });
        const r = await a.next((x) => x.type !== 'chunk');
        assert.equal(r.type, 'frame');
        const off = 4 * MiB + frameBytes;
        assert.deepEqual(
          Buffer.from(new Uint8Array((r as { buffer: SharedArrayBuffer }).buffer, frameBytes, frameBytes)),
          data.subarray(off, off + frameBytes),
        );
        assert.equal(counting.frameTasks, threadTasks, `${frameBytes / 1024} KiB frames: frame decodes on a codec thread`);
        gate.release();
        snap.close();
      } finally {
        await counting.close();
      }
    }
  });

  test('a frame the whole read claimed is released once it is verified, not when the whole chunk is', async () => {
    const { data, store, id } = await packed();
    const gate = new GateStore(store);
    // One codec thread: the whole read's frames are decoded one after another, in order.
    const one = new ChunkCodecPool(1);
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store: gate, cache: new ChunkCache(), pool: one, prefetchChunks: 0 });
    const load = snap.framedLoad(0);
    gate.release();
    while (!load.inFlight(0)) await new Promise((r) => setImmediate(r));
    const last = load.frameCount - 1;
    const lastDecoded = (): boolean =>
      Buffer.from(load.buffer, last * FRAME, FRAME).equals(data.subarray(last * FRAME, (last + 1) * FRAME));
    await load.frame(0);
    assert.deepEqual(Buffer.from(load.buffer, 0, FRAME), data.subarray(0, FRAME));
    assert.equal(lastDecoded(), false, 'frame 0 was released before the last frame was decoded');
    await load.whole();
    assert.equal(lastDecoded(), true);
    assert.deepEqual(Buffer.from(load.buffer), data.subarray(0, 4 * MiB));
    assert.equal(gate.ranged.length, 0, 'no ranged read: the whole read had claimed the frame');
    snap.close();
    await one.close();
  });

  test('a frame the whole blob brings before its ranged read answers is served from the blob, and that read is aborted', async () => {
    const { data, store, id } = await packed();
    const slow = new StepStore(store); // its ranged read is never answered
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store: slow, cache: new ChunkCache(), pool, prefetchChunks: 0 });
    const a = vm(snap);
    a.want({ chunk: 1, frame: 2 });
    while (slow.ranged.length === 0) await tick();
    slow.release();
    const r = await a.next((x) => x.type !== 'chunk');
    assert.equal(r.type, 'frame');
    const off = 4 * MiB + 2 * FRAME;
    assert.deepEqual(
      Buffer.from(new Uint8Array((r as { buffer: SharedArrayBuffer }).buffer, 2 * FRAME, FRAME)),
      data.subarray(off, off + FRAME),
    );
    assert.deepEqual(
      [slow.ranged.length, slow.aborted.filter(Boolean).length, slow.wholeReads],
      [1, 1, 1],
      'one ranged read, aborted; one whole read',
    );
    a.want({ chunk: 1 });
    const whole = await a.next((x) => x.type === 'chunk');
    assert.deepEqual(Buffer.from(new Uint8Array((whole as { buffer: SharedArrayBuffer }).buffer)), data.subarray(4 * MiB, 8 * MiB));
    snap.close();
  });

  test("a ranged read whose waiters all left but whose bytes came anyway releases the next VM's wait for that frame", async () => {
    const { data, store, id } = await packed();
    const steps = new StepStore(store, new Set([1])); // read 1 answers even after its VM left
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store: steps, cache: new ChunkCache(), pool, prefetchChunks: 0 });
    const stays = vm(snap); // keeps the chunk's load going: it waits for another frame
    stays.want({ chunk: 1, frame: 0 });
    while (steps.ranged.length < 1) await tick();
    const a = vm(snap);
    a.want({ chunk: 1, frame: 4 });
    while (steps.ranged.length < 2) await tick();
    a.end();
    while (!steps.aborted[1]) await tick();
    const b = vm(snap);
    b.want({ chunk: 1, frame: 4 });
    while (steps.ranged.length < 3) await tick();
    steps.answers[1]!(); // the abandoned read's bytes come: it decodes the frame
    const r = await b.next((x) => x.type !== 'chunk');
    assert.equal(r.type, 'frame');
    const off = 4 * MiB + 4 * FRAME;
    assert.deepEqual(
      Buffer.from(new Uint8Array((r as { buffer: SharedArrayBuffer }).buffer, 4 * FRAME, FRAME)),
      data.subarray(off, off + FRAME),
    );
    assert.equal(steps.aborted[2], true, 'the later read, no longer needed, was aborted');
    assert.equal(steps.aborted[0], false, "the other VM's read goes on");
    steps.answers[0]!();
    assert.equal((await stays.next((x) => x.type !== 'chunk')).type, 'frame');
    steps.release();
    snap.close();
  });

  test('a frame damaged in the whole read: the frames that verified are released, the read is repeated for the rest; damaged twice, only those fail', async () => {
    for (const times of [1, 2]) {
      const { data, store, id } = await packed();
      const gate = new GateStore(store);
      const snap = await ServedChunkedSnapshot.open({ manifest: id, store: gate, cache: new ChunkCache(), pool, prefetchChunks: 0 });
      const offsets = frameOffsets(snap.manifest.chunks[0]!, 4 * MiB, FRAME);
      gate.damageWhole = times;
      gate.damageWholeAt = (offsets[3]! + offsets[4]!) >> 1; // inside frame 3
      const load = snap.framedLoad(0);
      gate.release();
      const whole = load.whole().then(
        () => 'ok',
        (e: unknown) => (e as FcUffdError).code,
      );
      while (!load.inFlight(3)) await new Promise((r) => setImmediate(r));
      await load.frame(0);
      assert.deepEqual(Buffer.from(load.buffer, 0, FRAME), data.subarray(0, FRAME), `${times}: frame 0`);
      if (times === 1) {
        await load.frame(3);
        assert.equal(await whole, 'ok');
        assert.deepEqual(Buffer.from(load.buffer), data.subarray(0, 4 * MiB));
      } else {
        await assert.rejects(load.frame(3), (e: unknown) => (e as FcUffdError).code === 'SNAPSHOT_CORRUPT_CHUNK');
        assert.equal(await whole, 'SNAPSHOT_CORRUPT_CHUNK');
        await load.frame(5);
        assert.deepEqual(Buffer.from(load.buffer, 5 * FRAME, FRAME), data.subarray(5 * FRAME, 6 * FRAME), 'frame 5 verified');
      }
      assert.equal(gate.wholeReads, 2, `${times}: read again once`);
      snap.close();
    }
  });

  test('a flipped byte in a frame is read again once; damaged twice, the VM gets SNAPSHOT_CORRUPT_CHUNK and never the frame', async () => {
    const { data, store, id } = await packed();
    const gate = new GateStore(store);
    gate.damageRanged = 1;
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store: gate, cache: new ChunkCache(), pool, prefetchChunks: 0 });
    const v = vm(snap);
    v.want({ chunk: 0, frame: 3 });
    const ok = await v.next(() => true);
    assert.equal(ok.type, 'frame');
    assert.equal(gate.ranged.length, 2);
    assert.deepEqual(
      Buffer.from(new Uint8Array((ok as { buffer: SharedArrayBuffer }).buffer, 3 * FRAME, FRAME)),
      data.subarray(3 * FRAME, 4 * FRAME),
    );
    gate.damageRanged = 2;
    v.want({ chunk: 0, frame: 9 });
    const bad = await v.next(() => true);
    assert.equal(bad.type, 'error');
    assert.equal((bad as { code: string }).code, 'SNAPSHOT_CORRUPT_CHUNK');
    gate.release();
    snap.close();
  });

  test('a version 1 snapshot (no frames) is served whole, whatever frame is asked for', async () => {
    const data = image();
    const store = DirStore.open(path.join(dir, 'v1'), { fsync: false });
    const chunks: Manifest['chunks'] = [];
    for (let i = 0; i < 2; i++) {
      const c = data.subarray(i * 4 * MiB, (i + 1) * 4 * MiB);
      const a = analyzeChunk(c);
      const blob = encodeChunkBlob(c, a);
      const digest = sha256Hex(c);
      await store.putChunk(digest, blob);
      chunks.push({ digest, storedBytes: blob.length, zeroPages: Buffer.from(a.zeroBitmap).toString('base64') });
    }
    const m: Manifest = {
      format: 'fc-uffd-chunked-snapshot',
      version: 1,
      memorySizeBytes: 8 * MiB,
      chunkSizeBytes: 4 * MiB,
      pageSizeBytes: 4096,
      digestAlgorithm: 'sha256',
      compression: { algorithm: 'zstd', level: 3 },
      base: null,
      chunks,
    };
    const bytes = encodeManifest(m);
    await store.putManifest(manifestId(bytes), bytes);
    const snap = await ServedChunkedSnapshot.open({
      manifest: await loadManifest(manifestId(bytes), store),
      store,
      cache: new ChunkCache(),
      pool,
      prefetchChunks: 0,
    });
    const v = vm(snap);
    v.want({ chunk: 1, frame: 2 });
    const r = await v.next(() => true);
    assert.equal(r.type, 'chunk');
    assert.deepEqual(Buffer.from(new Uint8Array((r as { buffer: SharedArrayBuffer }).buffer)), data.subarray(4 * MiB));
    snap.close();
  });
});

describe('prefetch lookahead', () => {
  test('a VM may ask for 16 chunks ahead at most, within a quarter of the cache and 64 MiB, at least one', async () => {
    const MB = MiB;
    assert.equal(aheadChunks(1024 * MB, 4 * MB), 16);
    assert.equal(aheadChunks(1024 * MB, 2 * MB), 16);
    assert.equal(aheadChunks(1024 * MB, 64 * MB), 1, 'one chunk of 64 MiB');
    assert.equal(aheadChunks(128 * MB, 4 * MB), 8, 'a quarter of a 128 MiB cache');
    assert.equal(aheadChunks(16 * MB, 4 * MB), 1, 'a small cache: one chunk still');
    assert.equal(aheadChunks(1024 * MB, 256 * MB), 1);
    const { store, id } = await packed();
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store, cache: new ChunkCache(32 * MB), pool, prefetchChunks: 0 });
    const { port1, port2 } = new MessageChannel();
    const channel = { port: port1, wakeFd: -1 };
    const ref = snap.attachVm(channel);
    assert.equal(ref.aheadChunks, 2, "a VM is told its snapshot cache's bound");
    snap.detachVm(channel);
    port1.close();
    port2.close();
    snap.close();
  });
});

/** Wraps a store: reads of `digest` hang while it is "down"; `comeBack()` fails them (their connection broke) and serves every later read. */
class DownStore extends WrappedStore {
  reads = 0;
  private fail!: (err: Error) => void;
  private readonly broken = new Promise<never>((_, reject) => (this.fail = reject));
  private down = true;
  constructor(
    inner: ChunkStore,
    private readonly digest: string,
  ) {
    super(inner);
    this.broken.catch(() => undefined);
  }
  comeBack(): void {
    this.down = false;
    this.fail(new StoreError('io', 'connection refused while the server was down', true));
  }
  override async getChunk(digest: string, o?: GetOptions): Promise<Uint8Array> {
    if (digest === this.digest) {
      this.reads++;
      if (this.down) await this.broken;
    }
    return this.inner.getChunk(digest, o);
  }
}

describe('a store that comes back', () => {
  test('a VM that joined a chunk read begun while the store was down gets a fresh read when that one fails, and the right bytes', async () => {
    const { data, store, id } = await packed();
    const m = (await loadManifest(id, store)).manifest;
    const down = new DownStore(store, m.chunks[1]!.digest);
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store: down, cache: new ChunkCache(), pool, prefetchChunks: 1 });
    const a = vm(snap);
    a.want({ chunk: 0 }); // served; prefetches chunk 1, whose read hangs: the store is down
    assert.equal((await a.next(() => true)).type, 'chunk');
    await tick();
    assert.equal(down.reads, 1, 'the prefetch of chunk 1 is under way');
    const b = vm(snap);
    b.want({ chunk: 1 }); // joins the prefetch's read
    await tick();
    down.comeBack(); // that read fails; the store answers again
    const r = await b.next(() => true);
    assert.equal(r.type, 'chunk', `the VM is served, not stopped: ${JSON.stringify(r.type === 'error' ? r : r.type)}`);
    assert.deepEqual(Buffer.from(new Uint8Array((r as { buffer: SharedArrayBuffer }).buffer)), data.subarray(4 * MiB, 8 * MiB));
    assert.equal(down.reads, 2, 'one fresh read for the VM that joined');
    snap.close();
  });
});

describe('random timings', () => {
  test('ranged and whole reads in any order, waiters leaving at any time: a released frame holds its bytes, a waiter that stays is released, the whole chunk is right', async () => {
    const { data, store, id } = await packed();
    let seed = 12345;
    /** Deterministic pseudo-random integer in [0, n) (a failure replays the same way). */
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    /** Every read answers after 0-7 ms, whole or ranged. */
    class DelayStore extends GateStore {
      override async getChunk(digest: string, o?: GetOptions): Promise<Uint8Array> {
        await sleep(rand(8));
        o?.signal?.throwIfAborted();
        return this.inner.getChunk(digest, o?.range ? { range: o.range } : {});
      }
    }
    const frames = 16;
    for (let round = 0; round < 30; round++) {
      const snap = await ServedChunkedSnapshot.open({
        manifest: id,
        store: new DelayStore(store),
        cache: new ChunkCache(),
        pool,
        prefetchChunks: 0,
      });
      const chunk = rand(2);
      const base = chunk * 4 * MiB;
      const load = snap.framedLoad(chunk, rand(frames));
      const waiters = Array.from({ length: 8 }, async () => {
        await sleep(rand(10));
        const k = rand(frames);
        const leave = new AbortController();
        const leaveAfterMs = rand(3) === 0 ? rand(6) : -1;
        if (leaveAfterMs >= 0) setTimeout(() => leave.abort(), leaveAfterMs);
        try {
          await load.frame(k, leave.signal);
        } catch (err) {
          assert.equal(leave.signal.aborted, true, `round ${round}: frame ${k} failed for a waiter that stayed: ${(err as Error).message}`);
          return;
        }
        assert.ok(
          Buffer.from(load.buffer, k * FRAME, FRAME).equals(data.subarray(base + k * FRAME, base + (k + 1) * FRAME)),
          `round ${round}: frame ${k} released with wrong bytes`,
        );
      });
      await Promise.all(waiters);
      // The load was started without a signal, as a prefetch starts one: its whole read goes on.
      assert.ok(Buffer.from(await load.whole()).equals(data.subarray(base, base + 4 * MiB)), `round ${round}: whole chunk`);
      snap.close();
    }
  });
});

describe('cancellation', () => {
  test('a VM that ends stops waiting; its frame read and the whole read, wanted by nobody else, are aborted; a later VM starts afresh and gets the right bytes', async () => {
    const { data, store, id } = await packed();
    const hang = new HangStore(store);
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store: hang, cache: new ChunkCache(), pool, prefetchChunks: 0 });
    const a = vm(snap);
    a.want({ chunk: 1, frame: 5 });
    await tick();
    assert.deepEqual(hang.reads.map((r) => r.range).sort(), [false, true], 'a ranged and a whole read under way');
    assert.ok(hang.reads.every((r) => r.signal !== undefined && !r.aborted));
    a.end();
    await tick();
    assert.deepEqual(
      hang.reads.map((r) => r.aborted),
      [true, true],
      'both reads aborted once the only VM waiting ended',
    );
    assert.equal(a.replies.length, 0, 'nothing posted to the ended VM');
    hang.release();
    const b = vm(snap);
    b.want({ chunk: 1, frame: 5 });
    const r = await b.next(() => true);
    assert.equal(r.type, 'frame');
    const off = 4 * MiB + 5 * FRAME;
    assert.deepEqual(
      Buffer.from(new Uint8Array((r as { buffer: SharedArrayBuffer }).buffer, 5 * FRAME, FRAME)),
      data.subarray(off, off + FRAME),
    );
    b.want({ chunk: 1 });
    const whole = await b.next((x) => x.type === 'chunk');
    assert.deepEqual(Buffer.from(new Uint8Array((whole as { buffer: SharedArrayBuffer }).buffer)), data.subarray(4 * MiB, 8 * MiB));
    assert.equal(hang.reads.filter((x) => x.range).length, 2, 'the new VM read its frame again');
    snap.close();
  });

  test('while another VM still waits for a frame, one VM ending aborts nothing', async () => {
    const { data, store, id } = await packed();
    const hang = new HangStore(store);
    const snap = await ServedChunkedSnapshot.open({ manifest: id, store: hang, cache: new ChunkCache(), pool, prefetchChunks: 0 });
    const a = vm(snap);
    const b = vm(snap);
    a.want({ chunk: 0, frame: 2 });
    b.want({ chunk: 0, frame: 2 });
    await tick();
    a.end();
    await tick();
    assert.ok(hang.reads.length === 2 && hang.reads.every((r) => !r.aborted), 'the reads go on for the VM still waiting');
    hang.release();
    const r = await b.next(() => true);
    assert.equal(r.type, 'frame');
    assert.deepEqual(
      Buffer.from(new Uint8Array((r as { buffer: SharedArrayBuffer }).buffer, 2 * FRAME, FRAME)),
      data.subarray(2 * FRAME, 3 * FRAME),
    );
    assert.equal(a.replies.length, 0);
    snap.close();
  });

  test('open() takes a signal: aborted before, or during a manifest read that hangs, it rejects with ABORTED', async () => {
    const { store, id } = await packed();
    await assert.rejects(
      ServedChunkedSnapshot.open({ manifest: id, store, pool, signal: AbortSignal.abort() }),
      (err: unknown) => err instanceof FcUffdError && err.code === 'ABORTED',
    );
    const hang = new HangStore(store);
    hang.hangManifest = true;
    const ac = new AbortController();
    const opening = ServedChunkedSnapshot.open({ manifest: id, store: hang, pool, signal: ac.signal });
    await tick();
    ac.abort(new Error('Ctrl-C'));
    await assert.rejects(opening, (err: unknown) => err instanceof FcUffdError && err.code === 'ABORTED' && /Ctrl-C/.test(err.message));
    assert.equal(hang.reads[0]?.aborted, true, 'the manifest read was aborted');
  });
});
