// The restore trace file (`serve --trace`): a versioned header, then fixed-size binary records.
//
//   "FCUTRACE" | u32 version | u32 header JSON length | header JSON | zero padding to 8 bytes
//   then records of RECORD_BYTES each, little-endian:
//     u32 word0: type (bits 0-7) | kind (bits 8-15) | flags (bits 16-31)
//     u32 word1: latency µs (SERVED, saturating at 2^32-1), chunk index (FETCH_*), else 0
//     f64 timeUs: µs since the handshake
//     f64 a, f64 b: per type, below
//
// Fixed 32-byte records let the fault loop write a record as four stores into typed arrays (no
// allocation, no encoding), and let a reader skip a torn tail (a process killed mid-write) by
// ignoring the last partial record. Records from one VM are in time order per writer thread only:
// readers must not assume a global order.
import { FcUffdError } from '../errors.js';
import { isPowerOfTwo } from '../memory/sizes.js';

export const TRACE_MAGIC = 'FCUTRACE';
export const TRACE_VERSION = 1;
export const RECORD_BYTES = 32;
export const RECORD_WORDS32 = RECORD_BYTES / 4;
export const RECORD_WORDS64 = RECORD_BYTES / 8;

/** A fault read from the uffd. a = host address, flags: FLAG_WRITE when the kernel says so. */
export const T_FAULT = 1;
/** The fault's page installed (or found present). a = host address, b = snapshot offset, kind, word1 = latency µs. */
export const T_SERVED = 2;
/** A range installed. a = snapshot offset, b = bytes, kind; flags FLAG_FAULTED / FLAG_PREFETCH (neither: fault-around). */
export const T_INSTALL = 3;
/** The balloon removed a range. a = snapshot offset, b = bytes. */
export const T_REMOVE = 4;
/** A fault put off: kind DEFER_RETRY (EAGAIN) or DEFER_WAIT (its bytes are being fetched). a = host address. */
export const T_DEFER = 5;
/** The VM asked for a chunk. word1 = chunk index. */
export const T_FETCH_WANT = 6;
/** A chunk arrived. word1 = chunk index, a = bytes, kind = FETCH_* source. */
export const T_FETCH_DONE = 7;

/** Install kinds (same numbering as the fault loop's). */
export const K_DATA = 0;
export const K_ZERO = 1;
export const K_REMOVED = 2;
/** The K_* of each kind of install (src/serve/install-plan.ts InstallKind). */
export const TRACE_KIND = { data: K_DATA, zero: K_ZERO, removed: K_REMOVED } as const;

export const DEFER_RETRY = 0;
export const DEFER_WAIT = 1;

/** Where an arriving chunk came from: the shared cache, the store, a fetch already under way (prefetch), or nowhere (all zeros). */
export const FETCH_CACHE = 0;
export const FETCH_STORE = 1;
export const FETCH_IN_FLIGHT = 2;
export const FETCH_EMPTY = 3;
export const FETCH_SOURCE_NAMES = ['cache', 'store', 'in flight', 'empty'] as const;

export const FLAG_WRITE = 1;
/** SERVED: the page was in the prefetch set, so prefetch had not installed it in time. */
export const FLAG_PREFETCH_LATE = 2;
export const FLAG_FAULTED = 1;
export const FLAG_PREFETCH = 2;

/** What the server knows of the VM when it opens the trace file. */
export interface TraceHeader {
  vmId: string;
  pid: number;
  snapshot: string;
  snapshotSizeBytes: number;
  pageSizeBytes: number;
  /** The fixed fault-around window, or 0: adaptive (the window varies per fault; see the install records). */
  faultAroundBytes: number;
  regions: Array<{ hostAddr: number; sizeBytes: number; fileOffset: number }>;
  /** Wall clock (ms since the epoch) of the handshake: timeUs 0. */
  startEpochMs: number;
  /** Pages in the prefetch set (0: no prefetch). */
  prefetchPages: number;
}

