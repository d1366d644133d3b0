// The seam between "what snapshot this process serves" (main thread, shared by every VM) and "where
// a VM's fault loop reads its bytes" (the VM's fault-loop thread). It sits below every snapshot kind:
// each kind (src/snapshot/) implements ServedSnapshot on the main thread and registers the factory of
// its PageSource here; the server and the fault-loop threads only see these interfaces.
import type { MessagePort } from 'node:worker_threads';
import { FcUffdError } from '../errors.js';
import type { PageSource } from './source.js';

/** Structured-clonable description of a snapshot, sent to a fault-loop thread with a VM's init. */
export interface SnapshotRef {
  /** Selects the PageSource factory registered under this name. */
  readonly kind: string;
  readonly sizeBytes: number;
}

/** A VM's private line to the main thread's snapshot service (fetch requests, arrivals). */
export interface VmChannel {
  /** Messages both ways; the fault-loop thread drains its end synchronously (receiveMessageOnPort). */
  port: MessagePort;
  /** eventfd the main thread signals after posting to the fault-loop thread, waking its blocked loop. */
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
  /** What a new VM's fault-loop thread needs; `channel` is the main thread's end of that VM's channel. */
  attachVm(channel: VmChannel): SnapshotRef;
  detachVm(channel: VmChannel): void;
  close(): void;
}

/** What a source that fetches tells a VM's restore timeline (serve --trace; src/trace/recorder.ts). */
export interface FetchTrace {
  /** A fault or a prefetch is waiting for this chunk. */
  fetchWant(chunk: number): void;
  /** The chunk arrived: its size and where it came from (FETCH_* of src/trace/format.ts). */
  fetchDone(chunk: number, sizeBytes: number, from: number): void;
}

/** Opens, on a fault-loop thread, the PageSource of one VM from the ref its ServedSnapshot made. */
export type PageSourceFactory<R extends SnapshotRef = SnapshotRef> = (ref: R, channel: VmChannel, trace?: FetchTrace) => PageSource;

const factories = new Map<string, PageSourceFactory>();

/** Called once per snapshot kind, when its module loads (src/snapshot/kinds.ts loads them all). */
export function registerSnapshotKind<R extends SnapshotRef>(kind: R['kind'], factory: PageSourceFactory<R>): void {
  if (factories.has(kind)) throw new FcUffdError('INTERNAL', `snapshot kind '${kind}' registered twice`);
  factories.set(kind, factory as PageSourceFactory);
}

/** The PageSource a VM's fault loop reads from. */
export function openPageSource(ref: SnapshotRef, channel: VmChannel, trace?: FetchTrace): PageSource {
  const factory = factories.get(ref.kind);
  if (!factory)
    throw new FcUffdError(
      'INTERNAL',
      `no snapshot kind '${ref.kind}' is loaded in this thread (known: ${[...factories.keys()].join(', ') || 'none'})`,
    );
  return factory(ref, channel, trace);
}
