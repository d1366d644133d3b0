// Read priority: a background request goes out after a fault's (the head start of a fault-wait, one
// ObjectStore opens for each read a fault waits for), and reaches its backend marked background
// (the stores' own GETs, on the main thread or the body thread, are tested against real servers in
// http-store / s3-store).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObjectStore, SharedBody, type BodyRead, type ByteRange } from '../../src/store/object-store.js';
import { HEAD_START_MS, ReadPriority, readPriority } from '../../src/store/read-priority.js';
import { StoreError } from '../../src/store/types.js';

const PIECE = 1000;

/** Objects whose bodies arrive piece by piece as the test allows; records each read as its backend sees it. */
class ScriptedStore extends ObjectStore {
  readonly description = 'scripted';
  /** Per key: whether its read came marked background. */
  readonly background = new Map<string, boolean>();
  /** Keys whose GET was sent, and when (performance.now()). */
  readonly sentAtMs = new Map<string, number>();
  private readonly onRequest = new Map<string, () => void>();
  private readonly arrivals = new Map<string, { count: number; wake?: () => void }>();

  /** Resolves once `key`'s GET was sent. */
  sent(key: string): Promise<void> {
    if (this.sentAtMs.has(key)) return Promise.resolve();
    return new Promise((resolve) => this.onRequest.set(key, resolve));
  }

  /** Lets the next piece of `key`'s body arrive. */
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
    this.sentAtMs.set(key, performance.now());
    this.background.set(key, read.background === true);
    this.onRequest.get(key)?.();
    const body = new SharedBody(pieces * PIECE, key);
    for (let i = 0; i < pieces; i++) {
      while (a.count === 0) await new Promise<void>((resolve) => (a.wake = resolve));
      a.count--;
      body.add(new Uint8Array(PIECE).fill(i));
    }
    return body.end();
  }
}

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const KEY_A = `chunks/aa/${A}`;
const KEY_B = `chunks/bb/${B}`;

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test("a background read reaches its backend marked background (remote stores take its body in off the main thread); a fault's read does not", async () => {
  const store = new ScriptedStore();
  const bulk = store.getChunk(A, { background: true });
  const frame = store.getChunk(B, { range: { offset: 0, length: PIECE } });
  await store.sent(KEY_A);
  await store.sent(KEY_B);
  for (let i = 0; i < 3; i++) store.arrive(KEY_A);
  store.arrive(KEY_B);
  assert.equal((await frame).length, PIECE);
  const whole = await bulk;
  assert.deepEqual([...whole.subarray(2 * PIECE)], new Array<number>(PIECE).fill(2));
  assert.deepEqual(
    store.background,
    new Map([
      [KEY_A, true],
      [KEY_B, false],
    ]),
  );
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

test('a fault-wait opened by any caller gives its request a head start over a background request', async () => {
  const store = new ScriptedStore();
  const openedMs = performance.now();
  const close = readPriority.begin();
  const bulk = store.getChunk(A, { background: true });
  await store.sent(KEY_A);
  // Measured from before the fault-wait opened: a busy host can only make it later. Less a
  // timer's 1 ms (ReadPriority.headStart); a test that looked one event-loop turn later for "not
  // sent yet" failed on a loaded host, where that turn came after the timer.
  const afterMs = store.sentAtMs.get(KEY_A)! - openedMs;
  assert.ok(
    afterMs >= HEAD_START_MS - 1,
    `a background GET went out ${afterMs.toFixed(2)} ms after the fault-wait opened, inside its head start`,
  );
  close();
  close(); // a second close does not close another caller's wait
  for (let i = 0; i < 3; i++) store.arrive(KEY_A);
  assert.equal((await bulk).length, 3 * PIECE);
});

/** Asserts that `wait` (taken at `t0`, while a fault-wait is open) holds, and no shorter than `ms` less a timer's 1 ms. */
async function heldFor(t0: number, wait: Promise<void> | undefined, ms: number, what: string): Promise<void> {
  assert.ok(wait, `${what}: not held while a fault-wait is open`);
  await wait;
  const took = performance.now() - t0;
  assert.ok(took >= ms - 1, `${what}: released after ${took.toFixed(1)} ms, before its ${ms} ms`);
}

test("a background request waits out the newest fault-wait's head start, once, and only while one is open", async () => {
  const p = new ReadPriority(30);
  assert.equal(p.headStart(), undefined, 'no fault-wait open');
  const close = p.begin();
  await heldFor(performance.now(), p.headStart(), 30, 'a request just after a fault-wait opened');
  assert.equal(p.headStart(), undefined, 'the head start is over though the fault-wait is still open');
  close();
  const closeAgain = p.begin();
  closeAgain();
  assert.equal(p.headStart(), undefined, 'nothing held once every fault-wait closed');
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
