import { DirStore } from '../store/dir.js';
import { FcUffdError } from '../errors.js';
import { loadManifest } from '../snapshot/pack.js';
import { summarizeManifest } from '../snapshot/manifest.js';
import { mib } from './progress.js';

export interface InspectFlags {
  store?: string;
  chunks?: boolean;
  json?: boolean;
  verify?: boolean;
}

export async function inspectCommand(manifest: string, flags: InspectFlags): Promise<void> {
  const store = flags.store ? DirStore.open(flags.store, { create: false }) : undefined;
  const { id, manifest: m } = await loadManifest(manifest, store);
  const s = summarizeManifest(m);
  let missing: number[] = [];
  if (flags.verify) {
    if (!store) throw new FcUffdError('CONFIG', '--verify needs --store');
    const checks = await Promise.all(m.chunks.map(async (c, i) => (c && !(await store.hasChunk(c.digest)) ? i : -1)));
    missing = checks.filter((i) => i >= 0);
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ id, ...m, chunks: flags.chunks ? m.chunks : undefined, summary: s, ...(flags.verify ? { missingChunks: missing } : {}) })}\n`);
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
  if (flags.verify) lines.push(`store       ${missing.length === 0 ? `all ${s.distinctChunks} chunks present in ${store!.description}` : `MISSING chunks ${missing.join(', ')}`}`);
  if (flags.chunks)
    m.chunks.forEach((c, i) => lines.push(`  ${String(i).padStart(5)} ${c ? `${c.digest} ${String(c.storedBytes).padStart(9)} B${c.zeroPages ? ' (has zero pages)' : ''}` : 'zero'}`));
  process.stdout.write(`${lines.join('\n')}\n`);
  if (missing.length > 0) process.exitCode = 1;
}
