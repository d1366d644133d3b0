import fs from 'node:fs';
import { linkWithoutClobber } from '../atomic-write.js';
import type { Logger } from 'pino';
import { encodeHeader, RECORD_BYTES, type TraceBlock, type TraceHeader } from './format.js';

/** The header fields every VM of a server shares. */
export type TraceServerInfo = Pick<TraceHeader, 'snapshot' | 'snapshotSizeBytes' | 'faultAroundBytes' | 'prefetchPages'>;
/** The header fields of one VM, known once its handshake was accepted. */
export type TraceVmInfo = Pick<TraceHeader, 'vmId' | 'pid' | 'pageSizeBytes' | 'regions'>;

interface OpenTrace {
  fd: number;
  file: string;
  records: number;
}

/**
 * The main thread's side of `serve --trace`: one file per VM, written as blocks arrive from its
 * fault-loop thread (a 256 KiB append every few thousand faults) to `<file>.partial`, renamed to
 * `<file>` when the VM ends, so a file under the final name is always complete. A write error is
 * logged once and stops that VM's trace, never the VM.
 */
export class TraceFiles {
  private readonly open = new Map<string, OpenTrace | null>();

  constructor(
    private readonly server: TraceServerInfo,
    private readonly logger: Logger,
  ) {}

  block(file: string, info: TraceVmInfo, block: TraceBlock): void {
    let t = this.open.get(info.vmId);
    if (t === null) return;
    try {
      if (t === undefined) {
        const fd = fs.openSync(`${file}.partial`, 'w', 0o600);
        t = { fd, file, records: 0 };
        this.open.set(info.vmId, t);
        fs.writeSync(fd, encodeHeader({ ...this.server, ...info, startEpochMs: block.startEpochMs }));
      }
      fs.writeSync(t.fd, new Uint8Array(block.records, 0, block.count * RECORD_BYTES));
      t.records += block.count;
    } catch (err) {
      this.logger.error({ vm: info.vmId, file, err: (err as Error).message }, 'cannot write the trace; this VM is no longer traced');
      if (t) fs.closeSync(t.fd);
      this.open.set(info.vmId, null);
    }
  }

  /** The VM ended (its last block came before): close and publish its trace. */
  end(vmId: string): void {
    const t = this.open.get(vmId);
    this.open.delete(vmId);
    if (!t) return;
    try {
      fs.closeSync(t.fd);
      // Like the other per-VM files, a trace never replaces an existing file (a path without {vm}).
      const file = linkWithoutClobber(`${t.file}.partial`, t.file, vmId);
      this.logger.info({ vm: vmId, file, records: t.records }, 'wrote trace');
    } catch (err) {
      this.logger.error({ vm: vmId, file: t.file, err: (err as Error).message }, 'cannot finish the trace');
    }
  }
}
