/**
 * The addresses the worker bound, announced once it serves: as agentmesh.server.ports
 * does for the Python servers, a JSON file at AGENTMESH_PORTS_FILE,
 * `{"grpc": "127.0.0.1:41234", "metrics": "127.0.0.1:41235", "pid": 4242}` (`metrics`
 * absent when the worker serves no /metrics), so whoever started it with port 0 learns
 * the ports without racing another process for a free one.
 */

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Write the addresses to `path`, atomically (a temporary file in the same folder, then
 * a rename): a reader sees no file or a whole one.
 * @param {string} path
 * @param {string} grpc host:port of WorkerService
 * @param {string} metrics host:port of /metrics, or empty
 */
export function writePorts(path, grpc, metrics) {
  /** @type {Record<string, string | number>} */
  const data = { grpc };
  if (metrics) data.metrics = metrics;
  data.pid = process.pid;
  mkdirSync(dirname(path), { recursive: true });
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  writeFileSync(temporary, `${JSON.stringify(data)}\n`);
  renameSync(temporary, path);
}
