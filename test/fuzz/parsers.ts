// Property checks of every parser of outside input: whatever the bytes, a parser returns or throws
// an FcUffdError (a stable code), never another exception, and never hangs. Shared by the quick run
// in `npm test` (test/unit/fuzz.test.ts) and the long one (bench/fuzz.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { FcUffdError } from '../../src/errors.js';
import { parseHandshake } from '../../src/firecracker/handshake.js';
import { HandshakeReceiver } from '../../src/firecracker/receive.js';
import { native } from '../../src/kernel/native.js';
import { testNative } from '../../tools/test-native.js';
import { O_CLOEXEC, O_NONBLOCK } from '../../src/kernel/constants.js';
import { check } from '../../src/kernel/errors.js';
import { frameOffsets, parseManifest } from '../../src/snapshot/manifest.js';
import { parseRanges } from '../../src/snapshot/pack.js';
import { decodeWorkingSet } from '../../src/serve/working-set.js';
import { parseStoreSpec } from '../../src/store/open.js';
import { parseRestoreRequest, RESTORE_REQUEST_FIELDS } from '../../src/daemon/request.js';
import {
  analyzeChunk,
  decodeChunkBlob,
  decodeFrames,
  encodeChunkBlob,
  encodeChunkBlobFramed,
  sha256Hex,
  type FrameJob,
} from '../../src/snapshot/chunk-format.js';
import { decodeTrace, encodeHeader, RecordBuffer, RECORD_BYTES, type TraceHeader } from '../../src/trace/format.js';
import { buildTraceReport } from '../../src/report/model.js';
import { renderReportHtml } from '../../src/report/html.js';

/** Runs `parse`; anything thrown that is not an FcUffdError fails the property. True when `parse` returned. */
function returnedOrTyped(parse: () => unknown): boolean {
  try {
    parse();
    return true;
  } catch (err) {
    if (!(err instanceof FcUffdError)) throw new Error(`untyped error: ${(err as Error).stack ?? String(err)}`, { cause: err });
    return false;
  }
}

/** returnedOrTyped as a property body (which must not return false: fast-check counts that a failure). */
function typedOnly(parse: () => unknown): void {
  returnedOrTyped(parse);
}

const int = fc.oneof(fc.integer(), fc.maxSafeNat(), fc.constantFrom(0, 4096, 2097152, 2 ** 47, 2 ** 53, -1, 1.5, Number.NaN));
const region = fc.record(
  {
    base_host_virt_addr: fc.oneof(int, fc.string(), fc.constant(null)),
    size: fc.oneof(int, fc.string()),
    offset: fc.oneof(int, fc.boolean()),
    page_size: fc.oneof(int, fc.constant(undefined)),
    page_size_kib: fc.oneof(int, fc.constant(undefined)),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);
/** Near-valid handshakes (the interesting ones), raw JSON, and raw text. */
const handshakeText = fc.oneof(
  fc.array(region, { maxLength: 6 }).map((r) => JSON.stringify(r)),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 300 }),
);

export function handshakeJsonProperty(): fc.IPropertyWithHooks<[string, number]> {
  return fc.property(handshakeText, fc.oneof(fc.maxSafeNat(), fc.constantFrom(0, 4096, 1 << 30)), (text, sizeBytes) =>
    typedOnly(() => parseHandshake(text, sizeBytes)),
  );
}

export function manifestProperty(): fc.IPropertyWithHooks<[string]> {
  const chunk = fc.oneof(
    fc.constant(null),
    fc.record(
      {
        digest: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), fc.string()),
        storedBytes: int,
        zeroPages: fc.oneof(fc.base64String(), fc.string()),
      },
      { requiredKeys: [] },
    ),
  );
  const manifest = fc.record(
    {
      format: fc.constantFrom('fc-uffd-chunked-snapshot', 'other'),
      version: fc.oneof(fc.constant(1), int),
      memorySizeBytes: int,
      chunkSizeBytes: fc.oneof(fc.constant(2097152), int),
      pageSizeBytes: fc.oneof(fc.constant(4096), int),
      digestAlgorithm: fc.constantFrom('sha256', 'md5'),
      compression: fc.oneof(fc.record({ algorithm: fc.constantFrom('zstd', 'gzip'), level: int }), fc.jsonValue()),
      base: fc.oneof(fc.constant(null), fc.string()),
      chunks: fc.array(chunk, { maxLength: 8 }),
    },
    { requiredKeys: [] },
  );
  return fc.property(
    fc.oneof(
      manifest.map((m) => JSON.stringify(m)),
      fc.string({ maxLength: 300 }),
    ),
    (text) => typedOnly(() => parseManifest(Buffer.from(text))),
  );
}

