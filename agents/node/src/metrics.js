/**
 * The worker's Prometheus metrics: the Python worker's (WorkerMetrics in
 * clients/python/src/agentmesh/server/metrics.py), with the same names, types, help
 * text, labels and buckets, so one dashboard and one set of alert rules cover both;
 * tests/integration/test_node_metrics.py checks that they do not drift apart. Plus
 * prom-client's default process and Node.js runtime metrics.
 *
 * No worker id label: Prometheus tells workers apart by their `instance`, and
 * `agentmesh_worker_info` names the worker behind one (docs/observability.md).
 */

import { createServer } from 'node:http';
import client from 'prom-client';

/** Latency buckets in seconds: LATENCY_BUCKETS of the Python metrics. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class WorkerMetrics {
  /**
   * @param {{workerId: string, backend: string, model: string, tier: string}} who
   *   the values of `agentmesh_worker_info` (tier as its label: `builtin`, `small`, `large`)
   * @param {() => {inFlight: number, waiting: number}} load the slots taken and the subtasks
   *   waiting for one, read at each scrape (the worker keeps these counts anyway)
   */
  constructor(who, load) {
    /** @type {import('node:http').Server | undefined} serving /metrics, once `serve` ran */
    this.server = undefined;
    /** Its own registry: two workers in one process (the tests) keep apart. */
    this.registry = new client.Registry();
    const registers = [this.registry];
    this.subtasks = new client.Counter({
      name: 'agentmesh_worker_subtasks_total',
      help: 'Subtasks run by this worker, by capability and status code.',
      labelNames: ['capability', 'code'],
      registers,
    });
    this.subtaskSeconds = new client.Histogram({
      name: 'agentmesh_worker_subtask_duration_seconds',
      help: 'Time this worker spent running a subtask, from getting a free slot to its output.',
      labelNames: ['capability'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inFlight = new client.Gauge({
      name: 'agentmesh_worker_in_flight',
      help: 'Subtasks running in this worker now.',
      registers,
      collect() {
        this.set(load().inFlight);
      },
    });
    this.queueLength = new client.Gauge({
      name: 'agentmesh_worker_queue_length',
      help: 'Subtasks waiting for a free slot in this worker.',
      registers,
      collect() {
        this.set(load().waiting);
      },
    });
    this.info = new client.Gauge({
      name: 'agentmesh_worker_info',
      help:
        "Always 1: the worker's id, backend, model and tier, to join its metrics with the " +
        "scheduler's `worker` label.",
      labelNames: ['worker', 'backend', 'model', 'tier'],
      registers,
    });
    this.info.labels(who.workerId, who.backend, who.model, who.tier).set(1);
    this.authDenied = new client.Counter({
      name: 'agentmesh_auth_denied_total',
      help: 'Calls refused for missing, invalid or insufficient credentials, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.replays = new client.Counter({
      name: 'agentmesh_worker_replays_total',
      help: "Repeated subtasks answered from the worker's store without running again.",
      registers,
    });
    client.collectDefaultMetrics({ register: this.registry });
  }

  /**
   * One subtask run finished (or failed) after `seconds` in its slot.
   * @param {string} capability
   * @param {string} code the status code's name: OK, CANCELLED, INTERNAL, ...
   * @param {number} seconds
   */
  ran(capability, code, seconds) {
    this.subtasks.labels(capability, code).inc();
    this.subtaskSeconds.labels(capability).observe(seconds);
  }

  /**
   * Serve /metrics on host:port (port 0 takes a free one; no host: 127.0.0.1).
   * @param {string} listen
   * @returns {Promise<string>} `listen` with the port bound; rejects naming the address when it cannot bind
   */
  serve(listen) {
    const at = listen.lastIndexOf(':');
    const host = listen.slice(0, at).replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
    const port = Number(listen.slice(at + 1));
    this.server = createServer((request, response) => {
      if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
        response.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => response.writeHead(200, { 'Content-Type': this.registry.contentType }).end(text),
        (error) => response.writeHead(500).end(String(error)),
      );
    });
    const server = this.server;
    return new Promise((resolve, reject) => {
      server.once('error', (error) => reject(new Error(`cannot serve metrics on ${listen}: ${error.message}`)));
      server.listen(port, host, () => {
        const bound = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
        resolve(`${listen.slice(0, at)}:${bound}`);
      });
    });
  }

  /** Stop serving /metrics (nothing when it never served). */
  close() {
    this.server?.close();
    this.server?.closeAllConnections();
  }
}
