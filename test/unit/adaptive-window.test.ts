// The adaptive fault-around window on its own: which bytes it asks to install for a sequence of
// faults. The next fault of a walking guest is the first page its last window did not install.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdaptiveFaultAround, ADAPTIVE_MAX_BYTES } from '../../src/serve/adaptive-window.js';
import { FcUffdError } from '../../src/errors.js';
import { xorshift32 as rng } from '../../tools/prng.js';

const PS = 4096;
const MiB = 1024 * 1024;

interface Win {
  lo: number;
  hi: number;
}

function win(p: AdaptiveFaultAround, f: number, rs: number, re: number): Win {
  const w = p.window(f, rs, re);
  return { lo: w.startOffset, hi: w.startOffset + w.lenBytes };
}

test('a sequential stream grows to the cap, then stays there on aligned blocks', () => {
  const p = new AdaptiveFaultAround({ pageSizeBytes: PS });
  const end = 64 * MiB;
  const sizes: number[] = [];
  for (let f = 0; f < end;) {
    const w = win(p, f, 0, end);
    assert.equal(w.lo, f, 'an upward window starts at the fault');
    sizes.push(w.hi - w.lo);
    f = w.hi;
  }
  assert.equal(sizes[0], PS, 'the first fault of a stream gets one page');
  for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i]! >= sizes[i - 1]!, `window ${i} shrank: ${sizes[i - 1]} -> ${sizes[i]}`);
  const firstAtCap = sizes.indexOf(ADAPTIVE_MAX_BYTES);
  assert.ok(firstAtCap > 0 && firstAtCap <= 8, `reaches the 2 MiB cap within 8 faults (took ${firstAtCap})`);
  assert.ok(
    sizes.slice(firstAtCap).every((s) => s === ADAPTIVE_MAX_BYTES),
    'stays at the cap',
  );
  // 64 MiB: 32 windows at the cap plus the ramp to the first 2 MiB boundary.
  assert.ok(sizes.length <= 32 + firstAtCap, `${sizes.length} faults for 64 MiB`);
});

test('random faults get one page each', () => {
  const p = new AdaptiveFaultAround({ pageSizeBytes: PS });
  const end = 512 * MiB;
  const r = rng(11);
  let onePage = 0;
  const n = 5000;
  for (let i = 0; i < n; i++) {
    const f = Math.floor(r() * (end / PS)) * PS;
    const w = win(p, f, 0, end);
    assert.ok(w.hi - w.lo <= 64 * 1024, `a random fault got ${w.hi - w.lo} bytes`);
    if (w.hi - w.lo === PS) onePage++;
  }
  // A random fault passes for a stream only when it lands within a few pages past one of 8 windows.
  assert.ok(onePage >= n * 0.995, `${onePage} of ${n} random faults got one page`);
});

test('two interleaved sequential streams both grow to the cap', () => {
  const p = new AdaptiveFaultAround({ pageSizeBytes: PS });
  const end = 256 * MiB;
  const next = [0, 100 * MiB + 3 * PS];
  const last = [0, 0];
  for (let i = 0; i < 40; i++) {
    const s = i % 2;
    const w = win(p, next[s]!, 0, end);
    assert.ok(w.lo <= next[s]! && next[s]! < w.hi);
    last[s] = w.hi - w.lo;
    next[s] = w.hi;
  }
  assert.deepEqual(last, [ADAPTIVE_MAX_BYTES, ADAPTIVE_MAX_BYTES]);
});

test('a stream walking down grows too, each window ending just after its fault', () => {
  const p = new AdaptiveFaultAround({ pageSizeBytes: PS });
  const end = 64 * MiB;
  let f = end - PS;
  const sizes: number[] = [];
  while (f >= 0) {
    const w = win(p, f, 0, end);
    assert.equal(w.hi, f + PS, 'a downward window ends at the faulting page');
    sizes.push(w.hi - w.lo);
    f = w.lo - PS;
  }
  assert.equal(sizes[0], PS);
  assert.ok(sizes.includes(ADAPTIVE_MAX_BYTES), `reached the cap: ${sizes.slice(0, 12).join(',')}`);
  assert.ok(sizes.length < 50, `${sizes.length} faults to walk 64 MiB down`);
});

test('windows are clipped to the region, at both ends', () => {
  const p = new AdaptiveFaultAround({ pageSizeBytes: PS });
  // A region that is not aligned to any window size, in the middle of the snapshot.
  const rs = 3 * MiB + 5 * PS;
  const re = rs + 5 * MiB + 7 * PS;
  let f = rs;
  let w: Win = { lo: 0, hi: 0 };
  while (f < re) {
    w = win(p, f, rs, re);
    assert.ok(w.lo >= rs && w.hi <= re, `[${w.lo}, ${w.hi}) outside [${rs}, ${re})`);
    f = w.hi;
  }
  assert.equal(w.hi, re, 'the last window ends at the region end');
  const q = new AdaptiveFaultAround({ pageSizeBytes: PS });
  for (f = re - PS; f >= rs; f = w.lo - PS) {
    w = win(q, f, rs, re);
    assert.ok(w.lo >= rs && w.hi <= re, `[${w.lo}, ${w.hi}) outside [${rs}, ${re})`);
  }
  assert.equal(w.lo, rs, 'the last downward window starts at the region start');
});

