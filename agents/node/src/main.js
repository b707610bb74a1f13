#!/usr/bin/env node
/**
 * `node agents/node/src/main.js`: an agentmesh worker offering detect_language.
 * Configured from the environment (see config.js); SIGTERM or SIGINT drains it.
 */

import { configFromEnv } from './config.js';
import { Worker } from './worker.js';
import { log } from './log.js';
import { writePorts } from './ports.js';

let config;
try {
  config = configFromEnv();
} catch (error) {
  process.stderr.write(`agentmesh node worker: ${/** @type {Error} */ (error).message}\n`);
  process.exit(2);
}
const worker = new Worker(config);
try {
  await worker.start();
} catch (error) {
  log('error', 'cannot serve', { listen: config.listen, error: String(error) });
  process.exit(1);
}
const metrics = worker.metricsAddress ? `, metrics on ${worker.metricsAddress}` : '';
process.stdout.write(
  `agentmesh node worker ${worker.workerId} serving detect_language on ${worker.address}, ` +
    `scheduler ${config.scheduler}${metrics}\n`,
);
log('info', 'worker serving', { grpc: worker.bound, metrics: worker.metricsAddress });
if (config.portsFile) writePorts(config.portsFile, worker.bound, worker.metricsAddress);
for (const signal of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
  process.on(signal, () => {
    log('info', `${signal}: draining`);
    worker.shutdown().then(() => process.exit(0));
  });
}
