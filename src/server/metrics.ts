import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { UffdServer, VmInfo } from './server.js';
import { WINDOW_BUCKET_BYTES, type CounterName } from '../serve/stats.js';

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
