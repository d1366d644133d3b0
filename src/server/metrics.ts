import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { UffdServer, VmInfo } from './server.js';
import { WINDOW_BUCKET_BYTES, type CounterName } from '../serve/stats.js';
import { storeCounts, type StoreCounts } from '../store/stats.js';
import type { ChunkStore } from '../store/types.js';

/** Per-VM counters exported as Prometheus counters: [stats name, metric name, help]. */
const VM_COUNTERS: Array<[CounterName, string, string]> = [
  ['faults', 'faults_total', 'page faults served'],
  ['pagesCopied', 'pages_copied_total', 'pages installed with UFFDIO_COPY of snapshot data'],
  ['pagesZeroed', 'pages_zeroed_total', 'pages installed as zeros (zero in the snapshot, or removed by the balloon)'],
  ['bytesCopied', 'copied_bytes_total', 'bytes of snapshot data installed'],
  ['eexist', 'eexist_total', 'installs that found the page already mapped'],
  ['eagain', 'eagain_total', 'installs refused with EAGAIN while the address space changed'],
  ['deferrals', 'deferrals_total', 'faults deferred after EAGAIN'],
  ['removeEvents', 'remove_events_total', 'balloon REMOVE events'],
  ['bytesRemoved', 'removed_bytes_total', 'bytes the balloon removed'],
  ['zeroPagesForRemoved', 'removed_zero_pages_total', 'zero pages served for balloon-removed ranges'],
  ['prefetchedPages', 'prefetched_pages_total', 'pages installed ahead of the guest from a working set'],
  ['installIoctls', 'install_ioctls_total', 'UFFDIO_COPY / UFFDIO_ZEROPAGE calls, prefetch included'],
  ['faultIoctls', 'fault_ioctls_total', 'install ioctls for faults and their fault-around windows (per fault: ioctls per fault)'],
  [
    'faultPagesInstalled',
    'fault_installed_pages_total',
    'pages installed for faults and their fault-around windows (per fault: the amplification)',
  ],
];

/** Window bucket labels: the bucket's largest window in bytes, `+Inf` for the last. */
const WINDOW_LABELS = [...WINDOW_BUCKET_BYTES.map(String), '+Inf'];

/**
 * Prometheus metrics of a handler process. Live VMs are labelled by id; the counters of ended VMs
 * are folded into the same series without a vm label (`vm=""`), so cardinality stays bounded by the
 * VMs running now while totals never go backwards.
 */
