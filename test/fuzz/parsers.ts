// Property checks of every parser of outside input: whatever the bytes, a parser returns or throws
// an FcUffdError (a stable code), never another exception, and never hangs. Shared by the quick run
// in `npm test` (test/unit/fuzz.test.ts) and the long one (bench/fuzz.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { FcUffdError } from '../../src/errors.js';
import { parseHandshake } from '../../src/firecracker/handshake.js';
import { HandshakeReceiver } from '../../src/firecracker/receive.js';
import { native } from '../../src/kernel/native.js';
import { testNative } from '../../tools/test-native.js';
import { O_CLOEXEC, O_NONBLOCK } from '../../src/kernel/constants.js';
import { check } from '../../src/kernel/errors.js';
import { parseManifest } from '../../src/snapshot/manifest.js';
import { parseRanges } from '../../src/snapshot/pack.js';
import { decodeWorkingSet } from '../../src/serve/working-set.js';

/** Runs `parse`; anything thrown that is not an FcUffdError fails the property. */
function typedOnly(parse: () => unknown): void {
  try {
    parse();
  } catch (err) {
    if (!(err instanceof FcUffdError)) throw new Error(`untyped error: ${(err as Error).stack ?? String(err)}`, { cause: err });
  }
}

const int = fc.oneof(fc.integer(), fc.maxSafeNat(), fc.constantFrom(0, 4096, 2097152, 2 ** 47, 2 ** 53, -1, 1.5, Number.NaN));
const region = fc.record(
  {
    base_host_virt_addr: fc.oneof(int, fc.string(), fc.constant(null)),
    size: fc.oneof(int, fc.string()),
    offset: fc.oneof(int, fc.boolean()),
    page_size: fc.oneof(int, fc.constant(undefined)),
    page_size_kib: fc.oneof(int, fc.constant(undefined)),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);
/** Near-valid handshakes (the interesting ones), raw JSON, and raw text. */
const handshakeText = fc.oneof(
  fc.array(region, { maxLength: 6 }).map((r) => JSON.stringify(r)),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 300 }),
);

export function handshakeJsonProperty(): fc.IPropertyWithHooks<[string, number]> {
  return fc.property(handshakeText, fc.oneof(fc.maxSafeNat(), fc.constantFrom(0, 4096, 1 << 30)), (text, sizeBytes) =>
    typedOnly(() => parseHandshake(text, sizeBytes)),
  );
}

export function manifestProperty(): fc.IPropertyWithHooks<[string]> {
  const chunk = fc.oneof(
    fc.constant(null),
    fc.record(
      {
        digest: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), fc.string()),
        storedBytes: int,
        zeroPages: fc.oneof(fc.base64String(), fc.string()),
      },
      { requiredKeys: [] },
    ),
  );
  const manifest = fc.record(
    {
      format: fc.constantFrom('fc-uffd-chunked-snapshot', 'other'),
      version: fc.oneof(fc.constant(1), int),
      memorySizeBytes: int,
      chunkSizeBytes: fc.oneof(fc.constant(2097152), int),
      pageSizeBytes: fc.oneof(fc.constant(4096), int),
      digestAlgorithm: fc.constantFrom('sha256', 'md5'),
      compression: fc.oneof(fc.record({ algorithm: fc.constantFrom('zstd', 'gzip'), level: int }), fc.jsonValue()),
      base: fc.oneof(fc.constant(null), fc.string()),
      chunks: fc.array(chunk, { maxLength: 8 }),
    },
    { requiredKeys: [] },
  );
  return fc.property(
    fc.oneof(
      manifest.map((m) => JSON.stringify(m)),
      fc.string({ maxLength: 300 }),
    ),
    (text) => typedOnly(() => parseManifest(Buffer.from(text))),
  );
}

