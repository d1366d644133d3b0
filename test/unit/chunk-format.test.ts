// Tier 1: the chunk blob and the manifest, no store, no kernel.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  analyzeChunk,
  BLOB_HEADER_BYTES,
  ChunkFormatError,
  decodeChunkBlob,
  decodeFrames,
  encodeChunkBlob,
  encodeChunkBlobFramed,
  framedHeaderBytes,
  parseBlobHeader,
  sha256Hex,
} from '../../src/snapshot/chunk-format.js';
import {
  encodeManifest,
  frameOffsets,
  manifestId,
  MANIFEST_VERSION,
  parseManifest,
  summarizeManifest,
  type Manifest,
} from '../../src/snapshot/manifest.js';
import { FcUffdError } from '../../src/errors.js';

const MiB = 1024 * 1024;

function chunkWith(len: number, zeroPages: number[]): Uint8Array {
  const c = new Uint8Array(len);
  crypto.randomFillSync(c);
  for (let p = 0; p < Math.ceil(len / 4096); p++) if (p % 3 === 1) c.fill(p & 0xff, p * 4096, Math.min(len, (p + 1) * 4096)); // compressible pages
  for (const p of zeroPages) c.fill(0, p * 4096, Math.min(len, (p + 1) * 4096));
  return c;
}

function roundTrip(chunk: Uint8Array): Uint8Array {
  const a = analyzeChunk(chunk);
  const blob = encodeChunkBlob(chunk, a);
  const out = new Uint8Array(new SharedArrayBuffer(chunk.length));
  out.fill(0xee); // decode must write every byte
  decodeChunkBlob(blob, out, sha256Hex(chunk));
  return out;
}

describe('chunk blob', () => {
  test('round trips with zero pages at the start, middle and end, and a short last page', () => {
    for (const len of [2 * MiB, 4 * MiB, 2 * MiB - 4096 * 3 + 100, 4096, 17]) {
      const pages = Math.ceil(len / 4096);
      const chunk = chunkWith(
        len,
        [0, Math.floor(pages / 2), pages - 1].filter((p) => p >= 0 && p < pages && pages > 1),
      );
      assert.deepEqual(Buffer.from(roundTrip(chunk)), Buffer.from(chunk), `length ${len}`);
    }
  });

  test('zero pages are elided: a mostly zero chunk stores little', () => {
    const chunk = new Uint8Array(4 * MiB);
    crypto.randomFillSync(chunk.subarray(4096 * 10, 4096 * 12));
    const a = analyzeChunk(chunk);
    assert.equal(a.dataPages, 2);
    assert.equal(a.zeroPages, 1022);
    const blob = encodeChunkBlob(chunk, a);
    assert.ok(blob.length < 8192 + BLOB_HEADER_BYTES + 200, `blob ${blob.length} bytes`);
    assert.equal(parseBlobHeader(blob).dataPages, 2);
  });

  test('a wrong digest, a flipped payload byte, a bad header or an unknown blob version is refused', () => {
    const chunk = chunkWith(2 * MiB, [5]);
    const blob = encodeChunkBlob(chunk, analyzeChunk(chunk));
    const out = new Uint8Array(2 * MiB);
    assert.throws(
      () => decodeChunkBlob(blob, out, sha256Hex(new Uint8Array(1))),
      (e: unknown) => e instanceof ChunkFormatError && /hashes to/.test(e.message),
    );
    const flipped = Uint8Array.from(blob);
    flipped[flipped.length - 100]! ^= 0x01;
    assert.throws(() => decodeChunkBlob(flipped, out, sha256Hex(chunk)), ChunkFormatError);
    const badMagic = Uint8Array.from(blob);
    badMagic[0] = 0;
    assert.throws(() => decodeChunkBlob(badMagic, out, sha256Hex(chunk)), /magic/);
    const v3 = Uint8Array.from(blob);
    v3[4] = 3;
    assert.throws(() => decodeChunkBlob(v3, out, sha256Hex(chunk)), /version 3 is not supported/);
    const v2 = Uint8Array.from(blob);
    v2[4] = 2; // a version 1 layout claiming version 2
    assert.throws(() => decodeChunkBlob(v2, out, sha256Hex(chunk)), ChunkFormatError);
    assert.throws(() => decodeChunkBlob(blob.subarray(0, 10), out, sha256Hex(chunk)), /shorter than its header/);
    assert.throws(() => decodeChunkBlob(blob.subarray(0, blob.length - 50), out, sha256Hex(chunk)), ChunkFormatError);
    assert.throws(() => decodeChunkBlob(blob, new Uint8Array(4 * MiB), sha256Hex(chunk)), /expects/);
  });
});