export function createMetrics(server: UffdServer, registry = new Registry()): Registry {
  collectDefaultMetrics({ register: registry, prefix: 'fc_uffd_' });
  const ended = new Map<CounterName, number>(VM_COUNTERS.map(([name]) => [name, 0]));
  const endReasons = new Counter({
    name: 'fc_uffd_vms_ended_total',
    help: 'VMs whose service ended, by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  const endedWindows = WINDOW_LABELS.map(() => 0);
  server.on('vm-ended', (_vm, info) => {
    for (const [name] of VM_COUNTERS) ended.set(name, ended.get(name)! + info.stats[name]);
    endReasons.inc({ reason: info.endReason ?? 'fatal' });
    info.stats.faultAround.windowCounts.forEach((n, i) => (endedWindows[i]! += n));
  });
  const live = (): VmInfo[] => server.liveVms();

  for (const [name, metric, help] of VM_COUNTERS) {
    new Counter({
      name: `fc_uffd_${metric}`,
      help,
      labelNames: ['vm'],
      registers: [registry],
      collect() {
        this.reset();
        this.inc({ vm: '' }, ended.get(name));
        for (const vm of live()) this.inc({ vm: vm.id }, vm.stats[name]);
      },
    });
  }
  new Counter({
    name: 'fc_uffd_fault_windows_total',
    help: "faults served, by the size of their fault-around window: max_bytes is the bucket's largest window (not cumulative)",
    labelNames: ['vm', 'max_bytes'],
    registers: [registry],
    collect() {
      this.reset();
      WINDOW_LABELS.forEach((max, i) => this.inc({ vm: '', max_bytes: max }, endedWindows[i]));
      for (const vm of live())
        vm.stats.faultAround.windowCounts.forEach((n, i) => this.inc({ vm: vm.id, max_bytes: WINDOW_LABELS[i]! }, n));
    },
  });
  new Gauge({
    name: 'fc_uffd_vms',
    help: 'VMs being served, by state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      const vms = live();
      this.set({ state: 'handshake' }, vms.filter((v) => v.state === 'handshake').length);
      this.set({ state: 'serving' }, vms.filter((v) => v.state === 'serving').length);
    },
  });
  new Gauge({
    name: 'fc_uffd_fault_latency_microseconds',
    help: 'fault service latency of live VMs (read of the event to the faulting page installed), by quantile',
    labelNames: ['vm', 'quantile'],
    registers: [registry],
    collect() {
      this.reset();
      for (const vm of live()) {
        const l = vm.stats.latency;
        if (l.count === 0) continue;
        this.set({ vm: vm.id, quantile: '0.5' }, l.p50Us);
        this.set({ vm: vm.id, quantile: '0.99' }, l.p99Us);
        this.set({ vm: vm.id, quantile: '1' }, l.maxUs);
      }
    },
  });
  return registry;
}

/**
 * Counters of the stores `stores()` returns at each scrape, labelled by store (as logs name it: no
 * credentials): what was asked of each and what came of it, and its disk cache's hits, misses,
 * evictions and damaged entries. A store counts from when it was opened.
 */
export function registerStoreMetrics(registry: Registry, stores: () => ChunkStore[]): void {
  const counter = (
    name: string,
    help: string,
    label: string | undefined,
    values: (c: StoreCounts) => Array<[string, number]> | undefined,
  ): void => {
    new Counter({
      name,
      help,
      labelNames: label ? ['store', label] : ['store'],
      registers: [registry],
      collect() {
        this.reset();
        for (const store of stores()) {
          const c = storeCounts(store);
          for (const [value, n] of values(c) ?? [])
            this.inc(label ? { store: c.description, [label]: value } : { store: c.description }, n);
        }
      },
    });
  };
  counter('fc_uffd_store_requests_total', 'requests sent to the store, by operation (each try of a retried operation)', 'op', (c) =>
    c.requests ? Object.entries(c.requests.tries) : undefined,
  );
  counter('fc_uffd_store_retries_total', 'store requests that failed and were tried again', undefined, (c) =>
    c.requests ? [['', c.requests.retries]] : undefined,
  );
  counter(
    'fc_uffd_store_failures_total',
    "store operations that failed in the end (at once, or with their retries spent), by their last error's kind",
    'kind',
    (c) => (c.requests ? Object.entries(c.requests.failures) : undefined),
  );
  counter('fc_uffd_store_received_bytes_total', 'bytes of the store reads that succeeded (chunks, frames, manifests)', undefined, (c) =>
    c.requests ? [['', c.requests.receivedBytes]] : undefined,
  );
  const disk = (name: string, help: string, of: (d: NonNullable<StoreCounts['diskCache']>) => number): void =>
    counter(name, help, undefined, (c) => (c.diskCache ? [['', of(c.diskCache)]] : undefined));
  disk('fc_uffd_disk_cache_hits_total', 'reads served from the local disk cache', (d) => d.hits);
  disk('fc_uffd_disk_cache_misses_total', 'reads the local disk cache passed to the store', (d) => d.misses);
  disk('fc_uffd_disk_cache_evicted_entries_total', 'disk cache entries removed to stay within its size', (d) => d.evictedEntries);
  disk('fc_uffd_disk_cache_corrupt_entries_total', 'disk cache entries found damaged (deleted and fetched again)', (d) => d.corruptEntries);
}

/** Serves `registry` at http://host:port/metrics; resolves with the bound address. */
export async function serveMetrics(registry: Registry, host: string, port: number): Promise<{ server: http.Server; address: AddressInfo }> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500).end(`${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return { server, address: server.address() as AddressInfo };
}
