import type { VmInfo } from '../server/server.js';
import { WINDOW_BUCKET_BYTES } from '../serve/stats.js';

/** The one size formatter of the CLI's human output. */
export function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Window histogram as `4k:12 256k:40`, empty buckets left out. */
function formatWindows(counts: number[]): string {
  const label = (b: number): string => (b >= 1024 * 1024 ? `${b / (1024 * 1024)}m` : `${b / 1024}k`);
  const parts = counts.flatMap((n, i) =>
    n > 0 ? [`${i < WINDOW_BUCKET_BYTES.length ? label(WINDOW_BUCKET_BYTES[i]!) : `>${label(WINDOW_BUCKET_BYTES.at(-1)!)}`}:${n}`] : [],
  );
  return parts.length > 0 ? parts.join(' ') : 'none';
}

/** A VM's summary, readable by a person: one line of facts per topic. */
export function formatVmSummary(vm: VmInfo): string {
  const s = vm.stats;
  const lines = [
    `${vm.id} (VMM pid ${vm.peer.pid}, Firecracker ${vm.generation ?? 'unknown'}, ${vm.pageSizeBytes ?? '?'}-byte pages): ${vm.endReason ?? vm.state}${vm.error ? ` — ${vm.error.code}: ${vm.error.message}` : ''}${vm.killed ? ' (VMM killed)' : ''}`,
    `  faults served   ${s.faults}  (latency p50 ${s.latency.p50Us.toFixed(1)} µs, p99 ${s.latency.p99Us.toFixed(1)} µs, max ${s.latency.maxUs.toFixed(1)} µs)`,
    `  pages installed ${s.pagesCopied} copied (${mib(s.bytesCopied)}), ${s.pagesZeroed} zero pages, ${s.installIoctls} ioctls`,
    `  fault-around    ${s.faultAround.amplification.toFixed(2)} pages installed per fault, ${s.faultAround.ioctlsPerFault.toFixed(2)} ioctls per fault; windows ${formatWindows(s.faultAround.windowCounts)}`,
    `  races           ${s.eexist} EEXIST, ${s.eagain} EAGAIN, ${s.deferrals} deferred (max ${s.maxDeferralUs.toFixed(0)} µs)`,
  ];
  if (s.removeEvents > 0)
    lines.push(
      `  balloon         ${s.removeEvents} REMOVE events, ${mib(s.bytesRemoved)} removed, ${s.zeroPagesForRemoved} zero pages served for removed ranges`,
    );
  return lines.join('\n');
}
