/**
 * The worker's settings, read once from the environment. The names are the Python
 * worker's where the setting is the same (agents/src/agentmesh/agents/config.py).
 */

import { randomBytes } from 'node:crypto';
import { checkListen, ownWorkerId, tlsFromEnv } from './tls.js';

/**
 * @typedef {object} WorkerConfig
 * @property {string} scheduler   host:port of the scheduler. AGENTMESH_SCHEDULER, default 127.0.0.1:50051.
 * @property {string} listen      host:port to serve on; port 0 takes a free one. AGENTMESH_WORKER_LISTEN, default 127.0.0.1:0.
 * @property {string} advertise   host:port to register instead of the bound address. AGENTMESH_WORKER_ADVERTISE.
 * @property {string} metricsListen host:port of /metrics; empty turns it off, port 0 takes a free one.
 *                                AGENTMESH_WORKER_METRICS_LISTEN, default off.
 * @property {string} portsFile   a file the worker writes, once serving, with the addresses it bound,
 *                                as JSON (agentmesh.server.ports). AGENTMESH_PORTS_FILE, default none.
 * @property {string} workerId    AGENTMESH_WORKER_ID, default node-<8 hex digits>; with TLS on, the
 *                                id its certificate names (AGENTMESH_WORKER_ID must be that one).
 * @property {number} capacity    subtasks run at once. AGENTMESH_CAPACITY, default 4.
 * @property {number} drainTimeout seconds in-flight work gets on SIGTERM. AGENTMESH_DRAIN_TIMEOUT, default 10.
 * @property {number} resultsKept finished subtasks remembered for repeats. AGENTMESH_RESULTS_KEPT, default 10000.
 * @property {number} delay       seconds each subtask takes on purpose, to try deadlines,
 *                                cancellation and failures. AGENTMESH_NODE_WORKER_DELAY, default 0.
 * @property {import('./tls.js').TlsConfig} tls mutual TLS: AGENTMESH_TLS_CERT, _KEY, _CA, _DOMAIN and
 *                                AGENTMESH_INSECURE (see tls.js). Default off: loopback only.
 */

/**
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {WorkerConfig}
 */
export function configFromEnv(env = process.env) {
  const tls = tlsFromEnv(env);
  const listen = env.AGENTMESH_WORKER_LISTEN || '127.0.0.1:0';
  // Plaintext beyond loopback stops the worker here, with one line naming the setting.
  checkListen(listen, tls, 'AGENTMESH_WORKER_LISTEN');
  const configured = env.AGENTMESH_WORKER_ID || '';
  const config = {
    scheduler: env.AGENTMESH_SCHEDULER || '127.0.0.1:50051',
    listen,
    advertise: env.AGENTMESH_WORKER_ADVERTISE || '',
    metricsListen: env.AGENTMESH_WORKER_METRICS_LISTEN || '',
    portsFile: env.AGENTMESH_PORTS_FILE || '',
    // With TLS on, the scheduler accepts the worker only under the id its certificate names.
    workerId: tls.enabled ? ownWorkerId(tls, configured) : configured || `node-${randomBytes(4).toString('hex')}`,
    capacity: number(env, 'AGENTMESH_CAPACITY', 4, 1),
    drainTimeout: number(env, 'AGENTMESH_DRAIN_TIMEOUT', 10, 0),
    resultsKept: number(env, 'AGENTMESH_RESULTS_KEPT', 10_000, 1),
    delay: number(env, 'AGENTMESH_NODE_WORKER_DELAY', 0, 0),
    tls,
  };
  if (!Number.isInteger(config.capacity) || !Number.isInteger(config.resultsKept)) {
    throw new Error('AGENTMESH_CAPACITY and AGENTMESH_RESULTS_KEPT must be whole numbers');
  }
  return config;
}

/**
 * @param {NodeJS.ProcessEnv} env
 * @param {string} name
 * @param {number} fallback
 * @param {number} minimum
 */
function number(env, name, fallback, minimum) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < minimum) {
    throw new Error(`${name}=${JSON.stringify(raw)}: expected a number of at least ${minimum}`);
  }
  return value;
}
