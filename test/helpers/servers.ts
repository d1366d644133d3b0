// Real storage servers for store tests: the ones .ci/run started (FC_UFFD_TEST_HTTP_URL,
// FC_UFFD_TEST_S3_ENDPOINT), or one started here per test file with the repo's own scripts and
// stopped by pid. Without either: a failure in CI (CI=true), a skip with the reason elsewhere.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './files.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SERVICES = path.join(REPO, 'tools/services');

export interface RunningServer {
  /** http://127.0.0.1:PORT */
  url: string;
  stop(): void;
}

/** Credentials of the test Ceph user (ceph-start.sh creates it). */
export const CEPH_TEST_KEYS = { accessKeyId: 'testkey', secretAccessKey: 'testsecret' };

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, bin)));
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Undefined means "skip, and here is why" (only outside CI). */
function unavailable(what: string, envVar: string, bins: string[]): string {
  const why = `${what} is not available: set ${envVar} or install ${bins.join(', ')} (bash tools/services/install.sh)`;
  if (process.env.CI === 'true') throw new Error(`${why}; CI must run the store tests against real servers`);
  return why;
}

function start(script: string, args: string[], env: NodeJS.ProcessEnv = {}): RunningServer {
  const dir = tempDir('fc-uffd-server-');
  const stop = (): void => {
    execFileSync('bash', [path.join(SERVICES, 'stop.sh'), path.join(dir, 'pids')], { stdio: 'inherit' });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const out = execFileSync('bash', [path.join(SERVICES, script), dir, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return { url: out.toString().trim().split('\n').pop()!, stop };
  } catch (err) {
    stop();
    throw err;
  }
}

/** An nginx WebDAV server, or the reason there is none. */
export async function httpServer(): Promise<RunningServer | string> {
  const env = process.env.FC_UFFD_TEST_HTTP_URL;
  if (env) return { url: env, stop: () => undefined };
  if (!onPath('nginx')) return unavailable('an HTTP object server (nginx)', 'FC_UFFD_TEST_HTTP_URL', ['nginx']);
  return start('nginx-start.sh', [String(await freePort())]);
}

/** A Ceph RGW S3 endpoint (about 20 s to start), or the reason there is none. */
export async function s3Server(): Promise<RunningServer | string> {
  const env = process.env.FC_UFFD_TEST_S3_ENDPOINT;
  if (env) return { url: env, stop: () => undefined };
  if (!['ceph-mon', 'ceph-osd', 'radosgw', 'ceph'].every(onPath))
    return unavailable('an S3 server (Ceph RGW)', 'FC_UFFD_TEST_S3_ENDPOINT', ['ceph-mon', 'ceph-osd', 'radosgw', 'ceph-common']);
  return start('ceph-start.sh', [String(await freePort())], {
    FC_UFFD_CEPH_MON_PORT: String(await freePort()),
    FC_UFFD_CEPH_MON_V1_PORT: String(await freePort()),
  });
}

export interface RestartableServer extends RunningServer {
  /** Starts it again on the same port with the same data (after stop or kill). */
  restart(): void;
  /** Stops the server's processes by pid (its data stays, for restart). */
  kill(): void;
  /** Stops it and removes its data. */
  remove(): void;
}

/**
 * An nginx of this test's own (never CI's shared one: a test stops and restarts it), or the
 * reason there is none.
 */
export async function ownHttpServer(): Promise<RestartableServer | string> {
  if (!onPath('nginx')) return unavailable('nginx (a test stops and restarts its own)', 'PATH', ['nginx']);
  const dir = tempDir('fc-uffd-nginx-');
  const port = String(await freePort());
  const pids = path.join(dir, 'pids');
  const kill = (): void => {
    execFileSync('bash', [path.join(SERVICES, 'stop.sh'), pids], { stdio: 'inherit' });
    fs.rmSync(pids, { force: true });
  };
  const restart = (): void => {
    execFileSync('bash', [path.join(SERVICES, 'nginx-start.sh'), dir, port], { stdio: ['ignore', 'ignore', 'inherit'] });
  };
  const remove = (): void => {
    kill();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    restart();
  } catch (err) {
    remove();
    throw err;
  }
  return { url: `http://127.0.0.1:${port}`, stop: remove, restart, kill, remove };
}