function sampleManifest(): Manifest {
  return {
    format: 'fc-uffd-chunked-snapshot',
    version: 1,
    memorySizeBytes: 5 * MiB,
    chunkSizeBytes: 2 * MiB,
    pageSizeBytes: 4096,
    digestAlgorithm: 'sha256',
    compression: { algorithm: 'zstd', level: 3 },
    base: null,
    chunks: [
      { digest: 'a'.repeat(64), storedBytes: 100, zeroPages: Buffer.alloc(64, 0x0f).toString('base64') },
      null,
      { digest: 'b'.repeat(64), storedBytes: 5 },
    ],
  };
}

describe('manifest', () => {
  test('canonical encoding: the id is the sha256 of the bytes, parse inverts encode', () => {
    const m = sampleManifest();
    const bytes = encodeManifest(m);
    const { manifest, id } = parseManifest(bytes, manifestId(bytes));
    assert.deepEqual(manifest, m);
    assert.equal(id, sha256Hex(bytes));
    assert.deepEqual(Buffer.from(encodeManifest(manifest)), Buffer.from(bytes));
    const s = summarizeManifest(m);
    assert.equal(s.zeroChunks, 1);
    assert.equal(s.zeroPages, 512 + 4 * 64);
    assert.equal(s.storedBytes, 105);
  });

  test('self-describing: it names its version, sizes, digest and compression', () => {
    const o = JSON.parse(Buffer.from(encodeManifest(sampleManifest())).toString()) as Record<string, unknown>;
    assert.equal(o.version, 1);
    for (const k of ['format', 'memorySizeBytes', 'chunkSizeBytes', 'pageSizeBytes', 'digestAlgorithm', 'compression'])
      assert.ok(k in o, k);
  });

  const code = (c: string) => (e: unknown) => e instanceof FcUffdError && e.code === c;

  test('unknown version, truncation, tampering and bad fields are clear errors', () => {
    const bytes = encodeManifest(sampleManifest());
    const text = Buffer.from(bytes).toString();
    assert.throws(() => parseManifest(Buffer.from(text.replace('"version":1', '"version":3'))), code('SNAPSHOT_MANIFEST_VERSION'));
    assert.throws(() => parseManifest(Buffer.from(text.replace('"version":1', '"version":2'))), /frameSizeBytes/);
    assert.throws(() => parseManifest(bytes.subarray(0, bytes.length - 30)), code('SNAPSHOT_MANIFEST_INVALID'));
    assert.throws(() => parseManifest(bytes.subarray(0, bytes.length - 30), manifestId(bytes)), code('SNAPSHOT_MANIFEST_CORRUPT'));
    assert.throws(() => parseManifest(Buffer.from(text.replace('"chunkSizeBytes":2097152', '"chunkSizeBytes":3145728'))), /power of two/);
    assert.throws(
      () => parseManifest(Buffer.from(text.replace('"memorySizeBytes":5242880', '"memorySizeBytes":8388608'))),
      /chunks listed/,
    );
    assert.throws(() => parseManifest(Buffer.from(text.replace('"algorithm":"zstd"', '"algorithm":"lz4"'))), /compression/);
    assert.throws(() => parseManifest(Buffer.from(text.replace('fc-uffd-chunked-snapshot', 'other'))), code('SNAPSHOT_MANIFEST_INVALID'));
    assert.throws(() => parseManifest(Buffer.from(text.replace('a'.repeat(64), 'zz'))), /digest/);
  });
});

