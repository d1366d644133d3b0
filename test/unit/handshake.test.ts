import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHandshake } from '../../src/firecracker/handshake.js';
import { isIncompleteJson } from '../../src/firecracker/receive.js';

const MiB = 1024 * 1024;
const base = 0x7f00_0000_0000;

test('each Firecracker generation is recognised, with the page size from the right field', () => {
  const v16 = parseHandshake(JSON.stringify([{ base_host_virt_addr: base, size: 64 * MiB, offset: 0 }]), 64 * MiB);
  assert.equal(v16.generation, 'v1.1-v1.6');
  assert.equal(v16.memory.pageSizeBytes, 4096);
  const v111 = parseHandshake(JSON.stringify([{ base_host_virt_addr: base, size: 64 * MiB, offset: 0, page_size_kib: 2 * MiB }]), 64 * MiB);
  assert.equal(v111.generation, 'v1.7-v1.11');
  assert.equal(v111.memory.pageSizeBytes, 2 * MiB, 'page_size_kib holds bytes');
  const v114 = parseHandshake(
    JSON.stringify([
      { base_host_virt_addr: base, size: 48 * MiB, offset: 0, page_size: 4096, page_size_kib: 4096 },
      { base_host_virt_addr: base + 1024 * MiB, size: 16 * MiB, offset: 48 * MiB, page_size: 4096, page_size_kib: 4096 },
    ]),
    64 * MiB,
  );
  assert.equal(v114.generation, 'v1.12+');
  assert.equal(v114.memory.regions.length, 2);
  assert.equal(v114.memory.fileOffsetOf(base + 1024 * MiB + 4096), 48 * MiB + 4096);
  assert.equal(v114.memory.fileOffsetOf(base + 48 * MiB), -1, 'the gap between regions belongs to no region');
  assert.equal(v114.memory.regionIndexOfFileOffset(48 * MiB), 1);
  assert.equal(v114.memory.regionIndexOfFileOffset(64 * MiB), -1);
  assert.deepEqual(v114.warnings, []);
});

test('unknown fields are served with a warning (forward compatibility)', () => {
  const h = parseHandshake(JSON.stringify([{ base_host_virt_addr: base, size: 4096, offset: 0, page_size: 4096, future: true }]), 4096);
  assert.match(h.warnings.join(), /ignoring unknown field\(s\) future/);
});

const bad: Array<[string, unknown, string, RegExp]> = [
  ['not JSON', 'hello', 'HANDSHAKE_JSON', /not JSON/],
  ['an object, not an array', { regions: [] }, 'HANDSHAKE_SHAPE', /JSON array/],
  ['empty array', [], 'HANDSHAKE_SHAPE', /empty array/],
  ['a region that is not an object', [42], 'HANDSHAKE_SHAPE', /not an object/],
  ['missing size', [{ base_host_virt_addr: base, offset: 0 }], 'HANDSHAKE_SHAPE', /"size"/],
  ['negative offset', [{ base_host_virt_addr: base, size: 4096, offset: -4096 }], 'HANDSHAKE_SHAPE', /"offset"/],
  ['string address', [{ base_host_virt_addr: String(base), size: 4096, offset: 0 }], 'HANDSHAKE_SHAPE', /base_host_virt_addr/],
  ['page size 12345', [{ base_host_virt_addr: base, size: 4096, offset: 0, page_size: 12345 }], 'HANDSHAKE_PAGE_SIZE', /12345/],
  ['page_size_kib in KiB', [{ base_host_virt_addr: base, size: 4096, offset: 0, page_size_kib: 4 }], 'HANDSHAKE_PAGE_SIZE', /holds bytes/],
  [
    'disagreeing page fields',
    [{ base_host_virt_addr: base, size: 4096, offset: 0, page_size: 4096, page_size_kib: 2 * MiB }],
    'HANDSHAKE_PAGE_SIZE',
    /disagree/,
  ],
  [
    'mixed page sizes',
    [
      { base_host_virt_addr: base, size: 2 * MiB, offset: 0, page_size: 2 * MiB },
      { base_host_virt_addr: base + 4 * MiB, size: 4096, offset: 2 * MiB, page_size: 4096 },
    ],
    'HANDSHAKE_PAGE_SIZE',
    /disagree/,
  ],
  ['unaligned address', [{ base_host_virt_addr: base + 100, size: 4096, offset: 0 }], 'HANDSHAKE_ALIGNMENT', /base_host_virt_addr/],
  ['unaligned huge region', [{ base_host_virt_addr: base, size: 4096, offset: 0, page_size: 2 * MiB }], 'HANDSHAKE_ALIGNMENT', /size/],
  ['zero size', [{ base_host_virt_addr: base, size: 0, offset: 0 }], 'HANDSHAKE_SHAPE', /size 0/],
  [
    'overlapping host ranges',
    [
      { base_host_virt_addr: base, size: 8192, offset: 0 },
      { base_host_virt_addr: base + 4096, size: 4096, offset: 8192 },
    ],
    'HANDSHAKE_OVERLAP',
    /host ranges/,
  ],
  [
    'overlapping file ranges',
    [
      { base_host_virt_addr: base, size: 8192, offset: 0 },
      { base_host_virt_addr: base + MiB, size: 4096, offset: 4096 },
    ],
    'HANDSHAKE_OVERLAP',
    /snapshot ranges/,
  ],
  [
    'region beyond the memory file',
    [{ base_host_virt_addr: base, size: 128 * MiB, offset: 0 }],
    'HANDSHAKE_BEYOND_SNAPSHOT',
    /beyond the snapshot/,
  ],
  ['address beyond user space', [{ base_host_virt_addr: 2 ** 47, size: 4096, offset: 0 }], 'HANDSHAKE_SHAPE', /user space/],
];

for (const [name, payload, code, message] of bad) {
  test(`rejects ${name} with ${code}`, () => {
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
    assert.throws(
      () => parseHandshake(text, 64 * MiB),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, code);
        assert.match(err.message, message);
        return true;
      },
    );
  });
}

test('a JSON prefix is incomplete; malformed text is not', () => {
  assert.equal(isIncompleteJson('[{"base_host_virt_addr":1'), true);
  assert.equal(isIncompleteJson('[{"a":"x]'), true, 'inside a string');
  assert.equal(isIncompleteJson('[{"a":1}]'), false);
  assert.equal(isIncompleteJson('hello'), false);
  assert.equal(isIncompleteJson(''), true);
});