export function workingSetProperty(): fc.IPropertyWithHooks<[string]> {
  const ws = fc.record(
    {
      format: fc.constantFrom('fc-uffd-working-set', 'x'),
      version: fc.oneof(fc.constant(1), int),
      snapshot: fc.oneof(fc.string(), int),
      runs: int,
      count: int,
      pageSizeBytes: int,
      pages: fc.oneof(fc.base64String(), fc.string()),
      timesMs: fc.oneof(fc.base64String(), fc.string()),
    },
    { requiredKeys: [] },
  );
  return fc.property(
    fc.oneof(
      ws.map((w) => JSON.stringify(w)),
      fc.string({ maxLength: 300 }),
    ),
    (text) => typedOnly(() => decodeWorkingSet(text)),
  );
}

export function removedRangesProperty(): fc.IPropertyWithHooks<[string]> {
  const line = fc.oneof(
    fc.tuple(int, int).map(([a, b]) => `${a} ${b}`),
    fc.string({ maxLength: 40 }),
    fc.constant('# comment'),
  );
  const text = fc.oneof(
    fc.array(line, { maxLength: 10 }).map((l) => l.join('\n')),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.array(fc.tuple(fc.jsonValue(), fc.jsonValue()), { maxLength: 5 }).map((v) => JSON.stringify(v)),
  );
  return fc.property(text, (t) => typedOnly(() => parseRanges(t, 'fuzz')));
}

/**
 * The handshake as received: payload split into several sends, with zero, one or two fds of which
 * a kind (userfaultfd or not) on any send, and the peer closing or not. The receiver must end in a
 * handshake or a typed error (never hang: an incomplete one ends at expire()), and leak no fd.
 */
