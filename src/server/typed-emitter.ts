import { EventEmitter } from 'node:events';

/** Event name → the listener's arguments. */
export type EventArgs<E> = { [K in keyof E]: unknown[] };

/**
 * An EventEmitter whose event names and listener arguments are checked by the compiler: a
 * misspelled event or a listener of the wrong type does not compile. It is a real EventEmitter at
 * run time, so `events.once(server, 'vm-handshake')` and `on()` iterators work.
 */
type Retyped =
  | 'on'
  | 'once'
  | 'off'
  | 'addListener'
  | 'prependListener'
  | 'prependOnceListener'
  | 'removeListener'
  | 'removeAllListeners'
  | 'listenerCount'
  | 'emit';

export interface TypedEmitter<E extends EventArgs<E>> extends Omit<EventEmitter, Retyped> {
  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  addListener<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  prependListener<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  prependOnceListener<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  removeListener<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  removeAllListeners(event?: keyof E & string): this;
  listenerCount(event: keyof E & string): number;
  /** Internal: the library emits; a user who emits fakes events for every listener. */
  emit<K extends keyof E & string>(event: K, ...args: E[K]): boolean;
}

/** The EventEmitter constructor, typed as a TypedEmitter of `E`: `class X extends TypedEventEmitter<XEvents>`. */
export const TypedEventEmitter = EventEmitter as unknown as new <E extends EventArgs<E>>() => TypedEmitter<E>;