/** A block of records from a fault-loop thread (`count` records at the start of `records`). */
export interface TraceBlock {
  startEpochMs: number;
  records: ArrayBuffer;
  count: number;
}

export function encodeHeader(h: TraceHeader): Buffer {
  const json = Buffer.from(JSON.stringify(h));
  const unpadded = 16 + json.length;
  const out = Buffer.alloc(Math.ceil(unpadded / 8) * 8);
  out.write(TRACE_MAGIC, 0, 'latin1');
  out.writeUInt32LE(TRACE_VERSION, 8);
  out.writeUInt32LE(json.length, 12);
  json.copy(out, 16);
  return out;
}

/** A decoded trace: the header and columns of every record (typed arrays, one entry per record). */
export interface Trace {
  header: TraceHeader;
  count: number;
  type: Uint8Array;
  kind: Uint8Array;
  flags: Uint16Array;
  word1: Uint32Array;
  timeUs: Float64Array;
  a: Float64Array;
  b: Float64Array;
  /** Bytes of a torn last record that were ignored. */
  tornBytes: number;
}

export function decodeTrace(file: Buffer, name = 'trace'): Trace {
  if (file.length < 16 || file.toString('latin1', 0, 8) !== TRACE_MAGIC)
    throw new FcUffdError('TRACE_FORMAT', `${name} is not an fc-uffd trace (written by fc-uffd serve --trace)`);
  const version = file.readUInt32LE(8);
  if (version !== TRACE_VERSION)
    throw new FcUffdError('TRACE_FORMAT', `${name} is trace version ${version}; this fc-uffd reads version ${TRACE_VERSION}`);
  const jsonLen = file.readUInt32LE(12);
  if (16 + jsonLen > file.length) throw new FcUffdError('TRACE_FORMAT', `${name} is truncated inside its header`);
  let header: unknown;
  try {
    header = JSON.parse(file.toString('utf8', 16, 16 + jsonLen));
  } catch (err) {
    throw new FcUffdError('TRACE_FORMAT', `${name}: header is not valid JSON: ${(err as Error).message}`);
  }
  checkHeader(header, name);
  const body = Math.ceil((16 + jsonLen) / 8) * 8;
  const count = Math.max(0, Math.floor((file.length - body) / RECORD_BYTES));
  // Copy into an aligned buffer: a Buffer's byteOffset may not be a multiple of 8.
  const raw = new ArrayBuffer(count * RECORD_BYTES);
  new Uint8Array(raw).set(file.subarray(body, body + count * RECORD_BYTES));
  const u32 = new Uint32Array(raw);
  const f64 = new Float64Array(raw);
  const t: Trace = {
    header,
    count,
    type: new Uint8Array(count),
    kind: new Uint8Array(count),
    flags: new Uint16Array(count),
    word1: new Uint32Array(count),
    timeUs: new Float64Array(count),
    a: new Float64Array(count),
    b: new Float64Array(count),
    tornBytes: Math.max(0, file.length - body - count * RECORD_BYTES),
  };
  for (let i = 0; i < count; i++) {
    const w0 = u32[i * RECORD_WORDS32]!;
    t.type[i] = w0 & 0xff;
    t.kind[i] = (w0 >>> 8) & 0xff;
    t.flags[i] = w0 >>> 16;
    t.word1[i] = u32[i * RECORD_WORDS32 + 1]!;
    t.timeUs[i] = f64[i * RECORD_WORDS64 + 1]!;
    t.a[i] = f64[i * RECORD_WORDS64 + 2]!;
    t.b[i] = f64[i * RECORD_WORDS64 + 3]!;
    // The report indexes pages and time bins by these; every writer stores finite times and
    // non-negative addresses, offsets and lengths (0 where a type has none).
    if (!Number.isFinite(t.timeUs[i]) || !isOffset(t.a[i]!) || !isOffset(t.b[i]!))
      throw new FcUffdError(
        'TRACE_FORMAT',
        `${name}: record ${i} is damaged (time ${t.timeUs[i]} µs, fields ${t.a[i]} and ${t.b[i]}): not a trace fc-uffd wrote`,
      );
  }
  return t;
}