export function workingSetProperty(): fc.IPropertyWithHooks<[string]> {
  const ws = fc.record(
    {
      format: fc.constantFrom('fc-uffd-working-set', 'x'),
      version: fc.oneof(fc.constant(1), int),
      snapshot: fc.oneof(fc.string(), int),
      runs: int,
      count: int,
      pageSizeBytes: int,
      pages: fc.oneof(fc.base64String(), fc.string()),
      timesMs: fc.oneof(fc.base64String(), fc.string()),
    },
    { requiredKeys: [] },
  );
  return fc.property(
    fc.oneof(
      ws.map((w) => JSON.stringify(w)),
      fc.string({ maxLength: 300 }),
    ),
    (text) => typedOnly(() => decodeWorkingSet(text)),
  );
}

export function removedRangesProperty(): fc.IPropertyWithHooks<[string]> {
  const line = fc.oneof(
    fc.tuple(int, int).map(([a, b]) => `${a} ${b}`),
    fc.string({ maxLength: 40 }),
    fc.constant('# comment'),
  );
  const text = fc.oneof(
    fc.array(line, { maxLength: 10 }).map((l) => l.join('\n')),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.array(fc.tuple(fc.jsonValue(), fc.jsonValue()), { maxLength: 5 }).map((v) => JSON.stringify(v)),
  );
  return fc.property(text, (t) => typedOnly(() => parseRanges(t, 'fuzz')));
}

/**
 * The handshake as received: payload split into several sends, with zero, one or two fds of which
 * a kind (userfaultfd or not) on any send, and the peer closing or not. The receiver must end in a
 * handshake or a typed error (never hang: an incomplete one ends at expire()), and leak no fd.
 */
export function handshakeReceiveProperty(): {
  property: fc.IPropertyWithHooks<[string, number[], Array<Array<'uffd' | 'file'>>, boolean]>;
  close(): void;
} {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-uffd-fuzz-'));
  const socket = path.join(dir, 'sock');
  const listenFd = check('listen', native.listenUnix(socket, 0o600, 8));
  const property = fc.property(
    handshakeText,
    fc.array(fc.nat(400), { maxLength: 3 }),
    fc.array(fc.array(fc.constantFrom<'uffd' | 'file'>('uffd', 'file'), { maxLength: 2 }), { maxLength: 4 }),
    fc.boolean(),
    (text, cuts, fdKinds, closeAfter) => {
      // Counted per case: other work in the process (a property run before this one) may open fds of its own.
      const fdsBefore = fs.readdirSync('/proc/self/fd').length;
      const client = check('connect', native.connectUnix(socket));
      let server = -1;
      for (let i = 0; i < 1000 && server < 0; i++) server = native.accept(listenFd);
      check('accept', server);
      const bytes = Buffer.from(text);
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const pieces: Buffer[] = [];
      let from = 0;
      for (const p of [...points, bytes.length]) {
        pieces.push(bytes.subarray(from, p));
        from = p;
      }
      const sent: number[] = [];
      pieces.forEach((piece, i) => {
        const fds = (fdKinds[i] ?? []).map((k) =>
          k === 'uffd' ? check('userfaultfd', testNative.uffdCreate(O_CLOEXEC | O_NONBLOCK, true)) : fs.openSync('/proc/self/exe', 'r'),
        );
        sent.push(...fds);
        // An empty send without fds is nothing on a stream: skip it.
        if (piece.length > 0 || fds.length > 0)
          testNative.sendWithFds(client, piece.length > 0 ? piece : Buffer.from(' '), Int32Array.from(fds));
      });
      for (const fd of sent) native.close(fd);
      if (closeAfter) native.close(client);
      const receiver = new HandshakeReceiver(server);
      try {
        typedOnly(() => {
          const got = receiver.onReadable() ?? receiver.expire(1);
          native.close(got.uffdFd);
        });
      } finally {
        receiver.abandon();
        native.close(server);
        if (!closeAfter) native.close(client);
      }
      const fdsNow = fs.readdirSync('/proc/self/fd').length;
      if (fdsNow !== fdsBefore) throw new Error(`fd leak: ${fdsBefore} open before, ${fdsNow} after`);
    },
  );
  return {
    property,
    close() {
      native.close(listenFd);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
