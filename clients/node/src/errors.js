/**
 * The error every failed call rejects with, and the decoding of the typed
 * details the scheduler sends in the `grpc-status-details-bin` trailer
 * (a serialised google.rpc.Status: google.rpc.BadRequest field violations,
 * RetryInfo, ErrorInfo). The Python side of the same mapping is
 * clients/python/src/agentmesh/status.py.
 *
 * The three detail messages are small and stable (google/rpc/*.proto), so
 * they are read straight from the protobuf wire format here rather than by
 * adding a protobuf runtime and generated code for them.
 *
 * @module
 */

import * as grpc from '@grpc/grpc-js';

/** The trailer that carries a google.rpc.Status. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

const TYPE_PREFIX = 'type.googleapis.com/';
const BAD_REQUEST = `${TYPE_PREFIX}google.rpc.BadRequest`;
const RETRY_INFO = `${TYPE_PREFIX}google.rpc.RetryInfo`;
const ERROR_INFO = `${TYPE_PREFIX}google.rpc.ErrorInfo`;

/** Codes after which the same call may succeed on another try (as agentmesh.errors). */
export const RETRYABLE_CODES = Object.freeze(
  new Set(['UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'UNIMPLEMENTED', 'INTERNAL']),
);

/**
 * One bad field of a request: where it is and what is wrong with it.
 * @typedef {object} FieldViolation
 * @property {string} field such as 'input.text' or 'plan.steps[2].capability'
 * @property {string} description
 */

/**
 * One detail of a google.rpc.Status, in the proto3 JSON form of an Any:
 * its type URL under '@type', then its fields. A detail of another type
 * keeps its serialised bytes as `value`.
 * @typedef {{'@type': string, [field: string]: unknown}} StatusDetail
 */

/**
 * A failed call: the gRPC status code's name, the message, and the typed
 * details the server sent.
 */
export class AgentmeshError extends Error {
  /**
   * @param {string} code the status code name, such as 'INVALID_ARGUMENT'
   * @param {string} message
   * @param {object} [options]
   * @param {StatusDetail[]} [options.details]
   * @param {unknown} [options.cause] the grpc-js error behind this one
   */
  constructor(code, message, { details = [], cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'AgentmeshError';
    /** The gRPC status code name, such as 'NOT_FOUND'. */
    this.code = code;
    /** Every detail the server sent, decoded. @type {StatusDetail[]} */
    this.details = details;
    /** The BadRequest field violations (INVALID_ARGUMENT). @type {FieldViolation[]} */
    this.violations = [];
    /** Seconds to wait before trying again (RetryInfo, with RESOURCE_EXHAUSTED); 0 if none. */
    this.retryAfter = 0;
    /** ErrorInfo's reason, such as 'REQUEST_ID_REUSED'; '' if none. */
    this.reason = '';
    /** ErrorInfo's metadata, such as the capability no worker offers. @type {Record<string, string>} */
    this.metadata = {};
    for (const detail of details) {
      if (detail['@type'] === BAD_REQUEST) {
        this.violations.push(.../** @type {FieldViolation[]} */ (detail.fieldViolations));
      } else if (detail['@type'] === RETRY_INFO) {
        this.retryAfter = /** @type {number} */ (detail.retryDelay);
      } else if (detail['@type'] === ERROR_INFO) {
        this.reason = /** @type {string} */ (detail.reason);
        this.metadata = /** @type {Record<string, string>} */ (detail.metadata);
      }
    }
  }

  /** Whether the same call may succeed when made again. */
  get retryable() {
    return RETRYABLE_CODES.has(this.code);
  }
}

/**
 * The AgentmeshError behind a failed grpc-js call: its code name, and the
 * message and details of the google.rpc.Status trailer when there is one.
 * @param {grpc.ServiceError} error
 * @returns {AgentmeshError}
 */
export function fromServiceError(error) {
  const code = grpc.status[error.code] ?? 'UNKNOWN';
  const [bytes] = error.metadata?.get(STATUS_DETAILS_KEY) ?? [];
  if (Buffer.isBuffer(bytes)) {
    try {
      const status = decodeStatus(bytes);
      return new AgentmeshError(code, status.message, { details: status.details, cause: error });
    } catch {
      // A trailer that does not decode still leaves the code and message.
    }
  }
  return new AgentmeshError(code, error.details || code, { cause: error });
}

/**
 * A serialised google.rpc.Status: {code, message, details}.
 * @param {Uint8Array} bytes
 * @returns {{code: number, message: string, details: StatusDetail[]}}
 */
export function decodeStatus(bytes) {
  const status = { code: 0, message: '', details: /** @type {StatusDetail[]} */ ([]) };
  for (const [number, value] of fields(bytes)) {
    if (number === 1) status.code = Number(BigInt.asIntN(32, /** @type {bigint} */ (value)));
    else if (number === 2) status.message = text(value);
    else if (number === 3) status.details.push(decodeAny(/** @type {Uint8Array} */ (value)));
  }
  return status;
}

/** @param {Uint8Array} bytes @returns {StatusDetail} */
function decodeAny(bytes) {
  let typeUrl = '';
  /** @type {Uint8Array} */
  let value = new Uint8Array();
  for (const [number, field] of fields(bytes)) {
    if (number === 1) typeUrl = text(field);
    else if (number === 2) value = /** @type {Uint8Array} */ (field);
  }
  switch (typeUrl) {
    case BAD_REQUEST:
      return { '@type': typeUrl, fieldViolations: repeated(value, 1, decodeViolation) };
    case RETRY_INFO:
      return { '@type': typeUrl, retryDelay: decodeRetryDelay(value) };
    case ERROR_INFO:
      return { '@type': typeUrl, ...decodeErrorInfo(value) };
    default:
      return { '@type': typeUrl, value: Buffer.from(value) };
  }
}

/** @param {Uint8Array} bytes @returns {FieldViolation} */
function decodeViolation(bytes) {
  const violation = { field: '', description: '' };
  for (const [number, value] of fields(bytes)) {
    if (number === 1) violation.field = text(value);
    else if (number === 2) violation.description = text(value);
  }
  return violation;
}

/** RetryInfo's retry_delay (a Duration) in seconds. @param {Uint8Array} bytes */
function decodeRetryDelay(bytes) {
  let seconds = 0;
  for (const [number, value] of fields(bytes)) {
    if (number !== 1) continue;
    for (const [n, v] of fields(/** @type {Uint8Array} */ (value))) {
      if (n === 1) seconds += Number(BigInt.asIntN(64, /** @type {bigint} */ (v)));
      else if (n === 2) seconds += Number(BigInt.asIntN(32, /** @type {bigint} */ (v))) / 1e9;
    }
  }
  return seconds;
}

/** @param {Uint8Array} bytes */
function decodeErrorInfo(bytes) {
  const info = { reason: '', domain: '', metadata: /** @type {Record<string, string>} */ ({}) };
  for (const [number, value] of fields(bytes)) {
    if (number === 1) info.reason = text(value);
    else if (number === 2) info.domain = text(value);
    else if (number === 3) {
      // A map<string, string> entry: key = 1, value = 2.
      let key = '';
      let entry = '';
      for (const [n, v] of fields(/** @type {Uint8Array} */ (value))) {
        if (n === 1) key = text(v);
        else if (n === 2) entry = text(v);
      }
      info.metadata[key] = entry;
    }
  }
  return info;
}

/**
 * The messages in a repeated message field.
 * @template T
 * @param {Uint8Array} bytes @param {number} fieldNumber @param {(b: Uint8Array) => T} decode
 * @returns {T[]}
 */
function repeated(bytes, fieldNumber, decode) {
  const items = [];
  for (const [number, value] of fields(bytes)) {
    if (number === fieldNumber) items.push(decode(/** @type {Uint8Array} */ (value)));
  }
  return items;
}

const decoder = new TextDecoder();

/** @param {unknown} value */
function text(value) {
  return decoder.decode(/** @type {Uint8Array} */ (value));
}

/**
 * The fields of a protobuf message: [field number, value], where a varint
 * is a bigint and a length-delimited field its bytes; fixed-width fields are
 * skipped (none of the messages read here has one).
 * @param {Uint8Array} bytes
 * @returns {Generator<[number, bigint | Uint8Array]>}
 */
function* fields(bytes) {
  let position = 0;
  /** @returns {bigint} */
  const varint = () => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (position >= bytes.length) throw new RangeError('truncated varint');
      const byte = bytes[position++];
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
    }
    throw new RangeError('varint too long');
  };
  while (position < bytes.length) {
    const key = varint();
    const number = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (wireType === 0) {
      yield [number, varint()];
    } else if (wireType === 2) {
      const length = Number(varint());
      if (position + length > bytes.length) throw new RangeError('truncated field');
      yield [number, bytes.subarray(position, position + length)];
      position += length;
    } else if (wireType === 1 || wireType === 5) {
      position += wireType === 1 ? 8 : 4;
    } else {
      throw new RangeError(`unsupported wire type ${wireType}`);
    }
  }
}
