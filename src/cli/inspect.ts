import { FcUffdError } from '../errors.js';
import { loadManifest } from '../snapshot/pack.js';
import { summarizeManifest, type Manifest } from '../snapshot/manifest.js';
import { ChunkFormatError, decodeChunkBlob } from '../snapshot/chunk-format.js';
import { StoreError, type ChunkStore } from '../store/types.js';
import { mib } from './format.js';
import { openSnapshotStore } from '../snapshot/store-open.js';
import { remoteStoreOptions, storeOptionsFor, type StoreFlags } from './store-flags.js';

export interface InspectFlags extends StoreFlags {
  store?: string;
  chunks?: boolean;
  json?: boolean;
  verify?: boolean;
}

export async function inspectCommand(manifest: string, flags: InspectFlags): Promise<void> {
  const storeOptions = flags.store !== undefined ? storeOptionsFor(flags.store, flags, false) : remoteStoreOptions(flags);
  if (flags.verify && flags.store === undefined) throw new FcUffdError('CONFIG', '--verify needs --store');
  const store = flags.store !== undefined ? await openSnapshotStore(flags.store, storeOptions) : undefined;
  try {
    await inspectIn(manifest, flags, store);
  } finally {
    await store?.close();
  }
}

async function inspectIn(manifest: string, flags: InspectFlags, store: ChunkStore | undefined): Promise<void> {
  const { id, manifest: m } = await loadManifest(manifest, store);
  const s = summarizeManifest(m);
  let missing: number[] = [];
  let corrupt: Array<{ index: number; digest: string; why: string }> = [];
  if (flags.verify) {
    if (!store) throw new FcUffdError('CONFIG', '--verify needs --store');
    ({ missing, corrupt } = await verifyChunks(m, store));
  }
  if (missing.length > 0 || corrupt.length > 0) process.exitCode = 1;
  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify({ id, ...m, chunks: flags.chunks ? m.chunks : undefined, summary: s, ...(flags.verify ? { missingChunks: missing, corruptChunks: corrupt.map((c) => c.index) } : {}) })}\n`,
    );
    return;
  }
  const lines = [
    `manifest    ${id}`,
    `format      ${m.format} version ${m.version}`,
    `memory      ${m.memorySizeBytes} bytes (${mib(m.memorySizeBytes)})`,
    `chunks      ${s.chunks} of ${mib(m.chunkSizeBytes)}: ${s.distinctChunks} distinct stored, ${s.zeroChunks} all-zero`,
    `pages       ${s.pages} of ${m.pageSizeBytes} bytes, ${s.zeroPages} zero (${((100 * s.zeroPages) / s.pages).toFixed(1)}%)`,
    `digest      ${m.digestAlgorithm}; compression ${m.compression.algorithm} level ${m.compression.level}`,
    `stored      ${mib(s.storedBytes)} (ratio ${(m.memorySizeBytes / Math.max(1, s.storedBytes)).toFixed(1)})`,
    `base        ${m.base ?? '-'}`,
  ];
  if (flags.verify) {
    if (missing.length === 0 && corrupt.length === 0)
      lines.push(`store       all ${s.distinctChunks} chunks present and verified (every byte hashed) in ${store!.description}`);
    if (missing.length > 0) lines.push(`store       MISSING chunks ${missing.join(', ')}`);
    for (const c of corrupt) lines.push(`store       CORRUPT chunk ${c.index} sha256:${c.digest}: ${c.why}`);
  }
  if (flags.chunks)
    m.chunks.forEach((c, i) =>
      lines.push(
        `  ${String(i).padStart(5)} ${c ? `${c.digest} ${String(c.storedBytes).padStart(9)} B${c.zeroPages ? ' (has zero pages)' : ''}` : 'zero'}`,
      ),
    );
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Reads, decodes and hashes every distinct chunk once (one at a time: bounded memory). Indexes are the manifest's. */
async function verifyChunks(
  m: Manifest,
  store: ChunkStore,
): Promise<{ missing: number[]; corrupt: Array<{ index: number; digest: string; why: string }> }> {
  const missing: number[] = [];
  const corrupt: Array<{ index: number; digest: string; why: string }> = [];
  const verdict = new Map<string, string>(); // 'ok', 'missing', or why the chunk is corrupt
  for (let i = 0; i < m.chunks.length; i++) {
    const c = m.chunks[i];
    if (!c) continue;
    let v = verdict.get(c.digest);
    if (v === undefined) {
      const length = Math.min(m.chunkSizeBytes, m.memorySizeBytes - i * m.chunkSizeBytes);
      v = await verifyChunk(store, c.digest, length);
      verdict.set(c.digest, v);
    }
    if (v === 'missing') missing.push(i);
    else if (v !== 'ok') corrupt.push({ index: i, digest: c.digest, why: v });
  }
  return { missing, corrupt };
}

async function verifyChunk(store: ChunkStore, digest: string, length: number): Promise<string> {
  let blob: Uint8Array;
  try {
    blob = await store.getChunk(digest);
  } catch (err) {
    if (err instanceof StoreError && err.kind === 'not-found') return 'missing';
    throw new FcUffdError('SNAPSHOT_STORE', `cannot read chunk sha256:${digest} from ${store.description}: ${(err as Error).message}`, {
      digest,
    });
  }
  try {
    decodeChunkBlob(blob, Buffer.allocUnsafe(length), digest);
    return 'ok';
  } catch (err) {
    if (err instanceof ChunkFormatError) return err.message;
    throw err;
  }
}
