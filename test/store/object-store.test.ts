// Read priority: a background read's body is not taken in while a fault-wait is open, one ObjectStore
// opens for each read a fault waits for (the stores' own GETs are tested against real servers in
// http-store / s3-store).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObjectStore, readBodyShared, type BodyRead, type ByteRange } from '../../src/store/object-store.js';
import { ReadPriority, readPriority } from '../../src/store/read-priority.js';
import { StoreError } from '../../src/store/types.js';

const PIECE = 1000;

/** Objects whose bodies arrive piece by piece as the test allows; records which pieces were taken in. */
class ScriptedStore extends ObjectStore {
  readonly description = 'scripted';
  readonly taken: string[] = [];
  private readonly gates = new Map<string, Array<() => void>>();

  /** Lets the next piece of `key`'s body arrive. */
  arrive(key: string): void {
    this.gates.get(key)?.shift()?.();
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

  protected getObject(key: string, _what: string, range: ByteRange | undefined, read: BodyRead): Promise<Uint8Array> {
    const pieces = (range?.length ?? 3 * PIECE) / PIECE;
    const gates: Array<() => void> = [];
    this.gates.set(key, gates);
    const taken = this.taken;
    async function* body(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < pieces; i++) {
        await new Promise<void>((resolve) => gates.push(resolve));
        yield new Uint8Array(PIECE).fill(i);
        taken.push(`${key}#${i}`);
      }
    }
    return readBodyShared(body(), pieces * PIECE, () => undefined, key, read.pace);
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
  // The bulk body's next piece has arrived, but it is not taken in while the frame is read.
  store.arrive(KEY_A);
  await tick();
  await tick();
  assert.deepEqual(store.taken, [`${KEY_A}#0`]);

  store.arrive(KEY_B);
  assert.equal((await frame).length, PIECE);
  await tick();
  store.arrive(KEY_A);
  const whole = await bulk;
  assert.equal(whole.length, 3 * PIECE);
  assert.deepEqual([...whole.subarray(2 * PIECE)], new Array<number>(PIECE).fill(2));
  assert.deepEqual(store.taken, [`${KEY_A}#0`, `${KEY_B}#0`, `${KEY_A}#1`, `${KEY_A}#2`]);
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
  store.arrive(KEY_A);
  await tick();
  await tick();
  assert.deepEqual(store.taken, [], 'taken in while a fault-wait was open');
  close();
  close(); // a second close does not close another caller's wait
  for (let i = 0; i < 3; i++) {
    await tick();
    store.arrive(KEY_A);
  }
  assert.equal((await bulk).length, 3 * PIECE);
});

test('a held body goes on after the longest hold even while fault-waits stay open', async () => {
  const p = new ReadPriority(30);
  const close = p.begin();
  const t0 = performance.now();
  const hold = p.pace();
  assert.ok(hold, 'held while a fault-wait is open');
  await hold;
  const ms = performance.now() - t0;
  assert.ok(ms >= 29, `released after ${ms.toFixed(1)} ms, before the 30 ms hold`);
  close();
  assert.equal(p.pace(), undefined, 'nothing held once every fault-wait closed');
});