const KiB = 1024;

/** A 1 MiB chunk in 256 KiB frames: frame 1 all zero, frame 2 with zero pages inside, short last page. */
function framedSample(): { chunk: Uint8Array; f: ReturnType<typeof encodeChunkBlobFramed> } {
  const len = MiB - 1000;
  const zero = [...Array.from({ length: 64 }, (_, i) => 64 + i), 130, 131, 190];
  const chunk = chunkWith(len, zero);
  return { chunk, f: encodeChunkBlobFramed(chunk, analyzeChunk(chunk), 256 * KiB) };
}

describe('framed chunk blob (version 2)', () => {
  test('round trips whole; each frame decodes alone from its own byte range; an all-zero frame stores nothing', () => {
    const { chunk, f } = framedSample();
    assert.equal(parseBlobHeader(f.blob).version, 2);
    assert.deepEqual(
      f.frameBytes.map((b) => b > 0),
      [true, false, true, true],
    );
    assert.deepEqual(
      f.frameSha256.map((h) => h !== ''),
      [true, false, true, true],
    );
    assert.equal(f.blob.length, framedHeaderBytes(chunk.length, 256 * KiB) + f.frameBytes.reduce((a, b) => a + b, 0));
    const whole = new Uint8Array(chunk.length).fill(0xee);
    decodeChunkBlob(f.blob, whole, sha256Hex(chunk));
    assert.deepEqual(whole, chunk);
    // Frame by frame, each from a ranged slice (as a ranged GET returns it), in reverse order.
    const bitmap = analyzeChunk(chunk).zeroBitmap;
    const offsets = frameOffsets(
      { digest: sha256Hex(chunk), storedBytes: f.blob.length, frameBytes: f.frameBytes, frameSha256: f.frameSha256 },
      chunk.length,
      256 * KiB,
    );
    const out = new Uint8Array(new SharedArrayBuffer(chunk.length)).fill(0xee);
    for (const k of [3, 2, 0]) {
      const src = f.blob.slice(offsets[k], offsets[k + 1]);
      decodeFrames(src, out, bitmap, 256 * KiB, [{ frame: k, srcOffset: 0, srcLength: src.length, sha256: f.frameSha256[k]! }]);
      const a = k * 256 * KiB;
      const b = Math.min(a + 256 * KiB, chunk.length);
      assert.deepEqual(out.subarray(a, b), chunk.subarray(a, b), `frame ${k}`);
      if (k === 3)
        assert.ok(
          out.subarray(0, 3 * 256 * KiB).every((x) => x === 0xee),
          'decoding a frame writes nothing outside it',
        );
    }
  });

  test('a flipped byte in one frame fails that frame only; a wrong frame hash or a bad frame table is refused', () => {
    const { chunk, f } = framedSample();
    const bitmap = analyzeChunk(chunk).zeroBitmap;
    const offsets = frameOffsets(
      { digest: sha256Hex(chunk), storedBytes: f.blob.length, frameBytes: f.frameBytes, frameSha256: f.frameSha256 },
      chunk.length,
      256 * KiB,
    );
    const bad = Uint8Array.from(f.blob);
    bad[offsets[2]! + Math.floor(f.frameBytes[2]! / 2)]! ^= 0x10;
    const out = new Uint8Array(chunk.length);
    const job = (k: number, sha = f.frameSha256[k]!) => [{ frame: k, srcOffset: offsets[k]!, srcLength: f.frameBytes[k]!, sha256: sha }];
    assert.throws(() => decodeFrames(bad, out, bitmap, 256 * KiB, job(2)), ChunkFormatError);
    for (const k of [0, 3]) decodeFrames(bad, out, bitmap, 256 * KiB, job(k)); // the others still verify
    assert.throws(() => decodeChunkBlob(bad, out, sha256Hex(chunk)), ChunkFormatError);
    assert.throws(() => decodeFrames(f.blob, out, bitmap, 256 * KiB, job(0, f.frameSha256[2])), /hashes to/);
    const table = Uint8Array.from(f.blob);
    new DataView(table.buffer).setUint32(32 + 32 + 4 * 0, f.frameBytes[0]! + 1, true); // bitmap of 256 pages = 32 bytes
    assert.throws(() => parseBlobHeader(table), /frames take/);
  });

  test('the frame layout pays for itself: frames compress within 2 % of one frame on the same chunk', () => {
    const chunk = chunkWith(4 * MiB, [1, 2, 3]);
    const a = analyzeChunk(chunk);
    const one = encodeChunkBlob(chunk, a).length;
    const framed = encodeChunkBlobFramed(chunk, a, 256 * KiB).blob.length;
    assert.ok(framed <= one * 1.02, `framed ${framed} vs one frame ${one}`);
  });
});

