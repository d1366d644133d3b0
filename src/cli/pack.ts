import { FcUffdError } from '../errors.js';
import fs from 'node:fs';
import { openSnapshotStore } from '../snapshot/store-open.js';
import { storeOptionsFor, type StoreFlags } from './store-flags.js';
import { loadManifest, pack, parseRanges } from '../snapshot/pack.js';
import { ProgressBar } from './progress.js';
import { mib } from './format.js';
import { runInterruptible } from './interrupt.js';

export interface PackFlags extends StoreFlags {
  store: string;
  base?: string;
  diff?: boolean;
  removed?: string[];
  chunkSize?: number;
  level: number;
  json?: boolean;
}

export async function packCommand(memfile: string, flags: PackFlags): Promise<void> {
  const storeOptions = storeOptionsFor(flags.store, flags, true);
  // Inputs are checked before the store is opened: a failed pack must not leave a new empty store.
  const st = fs.statSync(memfile, { throwIfNoEntry: false });
  if (!st) throw new FcUffdError('CONFIG_INVALID', `memory file ${memfile} does not exist`);
  if (!st.isFile()) throw new FcUffdError('CONFIG_INVALID', `${memfile} is not a file (a directory?): give the snapshot's memory file`);
  const removed = (flags.removed ?? []).flatMap((f) => {
    const ranges = parseRanges(fs.readFileSync(f, 'utf8'), f);
    const beyond = ranges.find(([, end]) => end > st.size);
    // A range past the end means the ranges belong to another (larger) snapshot: dropping pages by them would lose data.
    if (beyond)
      throw new FcUffdError(
        'CONFIG_INVALID',
        `--removed ${f}: range ${beyond[0]} ${beyond[1]} ends beyond the memory file's ${st.size} bytes; these ranges were not recorded for ${memfile}`,
      );
    return ranges;
  });
  const store = await openSnapshotStore(flags.store, storeOptions);
  // Chunks already stored stay (whole, content-addressed: a later pack reuses them); no manifest is written.
  const { r, base } = await runInterruptible('pack', 'no snapshot written', async (signal) => {
    try {
      const base = flags.base ? await loadManifest(flags.base, store) : undefined;
      const bar = new ProgressBar('packing');
      const r = await pack({
        signal,
        memPath: memfile,
        store,
        ...(base ? { base } : {}),
        diff: flags.diff ?? false,
        removed,
        ...(flags.chunkSize ? { chunkSizeBytes: flags.chunkSize } : {}),
        zstdLevel: flags.level,
        onProgress: (d, t) => bar.update(d, t),
      });
      bar.done();
      return { r, base };
    } finally {
      await store.close();
    }
  });
  const secs = r.durationMs / 1000;
  if (flags.json) {
    const { manifest: _m, manifestBytes: _b, ...rest } = r;
    process.stdout.write(`${JSON.stringify(rest)}\n`);
    return;
  }
  const dataBytes = r.memorySizeBytes - r.zeroPages * r.manifest.pageSizeBytes;
  process.stdout.write(
    [
      r.id,
      `  memory      ${mib(r.memorySizeBytes)} in ${r.chunks} chunks of ${mib(r.manifest.chunkSizeBytes)}${base ? ` (base ${base.id.slice(0, 12)}${flags.diff ? ', diff' : ''})` : ''}`,
      `  chunks      ${r.newChunks} new, ${r.reusedChunks} reused, ${r.zeroChunks} all-zero (not stored)`,
      `  zero pages  ${r.zeroPages} of ${r.pages} (${((100 * r.zeroPages) / r.pages).toFixed(1)}%)${removed.length ? `, incl. balloon-removed ranges from ${flags.removed!.join(', ')}` : ''}`,
      `  stored      ${mib(r.newStoredBytes)} new (${mib(r.newDataBytes)} of data pages, ratio ${r.newStoredBytes ? (r.newDataBytes / r.newStoredBytes).toFixed(2) : '-'}); snapshot ${mib(r.totalStoredBytes)} for ${mib(r.memorySizeBytes)} (ratio ${(r.memorySizeBytes / Math.max(1, r.totalStoredBytes)).toFixed(1)}, non-zero data ${(dataBytes / Math.max(1, r.totalStoredBytes)).toFixed(2)})`,
      `  throughput  ${(r.memorySizeBytes / 1e6 / secs).toFixed(0)} MB/s (${secs.toFixed(2)} s)`,
    ].join('\n') + '\n',
  );
}
