// GET throughput and latency of each store over loopback: a directory, nginx (HttpStore) and Ceph
// RGW (S3Store). Not a test; numbers for bench/README and the phase-2 design.
//   node dist/bench/store-get.js --http http://127.0.0.1:8080 --s3 http://127.0.0.1:7480 --bucket B
// (S3 credentials from the AWS environment; the bucket must exist.)
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DirStore } from '../src/store/dir.js';
import { HttpStore } from '../src/store/http.js';
import { S3Store } from '../src/store/s3.js';
import type { ChunkStore } from '../src/store/types.js';

const { values } = parseArgs({
  options: {
    http: { type: 'string' },
    s3: { type: 'string' },
    bucket: { type: 'string' },
    objects: { type: 'string', default: '200' },
    runs: { type: 'string', default: '3' },
  },
});
const OBJECTS = Number(values.objects);
const RUNS = Number(values.runs);
const OBJECT_BYTES = 256 * 1024;
const IN_FLIGHT = 16;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function measure(name: string, store: ChunkStore): Promise<void> {
  const digests: string[] = [];
  for (let i = 0; i < OBJECTS; i++) {
    const b = crypto.randomBytes(OBJECT_BYTES);
    const d = crypto.createHash('sha256').update(b).digest('hex');
    await store.putChunk(d, b);
    digests.push(d);
  }
  const rates: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < digests.length) await store.getChunk(digests[next++]!);
      }),
    );
    rates.push((OBJECTS * OBJECT_BYTES) / 2 ** 20 / ((performance.now() - t0) / 1000));
  }
  // One request at a time: a 4 KiB ranged read (what a frame-first fault fetch looks like) and a whole object.
  const lat = async (range: boolean): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < OBJECTS; i++) {
      const t0 = performance.now();
      await store.getChunk(digests[i]!, range ? { range: { offset: 65536, length: 4096 } } : {});
      out.push(performance.now() - t0);
    }
    return out.sort((a, b) => a - b);
  };
  const ranged = await lat(true);
  const whole = await lat(false);
  rates.sort((a, b) => a - b);
  console.log(
    `${name.padEnd(6)} ${IN_FLIGHT} in flight x ${OBJECT_BYTES / 1024} KiB: median ${quantile(rates, 0.5).toFixed(0)} MiB/s (runs ${rates.map((x) => x.toFixed(0)).join(', ')}); ` +
      `4 KiB ranged GET median ${quantile(ranged, 0.5).toFixed(2)} ms p99 ${quantile(ranged, 0.99).toFixed(2)} ms; 256 KiB GET median ${quantile(whole, 0.5).toFixed(2)} ms p99 ${quantile(whole, 0.99).toFixed(2)} ms`,
  );
  await store.close();
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-bench-store-'));
try {
  await measure('dir', DirStore.open(dir, { fsync: false }));
  if (values.http) await measure('http', new HttpStore(`${values.http}/bench-${Date.now()}`));
  if (values.s3 && values.bucket)
    await measure('s3', new S3Store({ bucket: values.bucket, prefix: `bench-${Date.now()}`, endpoint: values.s3 }));
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
