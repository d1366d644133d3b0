// Read priority: a background read's body is not taken in while a fault-wait is open, one ObjectStore
// opens for each read a fault waits for (the stores' own GETs are tested against real servers in
// http-store / s3-store).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { ObjectStore, SharedBody, type BodyRead, type ByteRange } from '../../src/store/object-store.js';
import { ReadPriority, readPriority } from '../../src/store/read-priority.js';
import { StoreError } from '../../src/store/types.js';

const PIECE = 1000;

/**
 * Objects whose bodies arrive piece by piece as the test allows, read as StorePool.get reads them:
 * each piece the client hands over is taken in, then a background body may be held (the client
 * stops reading the socket). Records which pieces were taken in.
 */
class ScriptedStore extends ObjectStore {
  readonly description = 'scripted';
  readonly taken: string[] = [];
  /** Keys whose GET was sent. */
  readonly requested = new Set<string>();
  private readonly onRequest = new Map<string, () => void>();
  private readonly arrivals = new Map<string, { count: number; wake?: () => void }>();

  /** Resolves once `key`'s GET was sent. */
  sent(key: string): Promise<void> {
    if (this.requested.has(key)) return Promise.resolve();
    return new Promise((resolve) => this.onRequest.set(key, resolve));
  }

  /** Lets the next piece of `key`'s body arrive (it waits at the socket while its reader holds). */
  arrive(key: string): void {
    const a = this.arrivals.get(key)!;
    a.count++;
    a.wake?.();
  }

  protected headObject(): Promise<boolean> {
    return Promise.resolve(true);
  }
  protected putObject(): Promise<void> {
    return Promise.resolve();
  }
  protected notFound(key: string): StoreError {
    return new StoreError('not-found', key, false);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }

  protected async getObject(key: string, _what: string, range: ByteRange | undefined, read: BodyRead): Promise<Uint8Array> {
    const pieces = (range?.length ?? 3 * PIECE) / PIECE;
    const a: { count: number; wake?: () => void } = { count: 0 };
    this.arrivals.set(key, a);
    this.requested.add(key);
    this.onRequest.get(key)?.();
    const body = new SharedBody(pieces * PIECE, key);
    for (let i = 0; i < pieces; i++) {
      while (a.count === 0) await new Promise<void>((resolve) => (a.wake = resolve));
      a.count--;
      body.add(new Uint8Array(PIECE).fill(i));
      this.taken.push(`${key}#${i}`);
      const hold = read.background ? readPriority.pace() : undefined;
      if (hold) await hold;
    }
    return body.end();
  }
}

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const KEY_A = `chunks/aa/${A}`;
const KEY_B = `chunks/bb/${B}`;

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a background body waits while a read a fault waits for is under way, then completes', async () => {
  const store = new ScriptedStore();
  const bulk = store.getChunk(A, { background: true });
  await tick();
  store.arrive(KEY_A);
  await tick();
  assert.deepEqual(store.taken, [`${KEY_A}#0`]);

  const frame = store.getChunk(B, { range: { offset: 0, length: PIECE } });
  await tick();
  // The piece the client hands over while the frame is read is taken in, and the body then holds:
  // the next piece, arrived, is not taken in until the frame is done.
  store.arrive(KEY_A);
  await tick();
  store.arrive(KEY_A);
  await tick();
  await tick();
  assert.deepEqual(store.taken, [`${KEY_A}#0`, `${KEY_A}#1`]);

  store.arrive(KEY_B);
  assert.equal((await frame).length, PIECE);
  const whole = await bulk;
  assert.equal(whole.length, 3 * PIECE);
  assert.deepEqual([...whole.subarray(2 * PIECE)], new Array<number>(PIECE).fill(2));
  assert.deepEqual(store.taken, [`${KEY_A}#0`, `${KEY_A}#1`, `${KEY_B}#0`, `${KEY_A}#2`]);
});

test('reads that are not background never wait for each other', async () => {
  const store = new ScriptedStore();
  const a = store.getChunk(A);
  const b = store.getChunk(B);
  await tick();
  for (let i = 0; i < 3; i++) {
    store.arrive(KEY_A);
    store.arrive(KEY_B);
    await tick();
  }
  assert.equal((await a).length, 3 * PIECE);
  assert.equal((await b).length, 3 * PIECE);
});

test('a fault-wait opened by any caller holds background bodies until it closes', async () => {
  const store = new ScriptedStore();
  const close = readPriority.begin();
  const bulk = store.getChunk(A, { background: true });
  await tick();
  assert.equal(store.requested.size, 0, 'a background GET went out at once, with no head start for the fault-wait just opened');
  await store.sent(KEY_A);
  store.arrive(KEY_A);
  store.arrive(KEY_A);
  await tick();
  await tick();
  assert.deepEqual(store.taken, [`${KEY_A}#0`], 'taken in past the first piece while a fault-wait was open');
  close();
  close(); // a second close does not close another caller's wait
  store.arrive(KEY_A);
  assert.equal((await bulk).length, 3 * PIECE);
});

