// The TypeScript side's ABI constants against the values the addon compiled from the kernel headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as C from '../../src/kernel/constants.js';
import { native } from '../../src/kernel/native.js';
import { decodeUffdMsg } from '../../src/kernel/msg.js';

test('constants match <linux/userfaultfd.h> as compiled into the addon', () => {
  const k = native.constants;
  const pairs: Array<[string, number, number | undefined]> = [
    ['UFFD_API', C.UFFD_API, k.UFFD_API],
    ['UFFD_MSG_SIZE', C.UFFD_MSG_SIZE, k.UFFD_MSG_SIZE],
    ['UFFD_EVENT_PAGEFAULT', C.UFFD_EVENT_PAGEFAULT, k.UFFD_EVENT_PAGEFAULT],
    ['UFFD_EVENT_FORK', C.UFFD_EVENT_FORK, k.UFFD_EVENT_FORK],
    ['UFFD_EVENT_REMAP', C.UFFD_EVENT_REMAP, k.UFFD_EVENT_REMAP],
    ['UFFD_EVENT_REMOVE', C.UFFD_EVENT_REMOVE, k.UFFD_EVENT_REMOVE],
    ['UFFD_EVENT_UNMAP', C.UFFD_EVENT_UNMAP, k.UFFD_EVENT_UNMAP],
    ['UFFD_PAGEFAULT_FLAG_WRITE', C.UFFD_PAGEFAULT_FLAG_WRITE, k.UFFD_PAGEFAULT_FLAG_WRITE],
    ['UFFD_PAGEFAULT_FLAG_WP', C.UFFD_PAGEFAULT_FLAG_WP, k.UFFD_PAGEFAULT_FLAG_WP],
    ['UFFD_PAGEFAULT_FLAG_MINOR', C.UFFD_PAGEFAULT_FLAG_MINOR, k.UFFD_PAGEFAULT_FLAG_MINOR],
    ['UFFD_FEATURE_EVENT_REMOVE', C.UFFD_FEATURE_EVENT_REMOVE, k.UFFD_FEATURE_EVENT_REMOVE],
    ['UFFD_FEATURE_MISSING_HUGETLBFS', C.UFFD_FEATURE_MISSING_HUGETLBFS, k.UFFD_FEATURE_MISSING_HUGETLBFS],
    ['UFFD_USER_MODE_ONLY', C.UFFD_USER_MODE_ONLY, k.UFFD_USER_MODE_ONLY],
    ['UFFDIO_REGISTER_MODE_MISSING', C.UFFDIO_REGISTER_MODE_MISSING, k.UFFDIO_REGISTER_MODE_MISSING],
    ['msg.event', C.MSG_OFFSET.event, k.UFFD_MSG_OFFSET_EVENT],
    ['msg.pagefault.flags', C.MSG_OFFSET.pagefaultFlags, k.UFFD_MSG_OFFSET_PAGEFAULT_FLAGS],
    ['msg.pagefault.address', C.MSG_OFFSET.pagefaultAddress, k.UFFD_MSG_OFFSET_PAGEFAULT_ADDRESS],
    ['msg.remove.start', C.MSG_OFFSET.removeStart, k.UFFD_MSG_OFFSET_REMOVE_START],
    ['msg.remove.end', C.MSG_OFFSET.removeEnd, k.UFFD_MSG_OFFSET_REMOVE_END],
    ['O_CLOEXEC', C.O_CLOEXEC, k.O_CLOEXEC],
    ['O_NONBLOCK', C.O_NONBLOCK, k.O_NONBLOCK],
    ['MSG_TRUNC', C.MSG_TRUNC, k.MSG_TRUNC],
    ['MSG_CTRUNC', C.MSG_CTRUNC, k.MSG_CTRUNC],
    ['POLLIN', C.POLLIN, k.POLLIN],
    ['POLLHUP', C.POLLHUP, k.POLLHUP],
    ['POLLERR', C.POLLERR, k.POLLERR],
    ['EPOLLIN', C.EPOLLIN, k.EPOLLIN],
    ['EPOLLERR', C.EPOLLERR, k.EPOLLERR],
    ['EPOLLHUP', C.EPOLLHUP, k.EPOLLHUP],
    ['SEEK_DATA', C.SEEK_DATA, k.SEEK_DATA],
    ['SEEK_HOLE', C.SEEK_HOLE, k.SEEK_HOLE],
    ['POSIX_FADV_WILLNEED', C.POSIX_FADV_WILLNEED, k.POSIX_FADV_WILLNEED],
    ['MADV_DONTNEED', C.MADV_DONTNEED, k.MADV_DONTNEED],
    ['SIGKILL', C.SIGKILL, k.SIGKILL],
  ];
  for (const [name, ts, kernel] of pairs) assert.equal(ts, kernel, `${name}: TypeScript ${ts}, kernel headers ${kernel}`);
});

