import { PAGE_SIZE_2M, PAGE_SIZE_4K } from '../kernel/constants.js';
import { FcUffdError } from '../errors.js';
import { GuestMemory, type GuestRegion } from '../memory/regions.js';

/**
 * Which Firecracker generation a handshake's fields say it came from:
 * - `v1.1-v1.6`: base_host_virt_addr, size, offset (page size = the host's base page);
 * - `v1.7-v1.11`: adds page_size_kib, which despite its name holds BYTES (4096 or 2097152);
 * - `v1.12+`: page_size and the deprecated page_size_kib, both bytes, always equal.
 */
export type HandshakeGeneration = 'v1.1-v1.6' | 'v1.7-v1.11' | 'v1.12+';

export interface Handshake {
  readonly memory: GuestMemory;
  readonly generation: HandshakeGeneration;
  /** Things that did not stop the restore but an operator should see (unknown fields, ...). */
  readonly warnings: readonly string[];
}

const KNOWN_FIELDS = new Set(['base_host_virt_addr', 'size', 'offset', 'page_size', 'page_size_kib']);
/** x86_64 user space ends below 2^47; a larger host address is not from a real VMM. */
const USER_SPACE_END = 2 ** 47;
const SUPPORTED_PAGE_SIZES = [PAGE_SIZE_4K, PAGE_SIZE_2M];

function fail(code: ConstructorParameters<typeof FcUffdError>[0], message: string, details?: Record<string, unknown>): never {
  throw new FcUffdError(code, `invalid handshake: ${message}`, details);
}

function wholeNumber(region: Record<string, unknown>, field: string, index: number): number {
  const v = region[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    fail('HANDSHAKE_SHAPE', `region ${index}: "${field}" must be a non-negative integer below 2^53, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Parses and validates the JSON array Firecracker sends with the uffd, against the snapshot the
 * handler serves (`snapshotSizeBytes`). Throws FcUffdError with a HANDSHAKE_* code; never returns
 * regions that would make the handler read past the snapshot.
 */
export function parseHandshake(payload: string, snapshotSizeBytes: number): Handshake {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch (err) {
    const excerpt = payload.length > 120 ? `${payload.slice(0, 120)}…` : payload;
    fail('HANDSHAKE_JSON', `not JSON (${(err as Error).message}): ${JSON.stringify(excerpt)}`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0)
    fail('HANDSHAKE_SHAPE', `expected a non-empty JSON array of regions, got ${Array.isArray(parsed) ? 'an empty array' : typeof parsed}`);

  const warnings: string[] = [];
  const regions: GuestRegion[] = [];
  const pageSizes = new Set<number>();
  let generation: HandshakeGeneration = 'v1.1-v1.6';

  parsed.forEach((raw: unknown, index: number) => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      fail('HANDSHAKE_SHAPE', `region ${index} is not an object: ${JSON.stringify(raw)}`);
    const region = raw as Record<string, unknown>;
    const unknown = Object.keys(region).filter((k) => !KNOWN_FIELDS.has(k));
    // Forward compatibility: Firecracker has added fields before (page_size_kib, page_size) and
    // its own example handler ignores unknown ones. Serve, but make it visible.
    if (unknown.length > 0) warnings.push(`region ${index}: ignoring unknown field(s) ${unknown.join(', ')}`);

    const hostAddr = wholeNumber(region, 'base_host_virt_addr', index);
    const sizeBytes = wholeNumber(region, 'size', index);
    const fileOffset = wholeNumber(region, 'offset', index);
    let pageSize = PAGE_SIZE_4K;
    const hasPageSize = 'page_size' in region;
    const hasKib = 'page_size_kib' in region;
    if (hasPageSize) {
      generation = 'v1.12+';
      pageSize = wholeNumber(region, 'page_size', index);
      if (hasKib && wholeNumber(region, 'page_size_kib', index) !== pageSize)
        fail(
          'HANDSHAKE_PAGE_SIZE',
          `region ${index}: page_size ${pageSize} and page_size_kib ${String(region['page_size_kib'])} disagree (both hold bytes)`,
        );
    } else if (hasKib) {
      if (generation === 'v1.1-v1.6') generation = 'v1.7-v1.11';
      pageSize = wholeNumber(region, 'page_size_kib', index);
    }
    if (!SUPPORTED_PAGE_SIZES.includes(pageSize))
      fail(
        'HANDSHAKE_PAGE_SIZE',
        `region ${index}: page size ${pageSize} bytes is not one Firecracker uses (4096 or 2097152; page_size_kib holds bytes)`,
        { pageSize },
      );
    pageSizes.add(pageSize);

    if (sizeBytes === 0) fail('HANDSHAKE_SHAPE', `region ${index} has size 0`);
    for (const [name, value] of [
      ['base_host_virt_addr', hostAddr],
      ['size', sizeBytes],
      ['offset', fileOffset],
    ] as const)
      if (value % pageSize !== 0)
        fail('HANDSHAKE_ALIGNMENT', `region ${index}: ${name} ${value} is not a multiple of the page size ${pageSize}`);
    if (hostAddr + sizeBytes > USER_SPACE_END)
      fail('HANDSHAKE_SHAPE', `region ${index}: host range ends at 0x${(hostAddr + sizeBytes).toString(16)}, beyond x86_64 user space`);
    if (fileOffset + sizeBytes > snapshotSizeBytes)
      fail(
        'HANDSHAKE_BEYOND_SNAPSHOT',
        `region ${index}: snapshot range [${fileOffset}, ${fileOffset + sizeBytes}) lies beyond the snapshot's ${snapshotSizeBytes} bytes — is this the right snapshot?`,
        { fileOffset, sizeBytes, snapshotSizeBytes },
      );
    regions.push({ hostAddr, sizeBytes, fileOffset });
  });

  if (pageSizes.size > 1) fail('HANDSHAKE_PAGE_SIZE', `regions disagree on the page size: ${[...pageSizes].join(', ')}`);
  const pageSizeBytes = [...pageSizes][0]!;

  const byHost = [...regions].sort((a, b) => a.hostAddr - b.hostAddr);
  for (let i = 1; i < byHost.length; i++) {
    const prev = byHost[i - 1]!;
    if (byHost[i]!.hostAddr < prev.hostAddr + prev.sizeBytes)
      fail('HANDSHAKE_OVERLAP', `host ranges of two regions overlap at 0x${byHost[i]!.hostAddr.toString(16)}`);
  }
  const byFile = [...regions].sort((a, b) => a.fileOffset - b.fileOffset);
  for (let i = 1; i < byFile.length; i++) {
    const prev = byFile[i - 1]!;
    if (byFile[i]!.fileOffset < prev.fileOffset + prev.sizeBytes)
      fail('HANDSHAKE_OVERLAP', `snapshot ranges of two regions overlap at offset ${byFile[i]!.fileOffset}`);
  }
  const total = regions.reduce((s, r) => s + r.sizeBytes, 0);
  if (total < snapshotSizeBytes)
    warnings.push(`the regions cover ${total} of the snapshot's ${snapshotSizeBytes} bytes — is this the right snapshot?`);

  return { memory: new GuestMemory(regions, pageSizeBytes), generation, warnings };
}