test('a stream does not continue into another region', () => {
  const p = new AdaptiveFaultAround({ pageSizeBytes: PS });
  // Region A [0, 1 MiB), region B [1 MiB, 2 MiB): walking A to its end, then faulting B's first page.
  let f = 0;
  while (f < MiB) f = win(p, f, 0, MiB).hi;
  const w = win(p, MiB, MiB, 2 * MiB);
  assert.deepEqual(w, { lo: MiB, hi: MiB + PS }, 'a new region starts a new stream');
});

test('every window holds its fault, is page aligned and stays in its region (20,000 mixed faults)', () => {
  const r = rng(5);
  const regions: Array<[number, number]> = [
    [0, 96 * MiB + 3 * PS],
    [96 * MiB + 3 * PS, 97 * MiB],
    [200 * MiB, 328 * MiB - PS],
  ];
  const p = new AdaptiveFaultAround({ pageSizeBytes: PS, isZero: (off) => Math.floor(off / PS) % 7 < 3 });
  let f = 0;
  for (let i = 0; i < 20000; i++) {
    const x = r();
    // Half sequential continuations (up or down), some skips, the rest random.
    let g: number;
    if (x < 0.35) g = f + PS;
    else if (x < 0.5) g = f - PS;
    else if (x < 0.6) g = f + Math.floor(r() * 8) * PS;
    else {
      const [a, b] = regions[Math.floor(r() * regions.length)]!;
      g = a + Math.floor((r() * (b - a)) / PS) * PS;
    }
    const ri = regions.findIndex(([a, b]) => g >= a && g < b);
    if (ri < 0) continue;
    const [rs, re] = regions[ri]!;
    const w = win(p, g, rs, re);
    assert.ok(w.lo <= g && g < w.hi, `window [${w.lo}, ${w.hi}) misses fault ${g}`);
    assert.ok(w.lo >= rs && w.hi <= re, `window [${w.lo}, ${w.hi}) outside region [${rs}, ${re})`);
    assert.ok(w.lo % PS === 0 && w.hi % PS === 0, 'page aligned');
    assert.ok(w.hi - w.lo <= ADAPTIVE_MAX_BYTES, `window of ${w.hi - w.lo} bytes over the cap`);
    f = x < 0.5 ? (x < 0.35 ? w.hi - PS : w.lo) : g;
  }
});

test('zero pages do not use up a growing window: it holds as much data, spanning them', () => {
  const zeroEvery = (off: number): boolean => Math.floor(off / PS) % 2 === 1;
  const plain = new AdaptiveFaultAround({ pageSizeBytes: PS });
  const aware = new AdaptiveFaultAround({ pageSizeBytes: PS, isZero: (off, len) => len === PS && zeroEvery(off) });
  const end = 64 * MiB;
  for (const p of [plain, aware]) win(p, 0, 0, end);
  const a = win(plain, PS, 0, end);
  const b = win(aware, PS, 0, end);
  const data = (w: Win): number => {
    let n = 0;
    for (let o = w.lo; o < w.hi; o += PS) if (!zeroEvery(o)) n += PS;
    return n;
  };
  assert.ok(data(b) >= 2 * data(a) - PS, `zero-aware window holds ${data(b)} data bytes, plain ${data(a)}`);
  assert.ok(b.hi - b.lo <= ADAPTIVE_MAX_BYTES);
});

test('sizes that are not powers of two are refused with a CONFIG error', () => {
  assert.throws(
    () => new AdaptiveFaultAround({ pageSizeBytes: PS, maxBytes: 3 * MiB }),
    (e: unknown) => e instanceof FcUffdError && e.code === 'CONFIG' && /power of two/.test(e.message),
  );
  assert.throws(
    () => new AdaptiveFaultAround({ pageSizeBytes: PS, initialPages: 3 }),
    (e: unknown) => e instanceof FcUffdError && e.code === 'CONFIG',
  );
});

test('2 MiB pages: windows are whole huge pages', () => {
  const HP = 2 * MiB;
  const p = new AdaptiveFaultAround({ pageSizeBytes: HP });
  let f = 0;
  for (let i = 0; i < 10; i++) {
    const w = win(p, f, 0, 64 * HP);
    assert.ok(w.lo % HP === 0 && w.hi % HP === 0 && w.hi - w.lo >= HP && w.hi - w.lo <= ADAPTIVE_MAX_BYTES);
    f = w.hi;
  }
});

test('new streams start at 256 KiB while recent streams went on, and at one page again after random faults', () => {
  const p = new AdaptiveFaultAround({ pageSizeBytes: PS });
  const end = 512 * MiB;
  // 16 short clusters, each continued once: a clustered guest.
  for (let c = 0; c < 16; c++) {
    const f = c * 8 * MiB;
    const w = win(p, f, 0, end);
    win(p, w.hi, 0, end);
  }
  const clustered = win(p, 300 * MiB + 5 * PS, 0, end);
  assert.deepEqual(clustered, { lo: 300 * MiB, hi: 300 * MiB + 256 * 1024 }, 'an aligned 256 KiB block holding the fault');
  // Then random faults: once most of the remembered new streams died at their first fault, one page again.
  const r = rng(3);
  let last: Win = clustered;
  for (let i = 0; i < 40; i++) last = win(p, 4 * MiB * (1 + Math.floor(r() * 120)) + 12 * PS, 0, end);
  assert.equal(last.hi - last.lo, PS);
});
