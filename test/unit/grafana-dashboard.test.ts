// docs/grafana-dashboard.json queries the handler's real metric names: every fc_uffd_* name in it
// is one that a live registry exports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMetrics, registerStoreMetrics } from '../../src/server/metrics.js';
import type { UffdServer } from '../../src/server/server.js';

const DASHBOARD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../docs/grafana-dashboard.json');

test('the Grafana dashboard uses only metric names the handler exports', async () => {
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ targets: Array<{ expr: string }> }> };
  const used = new Set(dashboard.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/fc_uffd_\w+/g) ?? [])));
  assert.ok(used.size >= 10);
  // createMetrics reads only liveVms() and 'vm-ended' events of the server.
  const server = Object.assign(new EventEmitter(), { liveVms: () => [] }) as unknown as UffdServer;
  const registry = createMetrics(server);
  registerStoreMetrics(registry, () => []);
  const exported = new Set([...(await registry.metrics()).matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!));
  const missing = [...used].filter((name) => !exported.has(name));
  assert.deepEqual(missing, []);
});
