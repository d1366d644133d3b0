import fs from 'node:fs';
import { checkOutputPath } from '../output-file.js';
import { openSnapshotStore } from '../snapshot/store-open.js';
import { storeOptionsFor, type StoreFlags } from './store-flags.js';
import { loadManifest, unpack } from '../snapshot/pack.js';
import { ProgressBar } from './progress.js';
import { mib } from './format.js';
import { runInterruptible } from './interrupt.js';

export interface UnpackFlags extends StoreFlags {
  store: string;
  output: string;
  force: boolean;
}

export async function unpackCommand(manifest: string, flags: UnpackFlags): Promise<void> {
  const storeOptions = storeOptionsFor(flags.store, flags, false);
  const manifestFile = fs.existsSync(manifest) && fs.statSync(manifest).isFile() ? [manifest] : [];
  checkOutputPath('--output', flags.output, { force: flags.force, inputs: manifestFile });
  const store = await openSnapshotStore(flags.store, storeOptions);
  const r = await runInterruptible(`unpack to ${flags.output}`, 'no output file written', async (signal) => {
    try {
      const loaded = await loadManifest(manifest, store);
      const bar = new ProgressBar('unpacking');
      const r = await unpack({ loaded, store, outPath: flags.output, signal, onProgress: (d, t) => bar.update(d, t) });
      bar.done();
      return r;
    } finally {
      await store.close();
    }
  });
  const secs = r.durationMs / 1000;
  process.stdout.write(
    `${flags.output}: ${mib(r.memorySizeBytes)} from ${r.chunksFetched} verified chunks (${mib(r.storedBytesRead)} read, ${mib(r.dataBytesWritten)} of data pages written, zero pages left as holes) in ${secs.toFixed(2)} s, ${(r.memorySizeBytes / 1e6 / secs).toFixed(0)} MB/s\n`,
  );
}