function isOffset(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The largest snapshot a report maps: 2^28 pages (1 TiB of 4 KiB pages), two bytes of state each. */
const MAX_TRACE_PAGES = 2 ** 28;

/** Refuses a header whose numbers the report could not use (written by something other than fc-uffd, or damaged). */
function checkHeader(json: unknown, name: string): asserts json is TraceHeader {
  const fail = (why: string): never => {
    throw new FcUffdError('TRACE_FORMAT', `${name}: ${why}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('header is not a JSON object');
  const h = json as Partial<Record<keyof TraceHeader, unknown>>;
  if (h.pageSizeBytes === 0) return fail('page size 0 in the header: the VM ended before its handshake, so nothing was traced');
  if (typeof h.pageSizeBytes !== 'number' || !isPowerOfTwo(h.pageSizeBytes) || h.pageSizeBytes < 4096)
    return fail(`header page size ${JSON.stringify(h.pageSizeBytes)} is not a power of two from 4096 to 1 GiB`);
  if (!isOffset(h.snapshotSizeBytes) || h.snapshotSizeBytes / h.pageSizeBytes > MAX_TRACE_PAGES)
    return fail(`header snapshot size ${JSON.stringify(h.snapshotSizeBytes)} is not a byte count of at most ${MAX_TRACE_PAGES} pages`);
  for (const field of ['pid', 'faultAroundBytes', 'prefetchPages'] as const)
    if (!isOffset(h[field])) return fail(`header ${field} ${JSON.stringify(h[field])} is not a whole number`);
  // Date's range: ±8.64e15 ms.
  if (typeof h.startEpochMs !== 'number' || !(Math.abs(h.startEpochMs) <= 8.64e15))
    return fail(`header start time ${JSON.stringify(h.startEpochMs)} is not a time`);
  if (typeof h.vmId !== 'string' || typeof h.snapshot !== 'string') return fail('header vmId or snapshot is not a string');
  const isRegion = (r: unknown): boolean => {
    const o = r as Partial<Record<keyof TraceHeader['regions'][number], unknown>> | null;
    return typeof o === 'object' && o !== null && isOffset(o.hostAddr) && isOffset(o.sizeBytes) && isOffset(o.fileOffset);
  };
  if (!Array.isArray(h.regions) || !h.regions.every(isRegion))
    return fail('header regions are not a list of {hostAddr, sizeBytes, fileOffset}');
}

/** Writes records into a reusable buffer: the encoder both the recorder and synthetic traces use. */
export class RecordBuffer {
  readonly buffer: ArrayBuffer;
  readonly capacity: number;
  count = 0;
  private readonly u32: Uint32Array;
  private readonly f64: Float64Array;

  constructor(capacityRecords: number) {
    this.capacity = capacityRecords;
    this.buffer = new ArrayBuffer(capacityRecords * RECORD_BYTES);
    this.u32 = new Uint32Array(this.buffer);
    this.f64 = new Float64Array(this.buffer);
  }

  /** Appends one record; the caller flushes when `count === capacity`. */
  put(type: number, kind: number, flags: number, word1: number, timeUs: number, a: number, b: number): void {
    const i = this.count++;
    this.u32[i * RECORD_WORDS32] = type | (kind << 8) | (flags << 16);
    this.u32[i * RECORD_WORDS32 + 1] = word1 > 0xffffffff ? 0xffffffff : word1;
    this.f64[i * RECORD_WORDS64 + 1] = timeUs;
    this.f64[i * RECORD_WORDS64 + 2] = a;
    this.f64[i * RECORD_WORDS64 + 3] = b;
  }
}
