// Tier 1: the chunk blob and the manifest, no store, no kernel.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  analyzeChunk,
  BLOB_HEADER_BYTES,
  ChunkFormatError,
  decodeChunkBlob,
  encodeChunkBlob,
  parseBlobHeader,
  sha256Hex,
} from '../../src/snapshot/chunk-format.js';
import { encodeManifest, manifestId, MANIFEST_VERSION, parseManifest, summarizeManifest, type Manifest } from '../../src/snapshot/manifest.js';
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
      const chunk = chunkWith(len, [0, Math.floor(pages / 2), pages - 1].filter((p) => p >= 0 && p < pages && pages > 1));
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
    assert.throws(() => decodeChunkBlob(blob, out, sha256Hex(new Uint8Array(1))), (e: unknown) => e instanceof ChunkFormatError && /hashes to/.test(e.message));
    const flipped = Uint8Array.from(blob);
    flipped[flipped.length - 100]! ^= 0x01;
    assert.throws(() => decodeChunkBlob(flipped, out, sha256Hex(chunk)), ChunkFormatError);
    const badMagic = Uint8Array.from(blob);
    badMagic[0] = 0;
    assert.throws(() => decodeChunkBlob(badMagic, out, sha256Hex(chunk)), /magic/);
    const v2 = Uint8Array.from(blob);
    v2[4] = 2;
    assert.throws(() => decodeChunkBlob(v2, out, sha256Hex(chunk)), /version 2 is not supported/);
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
    chunks: [{ digest: 'a'.repeat(64), storedBytes: 100, zeroPages: Buffer.alloc(64, 0x0f).toString('base64') }, null, { digest: 'b'.repeat(64), storedBytes: 5 }],
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
    assert.equal(o.version, MANIFEST_VERSION);
    for (const k of ['format', 'memorySizeBytes', 'chunkSizeBytes', 'pageSizeBytes', 'digestAlgorithm', 'compression']) assert.ok(k in o, k);
  });

  const code = (c: string) => (e: unknown) => e instanceof FcUffdError && e.code === c;

  test('unknown version, truncation, tampering and bad fields are clear errors', () => {
    const bytes = encodeManifest(sampleManifest());
    const text = Buffer.from(bytes).toString();
    assert.throws(() => parseManifest(Buffer.from(text.replace('"version":1', '"version":2'))), code('SNAPSHOT_MANIFEST_VERSION'));
    assert.throws(() => parseManifest(bytes.subarray(0, bytes.length - 30)), code('SNAPSHOT_MANIFEST_INVALID'));
    assert.throws(() => parseManifest(bytes.subarray(0, bytes.length - 30), manifestId(bytes)), code('SNAPSHOT_MANIFEST_CORRUPT'));
    assert.throws(() => parseManifest(Buffer.from(text.replace('"chunkSizeBytes":2097152', '"chunkSizeBytes":3145728'))), /power of two/);
    assert.throws(() => parseManifest(Buffer.from(text.replace('"memorySizeBytes":5242880', '"memorySizeBytes":8388608'))), /chunks listed/);
    assert.throws(() => parseManifest(Buffer.from(text.replace('"algorithm":"zstd"', '"algorithm":"lz4"'))), /compression/);
    assert.throws(() => parseManifest(Buffer.from(text.replace('fc-uffd-chunked-snapshot', 'other'))), code('SNAPSHOT_MANIFEST_INVALID'));
    assert.throws(() => parseManifest(Buffer.from(text.replace('a'.repeat(64), 'zz'))), /digest/);
  });
});
