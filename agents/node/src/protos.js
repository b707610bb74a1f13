/**
 * The repository's contracts (protos/agentmesh/v1/*.proto) and the gRPC health
 * service, loaded at start-up with @grpc/proto-loader: no generated code.
 */

import { fileURLToPath } from 'node:url';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import health from 'grpc-health-check';

/** protos/ at the repository's root; AGENTMESH_PROTOS overrides it. */
export const PROTOS_DIR =
  process.env.AGENTMESH_PROTOS || fileURLToPath(new URL('../../../protos', import.meta.url));

/**
 * Field names as in the .proto files, int64 as numbers, enums as their names,
 * default values present and each set oneof member named in its oneof field.
 */
const OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS_DIR, path.dirname(path.dirname(path.dirname(health.protoPath)))],
};

/** Everything the worker serves and calls, as one package definition (for reflection too). */
export const packageDefinition = protoLoader.loadSync(
  ['agentmesh/v1/scheduler.proto', 'agentmesh/v1/worker.proto', 'health/v1/health.proto'],
  OPTIONS,
);

const loaded = /** @type {any} */ (grpc.loadPackageDefinition(packageDefinition));

/** agentmesh.v1, with SchedulerService (a client) and WorkerService (to serve). */
export const v1 = loaded.agentmesh.v1;

/** The fully qualified names of the services a worker serves. */
export const WORKER_SERVICE = 'agentmesh.v1.WorkerService';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';