/** Asserts that `wait` (taken at `t0`, while a fault-wait is open) holds, and no shorter than `ms` less a timer's 1 ms. */
async function heldFor(t0: number, wait: Promise<void> | undefined, ms: number, what: string): Promise<void> {
  assert.ok(wait, `${what}: not held while a fault-wait is open`);
  await wait;
  const took = performance.now() - t0;
  assert.ok(took >= ms - 1, `${what}: released after ${took.toFixed(1)} ms, before its ${ms} ms`);
}

test('a held body goes on after the longest hold even while fault-waits stay open', async () => {
  const p = new ReadPriority(30);
  const close = p.begin();
  await heldFor(performance.now(), p.pace(), 30, 'a body piece');
  close();
  assert.equal(p.pace(), undefined, 'nothing held once every fault-wait closed');
});

test("a background request waits out the newest fault-wait's head start, once, and only while one is open", async () => {
  const p = new ReadPriority(20, 30);
  assert.equal(p.headStart(), undefined, 'no fault-wait open');
  const close = p.begin();
  await heldFor(performance.now(), p.headStart(), 30, 'a request just after a fault-wait opened');
  assert.equal(p.headStart(), undefined, 'the head start is over though the fault-wait is still open');
  close();
  const closeAgain = p.begin();
  closeAgain();
  assert.equal(p.headStart(), undefined, 'nothing held once every fault-wait closed');
});

test("another thread's body is held while a fault-wait is open here, and goes on when the last one closes", async () => {
  const p = new ReadPriority(10_000);
  const close = p.begin();
  const closeToo = p.begin();
  // The body thread's side: ReadPriority.attach over the same shared count, pace() as it calls it.
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.module).then(({ ReadPriority }) => {
      const p = ReadPriority.attach(workerData.shared, 10_000);
      const t0 = performance.now();
      const held = p.pace();
      parentPort.postMessage({ held: held !== undefined });
      void held?.then(() => {
        parentPort.postMessage({ releasedAfterMs: performance.now() - t0, heldAgain: p.pace() !== undefined });
      });
    });`,
    { eval: true, workerData: { module: new URL('../../src/store/read-priority.js', import.meta.url).href, shared: p.shared } },
  );
  try {
    const replies: Array<Record<string, unknown>> = [];
    let wake: (() => void) | undefined;
    worker.on('message', (m: Record<string, unknown>) => {
      replies.push(m);
      wake?.();
    });
    const reply = async (n: number): Promise<Record<string, unknown>> => {
      while (replies.length < n) await new Promise<void>((resolve) => (wake = resolve));
      return replies[n - 1]!;
    };
    assert.deepEqual(await reply(1), { held: true });
    await new Promise((resolve) => setTimeout(resolve, 100));
    close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(replies.length, 1, 'released while a fault-wait was still open');
    closeToo();
    const released = await reply(2);
    assert.ok((released.releasedAfterMs as number) >= 195, `released after ${released.releasedAfterMs as number} ms`);
    assert.ok((released.releasedAfterMs as number) < 5000, 'released by the last close, not by the longest hold');
    assert.equal(released.heldAgain, false, 'nothing held once every fault-wait closed');
  } finally {
    await worker.terminate();
  }
});

test('a body taken in piece by piece at any alignment is exactly its bytes, and its length is enforced', () => {
  // Pieces of odd sizes land at every offset modulo 8, as an HTTP body's pieces do after the headers.
  const sizes = [1, 7, 13, 4096, 3, 65_535, 9, 2];
  const total = sizes.reduce((a, b) => a + b, 0);
  const want = new Uint8Array(total).map((_, i) => (i * 31 + 7) & 0xff);
  const body = new SharedBody(total, 'obj');
  let at = 0;
  for (const n of sizes) {
    // Each piece a view at an odd offset into a larger buffer, like a slice of a socket read.
    const holder = new Uint8Array(n + 3);
    holder.set(want.subarray(at, at + n), 3);
    body.add(holder.subarray(3));
    at += n;
  }
  const got = body.end();
  assert.ok(got.buffer instanceof SharedArrayBuffer);
  assert.deepEqual(new Uint8Array(got), want);

  const long = new SharedBody(4, 'long');
  long.add(new Uint8Array(3));
  assert.throws(
    () => long.add(new Uint8Array(2)),
    (e: unknown) => e instanceof StoreError && e.kind === 'integrity' && /longer than the 4 bytes/.test(e.message),
  );
  const short = new SharedBody(4, 'short');
  short.add(new Uint8Array(3));
  assert.throws(
    () => short.end(),
    (e: unknown) => e instanceof StoreError && e.kind === 'integrity' && /truncated: 3 of 4/.test(e.message),
  );
});
