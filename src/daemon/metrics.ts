import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { registerStoreMetrics } from '../server/metrics.js';
import type { VmInfo } from '../server/server.js';
import type { Daemon } from './daemon.js';

/**
 * The daemon's Prometheus metrics. Per restore (label `restore`): VMs by state and counters summed
 * over its VMs, live and ended (a restore keeps its VMs until it is gone, so the sums never go
 * back while the restore exists). Cardinality is bounded by the restores, not the VMs.
 */
export function createDaemonMetrics(daemon: Daemon): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'fc_uffd_' });
  new Gauge({
    name: 'fc_uffd_restores',
    help: 'restores by state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      const all = daemon.vmsByRestore();
      this.set({ state: 'serving' }, all.filter((r) => r.state === 'serving').length);
      this.set({ state: 'draining' }, all.filter((r) => r.state === 'draining').length);
    },
  });
  new Gauge({
    name: 'fc_uffd_restore_vms',
    help: 'VMs of each restore being served, by state',
    labelNames: ['restore', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of daemon.vmsByRestore()) {
        this.set({ restore: r.name, state: 'handshake' }, r.vms.filter((v) => v.state === 'handshake').length);
        this.set({ restore: r.name, state: 'serving' }, r.vms.filter((v) => v.state === 'serving').length);
      }
    },
  });
  const sums: Array<[string, string, (vm: VmInfo) => number]> = [
    ['fc_uffd_restore_faults_total', 'page faults served', (vm) => vm.stats.faults],
    ['fc_uffd_restore_copied_bytes_total', 'bytes of snapshot data installed', (vm) => vm.stats.bytesCopied],
    ['fc_uffd_restore_vms_started_total', 'VMs that connected', () => 1],
  ];
  for (const [name, help, of] of sums) {
    new Counter({
      name,
      help,
      labelNames: ['restore'],
      registers: [registry],
      collect() {
        this.reset();
        for (const r of daemon.vmsByRestore())
          this.inc(
            { restore: r.name },
            r.vms.reduce((n, vm) => n + of(vm), 0),
          );
      },
    });
  }
  const cacheGauge = (name: string, help: string, of: (h: ReturnType<Daemon['health']>['chunk_cache']) => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(of(daemon.health().chunk_cache));
      },
    });
  };
  cacheGauge('fc_uffd_chunk_cache_bytes', 'decompressed chunk bytes held by the shared cache', (c) => c.size_bytes);
  cacheGauge('fc_uffd_chunk_cache_chunks', 'chunks held by the shared cache', (c) => c.chunks);
  cacheGauge('fc_uffd_chunk_cache_hits', 'chunk cache hits since start', (c) => c.hits);
  cacheGauge('fc_uffd_chunk_cache_misses', 'chunk cache misses (chunks loaded) since start', (c) => c.misses);
  registerStoreMetrics(registry, () => daemon.openStores());
  return registry;
}
