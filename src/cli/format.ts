import type { VmInfo } from '../server/server.js';

/** The one size formatter of the CLI's human output. */
export function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** A VM's summary, readable by a person: one line of facts per topic. */
export function formatVmSummary(vm: VmInfo): string {
  const s = vm.stats;
  const lines = [
    `${vm.id} (VMM pid ${vm.peer.pid}, Firecracker ${vm.generation ?? 'unknown'}, ${vm.pageSizeBytes ?? '?'}-byte pages): ${vm.endReason ?? vm.state}${vm.error ? ` — ${vm.error.code}: ${vm.error.message}` : ''}${vm.killed ? ' (VMM killed)' : ''}`,
    `  faults served   ${s.faults}  (latency p50 ${s.latency.p50Us.toFixed(1)} µs, p99 ${s.latency.p99Us.toFixed(1)} µs, max ${s.latency.maxUs.toFixed(1)} µs)`,
    `  pages installed ${s.pagesCopied} copied (${mib(s.bytesCopied)}), ${s.pagesZeroed} zero pages, ${s.installIoctls} ioctls`,
    `  races           ${s.eexist} EEXIST, ${s.eagain} EAGAIN, ${s.deferrals} deferred (max ${s.maxDeferralUs.toFixed(0)} µs)`,
  ];
  if (s.removeEvents > 0)
    lines.push(`  balloon         ${s.removeEvents} REMOVE events, ${mib(s.bytesRemoved)} removed, ${s.zeroPagesForRemoved} zero pages served for removed ranges`);
  return lines.join('\n');
}