function framedManifest(): Manifest {
  const { chunk, f } = framedSample();
  const a = analyzeChunk(chunk);
  return {
    format: 'fc-uffd-chunked-snapshot',
    version: 2,
    memorySizeBytes: 2 * MiB + chunk.length,
    chunkSizeBytes: 2 * MiB,
    pageSizeBytes: 4096,
    frameSizeBytes: 256 * KiB,
    digestAlgorithm: 'sha256',
    compression: { algorithm: 'zstd', level: 3 },
    base: null,
    // A version 1 blob (no frames) next to a framed one: both are valid in a version 2 manifest.
    chunks: [
      { digest: 'b'.repeat(64), storedBytes: 5 },
      {
        digest: sha256Hex(chunk),
        storedBytes: f.blob.length,
        zeroPages: Buffer.from(a.zeroBitmap).toString('base64'),
        frameBytes: f.frameBytes,
        frameSha256: f.frameSha256,
      },
    ],
  };
}

describe('manifest version 2 (frames)', () => {
  test('canonical: parse inverts encode, frames kept; version 1 manifests still read', () => {
    const m = framedManifest();
    const bytes = encodeManifest(m);
    const { manifest } = parseManifest(bytes, manifestId(bytes));
    assert.deepEqual(manifest, m);
    assert.deepEqual(Buffer.from(encodeManifest(manifest)), Buffer.from(bytes));
    assert.equal(MANIFEST_VERSION, 2);
    const v1 = encodeManifest(sampleManifest());
    assert.equal(parseManifest(v1).manifest.version, 1);
    assert.ok(!Buffer.from(v1).toString().includes('frame'), 'a version 1 manifest is written without frame fields');
  });

  test('frame tables that do not add up are refused', () => {
    const m = framedManifest();
    const text = Buffer.from(encodeManifest(m)).toString();
    const e = m.chunks[1]!;
    const swap = (from: string, to: string) => () => parseManifest(Buffer.from(text.replace(from, to)));
    assert.throws(swap(`"frameSizeBytes":262144`, `"frameSizeBytes":300000`), /frameSizeBytes/);
    assert.throws(swap(`"frameBytes":[${e.frameBytes!.join(',')}]`, `"frameBytes":[${e.frameBytes!.slice(1).join(',')}]`), /frames/);
    assert.throws(swap(`"frameBytes":[${e.frameBytes![0]}`, `"frameBytes":[${e.frameBytes![0]! + 1}`), /storedBytes/);
    assert.throws(swap(`"${e.frameSha256![0]}"`, '""'), /exactly when/);
    assert.throws(swap(`"${e.frameSha256![0]}"`, '"xyz"'), /sha256/);
    const v1WithFrames = text.replace('"version":2', '"version":1');
    assert.throws(() => parseManifest(Buffer.from(v1WithFrames)), /version 1/);
  });
});