test('native functions reject wrong arguments with a usage TypeError, not a crash', () => {
  assert.throws(() => (native.copy as unknown as (...a: unknown[]) => number)(1, 2, 'not a buffer', 0, 4096, false), {
    name: 'TypeError',
    code: 'FC_UFFD_USAGE',
  });
  assert.throws(() => native.copy(-1, 0, Buffer.alloc(16), 8, 16, false), /must lie inside src/);
  assert.throws(() => (native.poll as unknown as (...a: unknown[]) => number)(1), { code: 'FC_UFFD_USAGE' });
  assert.throws(() => native.copyBytes(new Uint8Array(8), 5, new Uint8Array(4)), /must lie inside dst/);
  assert.throws(() => native.copyBytes(new Uint8Array(8), -1, new Uint8Array(1)), /must lie inside dst/);
  assert.throws(() => (native.copyBytes as unknown as (...a: unknown[]) => number)(new Uint8Array(8), 0, 'abc'), {
    code: 'FC_UFFD_USAGE',
  });
});

test('copyBytes copies into shared memory at any offset and touches nothing else', () => {
  const dst = new Uint8Array(new SharedArrayBuffer(64)).fill(0xee);
  const src = new Uint8Array(40).map((_, i) => i + 1);
  for (const [dstOffset, from] of [
    [3, 1],
    [8, 5],
    [1, 0],
  ] as const) {
    dst.fill(0xee);
    const piece = src.subarray(from, from + 21);
    assert.equal(native.copyBytes(dst, dstOffset, piece), 21);
    assert.deepEqual(dst.subarray(dstOffset, dstOffset + 21), piece);
    assert.ok(dst.subarray(0, dstOffset).every((b) => b === 0xee));
    assert.ok(dst.subarray(dstOffset + 21).every((b) => b === 0xee));
  }
  assert.equal(native.copyBytes(dst, 64, new Uint8Array(0)), 0);
});

test('decodeUffdMsg decodes every event kind and keeps 47-bit addresses exact', () => {
  const buf = Buffer.alloc(32 * 4);
  const view = new DataView(buf.buffer);
  const addr = 0x7fff_dead_b000;
  buf.writeUInt8(C.UFFD_EVENT_PAGEFAULT, 0);
  buf.writeUInt32LE(C.UFFD_PAGEFAULT_FLAG_WRITE, 8);
  buf.writeBigUInt64LE(BigInt(addr), 16);
  buf.writeUInt8(C.UFFD_EVENT_REMOVE, 32);
  buf.writeBigUInt64LE(0x1000n, 40);
  buf.writeBigUInt64LE(0x5000n, 48);
  buf.writeUInt8(C.UFFD_EVENT_UNMAP, 64);
  buf.writeUInt8(0x7e, 96);
  assert.deepEqual(decodeUffdMsg(view, 0), { type: 'pagefault', address: addr, write: true, wp: false, minor: false });
  assert.deepEqual(decodeUffdMsg(view, 1), { type: 'remove', start: 0x1000, end: 0x5000 });
  assert.equal(decodeUffdMsg(view, 2).type, 'unmap');
  assert.deepEqual(decodeUffdMsg(view, 3), { type: 'unknown', code: 0x7e });
  buf.writeBigUInt64LE(1n << 60n, 16);
  assert.throws(() => decodeUffdMsg(view, 0), RangeError);
});

test('the product addon offers no test-only function (reading arbitrary memory, mapping, registering, sending fds)', () => {
  for (const name of ['readMemory', 'mapAnonymous', 'unmap', 'madvise', 'uffdCreate', 'uffdApi', 'register', 'sendWithFds']) {
    assert.equal(name in native, false, `native.${name} must live in the test-only addon`);
  }
});
