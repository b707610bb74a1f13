import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { WorkerMetrics } from '../src/metrics.js';
import { writePorts } from '../src/ports.js';

const WHO = { workerId: 'w1', backend: 'node', model: '', tier: 'builtin' };

test('/metrics on a free port: the worker metrics with their labels, and the process metrics', async () => {
  const load = { inFlight: 2, waiting: 3 };
  const metrics = new WorkerMetrics(WHO, () => load);
  try {
    const address = await metrics.serve('127.0.0.1:0');
    assert.match(address, /^127\.0\.0\.1:[1-9]\d*$/);
    metrics.ran('detect_language', 'OK', 0.003);
    metrics.ran('detect_language', 'CANCELLED', 0.2);
    metrics.replays.inc();
    const response = await fetch(`http://${address}/metrics`);
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.match(text, /^agentmesh_worker_subtasks_total\{capability="detect_language",code="OK"\} 1$/m);
    assert.match(text, /^agentmesh_worker_subtasks_total\{capability="detect_language",code="CANCELLED"\} 1$/m);
    assert.match(text, /^agentmesh_worker_subtask_duration_seconds_bucket\{le="0.005",capability="detect_language"\} 1$/m);
    assert.match(text, /^agentmesh_worker_subtask_duration_seconds_count\{capability="detect_language"\} 2$/m);
    assert.match(text, /^agentmesh_worker_in_flight 2$/m);
    assert.match(text, /^agentmesh_worker_queue_length 3$/m);
    assert.match(text, /^agentmesh_worker_replays_total 1$/m);
    assert.match(text, /^agentmesh_worker_info\{worker="w1",backend="node",model="",tier="builtin"\} 1$/m);
    assert.match(text, /^process_cpu_user_seconds_total /m);
    load.inFlight = 0; // read at each scrape
    assert.match(await (await fetch(`http://${address}/metrics`)).text(), /^agentmesh_worker_in_flight 0$/m);
    assert.equal((await fetch(`http://${address}/other`)).status, 404);
  } finally {
    metrics.close();
  }
});

test('an address it cannot bind is named in the error', async () => {
  const first = new WorkerMetrics(WHO, () => ({ inFlight: 0, waiting: 0 }));
  const second = new WorkerMetrics(WHO, () => ({ inFlight: 0, waiting: 0 }));
  try {
    const taken = await first.serve('127.0.0.1:0');
    await assert.rejects(second.serve(taken), new RegExp(`cannot serve metrics on ${taken}`));
  } finally {
    first.close();
    second.close();
  }
});

test('the ports file: grpc, metrics when served, and the pid, as JSON', () => {
  const folder = mkdtempSync(join(tmpdir(), 'ports-'));
  const path = join(folder, 'sub', 'worker.json');
  writePorts(path, '127.0.0.1:5000', '127.0.0.1:5001');
  assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), {
    grpc: '127.0.0.1:5000',
    metrics: '127.0.0.1:5001',
    pid: process.pid,
  });
  writePorts(path, '127.0.0.1:5000', '');
  assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { grpc: '127.0.0.1:5000', pid: process.pid });
});
