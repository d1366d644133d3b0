// A process that connects to a handler's socket the way something other than a VMM might, then
// lives on for a while: the handler must not SIGKILL it unless it really handed over a userfaultfd.
//   node probe-peer.js SOCKET close     connect, close without sending (health check)
//   node probe-peer.js SOCKET pipe      send valid-looking JSON with a pipe fd instead of a uffd
//   node probe-peer.js SOCKET bad-uffd  send a real userfaultfd with JSON that is not a handshake
// Exits 0 after LINGER_MS; a SIGKILL from the handler shows as signal SIGKILL.
import fs from 'node:fs';
import { native } from '../../src/kernel/native.js';
import { testNative } from '../../tools/test-native.js';
import { O_CLOEXEC, O_NONBLOCK } from '../../src/kernel/constants.js';
import { check } from '../../src/kernel/errors.js';

const LINGER_MS = 1500;
const [socket, mode = ''] = process.argv.slice(2);
// `node --test dist/test/` loads every file under test/, helpers included: without arguments this is that load.
if (socket !== undefined) probe(socket, mode);

function probe(socket: string, mode: string): void {
  const conn = check('connect', native.connectUnix(socket));
  if (mode === 'pipe') {
    const fd = fs.openSync('/proc/self/exe', 'r');
    check(
      'sendmsg',
      testNative.sendWithFds(
        conn,
        Buffer.from('[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096,"page_size_kib":4096}]'),
        Int32Array.of(fd),
      ),
    );
  } else if (mode === 'bad-uffd') {
    const uffd = check('userfaultfd', testNative.uffdCreate(O_CLOEXEC | O_NONBLOCK, true));
    check('sendmsg', testNative.sendWithFds(conn, Buffer.from('{"not":"a handshake"}'), Int32Array.of(uffd)));
  }
  native.close(conn);
  setTimeout(() => process.exit(0), LINGER_MS);
}
