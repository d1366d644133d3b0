import { LoopThreadPool } from './loop-pool.js';
import type { LoopThreadMessage, VmInit } from './protocol.js';
import type { MessagePort } from 'node:worker_threads';

/** What a server receives from the fault-loop threads serving its VMs. */
export interface LoopHandlers {
  onMessage(m: LoopThreadMessage): void;
  /** A thread died without reporting these VMs' end (ids as the server named them). */
  onThreadDied(vmIds: string[], error: Error | undefined): void;
}

/** The part of a fault-loop pool a server uses: its own pool, or its lease on a shared one. */
export interface VmLoops {
  start(init: VmInit, transfer: MessagePort[]): void;
  ended(vmId: string): void;
  /** Ends one VM ('stopped'); its 'end' message follows. */
  stop(vmId: string): void;
  readonly threadsAlive: number;
  readonly threadsConfigured: number;
  readonly threadNice: number | undefined;
  /** Resolves when every thread has booted (LoopThreadPool.whenReady). */
  whenReady(): Promise<void>;
  /** Ends this user's VMs ('stopped'); a shared pool's threads keep running for the others. */
  shutdown(): Promise<void>;
}

/**
 * One LoopThreadPool shared by many servers (a daemon's restores): each server leases it under a
 * prefix, so VM ids (`vm-1` in every server) never collide on the threads, and every thread
 * message goes back to the server that started the VM, with the server's own id.
 */
export class SharedLoopPool {
  readonly pool: LoopThreadPool;
  private readonly owners = new Map<string, { handlers: LoopHandlers; localId: string }>();
  private nextLease = 1;

  constructor(threads: number) {
    this.pool = new LoopThreadPool(
      threads,
      (m) => {
        const o = this.owners.get(m.vmId);
        if (o) o.handlers.onMessage({ ...m, vmId: o.localId });
      },
      (vmIds, err) => {
        const byOwner = new Map<LoopHandlers, string[]>();
        for (const id of vmIds) {
          const o = this.owners.get(id);
          if (!o) continue;
          this.owners.delete(id);
          byOwner.set(o.handlers, [...(byOwner.get(o.handlers) ?? []), o.localId]);
        }
        for (const [h, ids] of byOwner) h.onThreadDied(ids, err);
      },
    );
  }

  /** VMs being served across every lease. */
  get liveVms(): number {
    return this.owners.size;
  }

  lease(handlers: LoopHandlers): VmLoops {
    const prefix = `l${this.nextLease++}/`;
    const mine = new Set<string>();
    const pool = this.pool;
    return {
      start: (init, transfer) => {
        const id = prefix + init.vmId;
        this.owners.set(id, { handlers, localId: init.vmId });
        mine.add(id);
        this.pool.start({ ...init, vmId: id }, transfer);
      },
      stop: (vmId) => this.pool.stop(prefix + vmId),
      get threadsAlive() {
        return pool.threadsAlive;
      },
      get threadsConfigured() {
        return pool.threadsConfigured;
      },
      get threadNice() {
        return pool.threadNice;
      },
      whenReady: () => pool.whenReady(),
      ended: (vmId) => {
        const id = prefix + vmId;
        this.pool.ended(id);
        this.owners.delete(id);
        mine.delete(id);
      },
      shutdown: () => {
        // Each VM's 'end' comes back through onMessage; the server waits for those itself.
        for (const id of mine) this.pool.stop(id);
        return Promise.resolve();
      },
    };
  }

  /** Stops every thread (after the servers stopped their VMs). */
  shutdown(): Promise<void> {
    return this.pool.shutdown();
  }
}
