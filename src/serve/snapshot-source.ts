// The seam between "what snapshot this process serves" (main thread, shared by every VM) and
// "where a VM's fault loop reads its bytes" (the VM's worker). Each snapshot format implements
// both halves; the server and the worker only see these two interfaces.
import type { MessagePort } from 'node:worker_threads';
import type { PageSource } from '../memory/source.js';
import { MemoryFile, MemoryFileSource, type MemoryFileRef } from '../snapshot/memfile.js';
import { ChunkedSource, type ChunkedSnapshotRef } from '../snapshot/chunked-source.js';
import type { TraceRecorder } from '../trace/recorder.js';

/** Structured-clonable description of a snapshot, sent to a VM worker with its init. */
export type SnapshotRef = MemoryFileRef | ChunkedSnapshotRef;

/** A VM's private line to the main thread's snapshot service (fetch requests, arrivals). */
export interface VmChannel {
  /** Messages both ways; the worker drains its end synchronously (receiveMessageOnPort). */
  port: MessagePort;
  /** eventfd the main thread signals after posting to the worker, waking its blocked loop. */
  wakeFd: number;
}

/** Main-thread side: one per served snapshot, shared by every VM restored from it. */
export interface ServedSnapshot {
  readonly description: string;
  /** Names this snapshot's content: working sets recorded against it carry it, and are refused elsewhere. */
  readonly identity: string;
  readonly sizeBytes: number;
  /** Resolves once background preparation (such as the zero-page scan) is complete. */
  ready(): Promise<void>;
  /** What a new VM's worker needs; `channel` is the main thread's end of that VM's channel. */
  attachVm(channel: VmChannel): SnapshotRef;
  detachVm(channel: VmChannel): void;
  close(): void;
}

/** Worker side: opens the PageSource a VM's fault loop reads from. */
export function openPageSource(ref: SnapshotRef, channel: VmChannel, trace?: TraceRecorder): PageSource {
  switch (ref.kind) {
    case 'memfile':
      return new MemoryFileSource(ref);
    case 'chunked':
      return new ChunkedSource(ref, channel, trace);
  }
}

/** A raw Firecracker memory file as a ServedSnapshot. */
export class ServedMemoryFile implements ServedSnapshot {
  private constructor(private readonly file: MemoryFile) {}

  static open(path: string): ServedMemoryFile {
    return new ServedMemoryFile(MemoryFile.open(path));
  }

  get description(): string {
    return this.file.path;
  }

  get identity(): string {
    return this.file.identity;
  }

  get sizeBytes(): number {
    return this.file.sizeBytes;
  }

  ready(): Promise<void> {
    return this.file.scan();
  }

  attachVm(): SnapshotRef {
    return this.file.ref();
  }

  detachVm(): void {}

  close(): void {
    this.file.close();
  }
}
