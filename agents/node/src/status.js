/**
 * Errors a worker answers with: a gRPC status code, a message, and the typed details
 * (google.rpc.BadRequest, ErrorInfo, RetryInfo) that agentmesh readers decode from the
 * `grpc-status-details-bin` trailer.
 *
 * The trailer's google.rpc.Status must carry the same code and message as the call's
 * status: the Python reader (grpc_status.rpc_status.from_call) rejects a mismatch.
 */

import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

/** google.rpc.ErrorInfo.domain of every agentmesh error. */
export const ERROR_DOMAIN = 'agentmesh.dev';

const root = new protobuf.Root();
root.resolvePath = (origin, target) =>
  target.startsWith('google/protobuf/')
    ? target // protobufjs has the well-known types built in
    : fileURLToPath(new URL(`../protos/${target}`, import.meta.url));
root.loadSync('google/rpc/status.proto', { keepCase: true });
root.resolveAll();
const Status = root.lookupType('google.rpc.Status');
const BadRequest = root.lookupType('google.rpc.BadRequest');
const ErrorInfo = root.lookupType('google.rpc.ErrorInfo');
const RetryInfo = root.lookupType('google.rpc.RetryInfo');

/**
 * @typedef {{field: string, description: string}} FieldViolation
 * @typedef {{
 *   violations?: FieldViolation[],
 *   reason?: string,
 *   metadata?: {[key: string]: string},
 *   retryAfter?: number,
 * }} ErrorDetails
 */

/** An error a handler raises; `toServiceError` turns it into the call's status. */
export class WorkerError extends Error {
  /**
   * @param {number} code a grpc.status value
   * @param {string} message
   * @param {ErrorDetails} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.code = code;
    this.violations = details.violations ?? [];
    this.reason = details.reason ?? '';
    this.metadata = details.metadata ?? {};
    this.retryAfter = details.retryAfter;
  }
}

/**
 * @param {protobuf.Type} type
 * @param {object} message
 * @returns {{type_url: string, value: Uint8Array}}
 */
function pack(type, message) {
  return {
    type_url: `type.googleapis.com/${type.fullName.slice(1)}`,
    value: type.encode(type.fromObject(message)).finish(),
  };
}

/**
 * The google.rpc.Status of an error, serialised.
 * @param {WorkerError} error
 * @returns {Buffer}
 */
export function statusBytes(error) {
  const details = [];
  if (error.violations.length) {
    details.push(pack(BadRequest, { field_violations: error.violations }));
  }
  if (error.retryAfter !== undefined) {
    const seconds = Math.max(error.retryAfter, 0);
    const whole = Math.floor(seconds);
    details.push(
      pack(RetryInfo, { retry_delay: { seconds: whole, nanos: Math.round((seconds - whole) * 1e9) } }),
    );
  }
  if (error.reason) {
    details.push(
      pack(ErrorInfo, { reason: error.reason, domain: ERROR_DOMAIN, metadata: error.metadata }),
    );
  }
  const status = Status.fromObject({ code: error.code, message: error.message, details });
  return Buffer.from(Status.encode(status).finish());
}

/**
 * The status a unary handler passes to its callback: code, message and details.
 * Anything that is not a WorkerError is answered INTERNAL, never UNKNOWN (the
 * scheduler would turn UNKNOWN into INTERNAL anyway).
 * @param {unknown} error
 * @returns {Partial<grpc.ServiceError>}
 */
export function toServiceError(error) {
  const failure =
    error instanceof WorkerError
      ? error
      : new WorkerError(grpc.status.INTERNAL, `worker failure: ${String(error)}`, {
          reason: 'WORKER_FAILED',
        });
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', statusBytes(failure));
  return { code: failure.code, details: failure.message, metadata };
}

/**
 * A serialised google.rpc.Status, decoded (for tests and logs).
 * @param {Uint8Array} bytes
 * @returns {{code: number, message: string, details: object[]}}
 */
export function decodeStatus(bytes) {
  const status = /** @type {any} */ (Status.toObject(Status.decode(bytes)));
  const types = { BadRequest, ErrorInfo, RetryInfo };
  const details = (status.details ?? []).map((/** @type {any} */ any) => {
    const name = any.type_url.split('.').pop();
    const type = types[/** @type {keyof typeof types} */ (name)];
    return type ? { type: name, ...type.toObject(type.decode(any.value), { longs: Number }) } : { type: any.type_url };
  });
  return { code: status.code ?? 0, message: status.message ?? '', details };
}
