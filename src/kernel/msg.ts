import {
  MSG_OFFSET,
  UFFD_EVENT_FORK,
  UFFD_EVENT_PAGEFAULT,
  UFFD_EVENT_REMAP,
  UFFD_EVENT_REMOVE,
  UFFD_EVENT_UNMAP,
  UFFD_MSG_SIZE,
  UFFD_PAGEFAULT_FLAG_MINOR,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_PAGEFAULT_FLAG_WRITE,
} from './constants.js';

/** One struct uffd_msg, decoded. Addresses are host virtual addresses (< 2^47 on x86_64). */
export type UffdEvent =
  | { type: 'pagefault'; address: number; write: boolean; wp: boolean; minor: boolean }
  | { type: 'remove'; start: number; end: number }
  | { type: 'unmap'; start: number; end: number }
  | { type: 'remap'; from: number; to: number; len: number }
  | { type: 'fork'; childUffd: number }
  | { type: 'unknown'; code: number };

/** Reads a u64 that must fit a JS number exactly; anything larger is a corrupt record. */
function u64(view: DataView, offset: number): number {
  const lo = view.getUint32(offset, true);
  const hi = view.getUint32(offset + 4, true);
  if (hi >= 0x200000)
    throw new RangeError(`uffd_msg field at +${offset} exceeds 2^53: 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`);
  return hi * 0x1_0000_0000 + lo;
}

/** Decodes record `index` of a buffer of whole uffd_msg records. The only decoder of the ABI. */
export function decodeUffdMsg(view: DataView, index: number): UffdEvent {
  const base = index * UFFD_MSG_SIZE;
  const code = view.getUint8(base + MSG_OFFSET.event);
  switch (code) {
    case UFFD_EVENT_PAGEFAULT: {
      const flags = view.getUint32(base + MSG_OFFSET.pagefaultFlags, true);
      return {
        type: 'pagefault',
        address: u64(view, base + MSG_OFFSET.pagefaultAddress),
        write: (flags & UFFD_PAGEFAULT_FLAG_WRITE) !== 0,
        wp: (flags & UFFD_PAGEFAULT_FLAG_WP) !== 0,
        minor: (flags & UFFD_PAGEFAULT_FLAG_MINOR) !== 0,
      };
    }
    case UFFD_EVENT_REMOVE:
      return { type: 'remove', start: u64(view, base + MSG_OFFSET.removeStart), end: u64(view, base + MSG_OFFSET.removeEnd) };
    case UFFD_EVENT_UNMAP:
      return { type: 'unmap', start: u64(view, base + 8), end: u64(view, base + 16) };
    case UFFD_EVENT_REMAP:
      return { type: 'remap', from: u64(view, base + 8), to: u64(view, base + 16), len: u64(view, base + 24) };
    case UFFD_EVENT_FORK:
      return { type: 'fork', childUffd: view.getUint32(base + 8, true) };
    default:
      return { type: 'unknown', code };
  }
}
