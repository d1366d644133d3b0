// A typed client of the daemon's control API (docs/control-api.yaml), over its unix socket.
import { Client } from 'undici';
import { FcUffdError, type ErrorCode } from '../errors.js';
import type { ErrorBody, HealthInfo, RestoreDetail, RestoreInfo, RestoreRequest } from '../daemon/api-types.js';

export type { ErrorBody, HealthInfo, RestoreDetail, RestoreInfo, RestoreRequest, VmSummary, RestoreState } from '../daemon/api-types.js';

export interface ControlClientOptions {
  /** Per request, headers to last byte (default 30 s: creating a chunked restore reads its manifest). */
  timeoutMs?: number;
}

/**
 * `new ControlClient('/run/fc-uffd/control.sock')`. A refused request throws FcUffdError with the
 * daemon's code (`CONTROL_NOT_FOUND`, `SNAPSHOT_OPEN`, ...) and `details.status`, the HTTP status.
 */
export class ControlClient {
  private readonly client: Client;

  constructor(
    readonly socketPath: string,
    options: ControlClientOptions = {},
  ) {
    const timeoutMs = options.timeoutMs ?? 30_000;
    this.client = new Client('http://localhost', { socketPath, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  }

  /** Starts serving a snapshot on a new uffd socket; `socket` in the answer is Firecracker's backend_path. */
  createRestore(name: string, request: RestoreRequest): Promise<RestoreInfo> {
    return this.json('PUT', `/restores/${encodeURIComponent(name)}`, request);
  }

  async listRestores(): Promise<RestoreInfo[]> {
    return (await this.json<{ restores: RestoreInfo[] }>('GET', '/restores')).restores;
  }

  getRestore(name: string): Promise<RestoreDetail> {
    return this.json('GET', `/restores/${encodeURIComponent(name)}`);
  }

  /** No new VMs; live ones finish (`force`: stopped now). The answer's state is 'draining' while VMs run on. */
  deleteRestore(name: string, options: { force?: boolean } = {}): Promise<RestoreInfo> {
    return this.json('DELETE', `/restores/${encodeURIComponent(name)}${options.force ? '?force=true' : ''}`);
  }

  health(): Promise<HealthInfo> {
    return this.json('GET', '/health');
  }

  /** Prometheus text exposition. */
  async metrics(): Promise<string> {
    const res = await this.client.request({ method: 'GET', path: '/metrics' });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw errorFrom(res.statusCode, text);
    return text;
  }

  close(): Promise<void> {
    return this.client.close();
  }

  private async json<T>(method: 'GET' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const res = await this.client.request({
      method,
      path,
      ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
    });
    const text = await res.body.text();
    if (res.statusCode >= 400) throw errorFrom(res.statusCode, text);
    return JSON.parse(text) as T;
  }
}

function errorFrom(status: number, text: string): FcUffdError {
  let body: Partial<ErrorBody> = {};
  try {
    body = JSON.parse(text) as Partial<ErrorBody>;
  } catch {
    // Not the daemon's JSON error (a proxy?): report the raw text.
  }
  const code: ErrorCode = body.code ?? 'INTERNAL';
  return new FcUffdError(code, body.message ?? `HTTP ${status}: ${text.slice(0, 200)}`, { status });
}