export function handshakeReceiveProperty(): {
  property: fc.IPropertyWithHooks<[string, number[], Array<Array<'uffd' | 'file'>>, boolean]>;
  close(): void;
} {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-fuzz-'));
  const socket = path.join(dir, 'sock');
  const listenFd = check('listen', native.listenUnix(socket, 0o600, 8));
  const property = fc.property(
    handshakeText,
    fc.array(fc.nat(400), { maxLength: 3 }),
    fc.array(fc.array(fc.constantFrom<'uffd' | 'file'>('uffd', 'file'), { maxLength: 2 }), { maxLength: 4 }),
    fc.boolean(),
    (text, cuts, fdKinds, closeAfter) => {
      // Counted per case: other work in the process (a property run before this one) may open fds of its own.
      const fdsBefore = fs.readdirSync('/proc/self/fd').length;
      const client = check('connect', native.connectUnix(socket));
      let server = -1;
      for (let i = 0; i < 1000 && server < 0; i++) server = native.accept(listenFd);
      check('accept', server);
      const bytes = Buffer.from(text);
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const pieces: Buffer[] = [];
      let from = 0;
      for (const p of [...points, bytes.length]) {
        pieces.push(bytes.subarray(from, p));
        from = p;
      }
      const sent: number[] = [];
      pieces.forEach((piece, i) => {
        const fds = (fdKinds[i] ?? []).map((k) =>
          k === 'uffd' ? check('userfaultfd', testNative.uffdCreate(O_CLOEXEC | O_NONBLOCK, true)) : fs.openSync('/proc/self/exe', 'r'),
        );
        sent.push(...fds);
        // An empty send without fds is nothing on a stream: skip it.
        if (piece.length > 0 || fds.length > 0)
          testNative.sendWithFds(client, piece.length > 0 ? piece : Buffer.from(' '), Int32Array.from(fds));
      });
      for (const fd of sent) native.close(fd);
      if (closeAfter) native.close(client);
      const receiver = new HandshakeReceiver(server);
      try {
        typedOnly(() => {
          const got = receiver.onReadable() ?? receiver.expire(1);
          native.close(got.uffdFd);
        });
      } finally {
        receiver.abandon();
        native.close(server);
        if (!closeAfter) native.close(client);
      }
      const fdsNow = fs.readdirSync('/proc/self/fd').length;
      if (fdsNow !== fdsBefore) throw new Error(`fd leak: ${fdsBefore} open before, ${fdsNow} after`);
    },
  );
  return {
    property,
    close() {
      native.close(listenFd);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Store names as a user types them: URL-like strings of every scheme, and raw text. */
export function storeSpecProperty(): fc.IPropertyWithHooks<[string]> {
  const spec = fc.oneof(
    fc
      .tuple(fc.constantFrom('s3', 'S3', 'http', 'https', 'file', 'FILE', 'ftp', 'x+y'), fc.string({ maxLength: 40 }))
      .map(([s, rest]) => `${s}://${rest}`),
    fc.webUrl(),
    fc.string({ maxLength: 60 }),
  );
  return fc.property(spec, (s) => typedOnly(() => parseStoreSpec(s)));
}

/** PUT /restores/{name} bodies: every known field with values of every JSON type, unknown fields, raw text. */
export function restoreRequestProperty(): fc.IPropertyWithHooks<[string]> {
  const value = fc.oneof(fc.string({ maxLength: 20 }), int, fc.boolean(), fc.constant(null), fc.constant('adaptive'), fc.jsonValue());
  const body = fc.record(Object.fromEntries([...RESTORE_REQUEST_FIELDS, 'unknown_field'].map((k) => [k, value])), { requiredKeys: [] });
  return fc.property(
    fc.oneof(
      body.map((b) => JSON.stringify(b)),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 200 }),
    ),
    (text) => typedOnly(() => parseRestoreRequest(text)),
  );
}

const fuzzChunkBytes = 64 * 1024;
const fuzzFrameBytes = 16 * 1024;
/** A 64 KiB chunk of random, repeated and zero pages, and its blobs in both formats (built once). */
const fuzzChunk = (() => {
  const chunk = new Uint8Array(fuzzChunkBytes);
  for (let p = 0; p < fuzzChunkBytes / 4096; p++)
    if (p % 4 === 1) chunk.fill(p, p * 4096, (p + 1) * 4096);
    else if (p % 4 === 2) for (let i = p * 4096; i < (p + 1) * 4096; i++) chunk[i] = (i * 2654435761) >>> 24;
  const analysis = analyzeChunk(chunk);
  const framed = encodeChunkBlobFramed(chunk, analysis, fuzzFrameBytes);
  // What a manifest says of the framed blob (trusted): each frame's place in the blob and its hash.
  const entry = { digest: '', storedBytes: framed.blob.length, frameBytes: framed.frameBytes, frameSha256: framed.frameSha256 };
  const offsets = frameOffsets(entry, fuzzChunkBytes, fuzzFrameBytes);
  const jobs: FrameJob[] = framed.frameBytes.map((srcLength, frame) => ({
    frame,
    srcOffset: offsets[frame]!,
    srcLength,
    sha256: framed.frameSha256[frame]!,
  }));
  return {
    chunk,
    digest: sha256Hex(chunk),
    zeroBitmap: analysis.zeroBitmap,
    jobs: jobs.filter((j) => j.srcLength > 0),
    blobs: [encodeChunkBlob(chunk, analysis), framed.blob],
  };
})();

/**
 * A chunk blob as a store that lies may return it: a valid blob of either format with bytes
 * flipped, words of its header overwritten, cut short or extended, or raw bytes. Decoding it
 * whole, or frame by frame where the manifest places the frames, must end in a typed error or in
 * exactly the chunk's bytes (never other bytes that pass).
 */
export function chunkBlobProperty(): fc.IPropertyWithHooks<[Uint8Array]> {
  const edit = fc.oneof(
    fc.record({ flip: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ word: fc.nat(40), value: fc.oneof(fc.nat(), fc.constantFrom(0, 1, 4096, 16384, 0xffffffff)) }),
    fc.record({ cut: fc.nat() }),
    fc.record({ extend: fc.uint8Array({ maxLength: 64 }) }),
  );
  const blob = fc.oneof(
    fc.tuple(fc.constantFrom(0, 1), fc.array(edit, { maxLength: 4 })).map(([which, edits]) => {
      let b: Uint8Array = Uint8Array.from(fuzzChunk.blobs[which]!);
      for (const e of edits) {
        if ('flip' in e) b[e.flip % b.length]! ^= e.bits;
        else if ('word' in e) {
          if (e.word * 4 + 4 <= b.length) new DataView(b.buffer, b.byteOffset).setUint32(e.word * 4, e.value >>> 0, true);
        } else if ('cut' in e) b = b.subarray(0, e.cut % (b.length + 1));
        else b = Buffer.concat([b, e.extend]);
      }
      return b;
    }),
    fc.uint8Array({ maxLength: 200 }),
  );
  return fc.property(blob, (b) => {
    const out = new Uint8Array(fuzzChunkBytes);
    const decoded = returnedOrTyped(() => decodeChunkBlob(b, out, fuzzChunk.digest));
    if (decoded && !Buffer.from(out).equals(Buffer.from(fuzzChunk.chunk))) throw new Error('a damaged blob decoded to other bytes');
    // The ranged path: the same bytes as the answer to frame reads placed by the manifest.
    const frames = new Uint8Array(fuzzChunkBytes);
    for (const job of fuzzChunk.jobs) {
      const from = job.frame * fuzzFrameBytes;
      const ok = returnedOrTyped(() => decodeFrames(b, frames, fuzzChunk.zeroBitmap, fuzzFrameBytes, [job]));
      if (ok && !Buffer.from(frames.subarray(from, from + fuzzFrameBytes)).equals(fuzzChunk.chunk.subarray(from, from + fuzzFrameBytes)))
        throw new Error(`a damaged frame ${job.frame} decoded to other bytes`);
    }
  });
}

/**
 * A trace file as `fc-uffd report` reads it: a valid header with some fields replaced by other
 * values, then records that are mostly plausible. Reading it and building the report must end in
 * a typed error or a report.
 */
export function traceReportProperty(): fc.IPropertyWithHooks<[Buffer]> {
  const valid: TraceHeader = {
    vmId: 'vm',
    pid: 1,
    snapshot: 'memfile:1048576:x',
    snapshotSizeBytes: 1 << 20,
    pageSizeBytes: 4096,
    faultAroundBytes: 16384,
    regions: [{ hostAddr: 0x10000000, sizeBytes: 1 << 20, fileOffset: 0 }],
    startEpochMs: 0,
    prefetchPages: 0,
  };
  const overrides = fc.record(
    {
      vmId: int,
      pid: int,
      snapshotSizeBytes: int,
      pageSizeBytes: fc.oneof(int, fc.constantFrom(2 ** 21, 2 ** 30, 2 ** 31)),
      faultAroundBytes: int,
      regions: fc.oneof(
        fc.array(fc.record({ hostAddr: int, sizeBytes: int, fileOffset: int }, { requiredKeys: [] }), { maxLength: 3 }),
        fc.jsonValue(),
      ),
      startEpochMs: fc.oneof(int, fc.double()),
      prefetchPages: int,
    },
    { requiredKeys: [] },
  );
  const header = fc.oneof(
    { weight: 3, arbitrary: fc.constant(valid) },
    { weight: 2, arbitrary: overrides.map((o) => ({ ...valid, ...o }) as TraceHeader) },
    { weight: 1, arbitrary: fc.jsonValue() },
  );
  // Numbers the report indexes pages, time bins and chunks by: in range, at the edges, or hostile.
  const field = fc.oneof({ weight: 4, arbitrary: fc.nat(2 ** 21) }, { weight: 1, arbitrary: int }, { weight: 1, arbitrary: fc.double() });
  const record = fc
    .tuple(fc.integer({ min: 0, max: 9 }), fc.nat(3), fc.nat(0xffff), fc.nat(), fc.oneof(fc.nat(10 ** 7), fc.double()), field, field)
    .map(([type, kind, flags, word1, timeUs, a, b]) => {
      const r = new RecordBuffer(1);
      r.put(type, kind, flags, word1, timeUs, a, b);
      return Buffer.from(r.buffer);
    });
  const file = fc
    .tuple(header, fc.array(record, { maxLength: 20 }), fc.nat(RECORD_BYTES - 1))
    .map(([h, records, torn]) => Buffer.concat([encodeHeader(h as TraceHeader), ...records, Buffer.alloc(torn)]));
  return fc.property(file, (f) =>
    typedOnly(() => {
      renderReportHtml(buildTraceReport(decodeTrace(f, 'fuzz'), 'fuzz'));
    }),
  );
}
