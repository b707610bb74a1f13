/**
 * google.protobuf.Struct and Duration as @grpc/proto-loader represents them, to and
 * from plain JavaScript values.
 *
 * proto-loader (with `oneofs: true`) decodes a Value as `{kind: 'stringValue',
 * stringValue: 'x', ...}`, with the other members of the oneof present as defaults:
 * `kind` says which one is set.
 */

/**
 * @typedef {{[key: string]: JsonValue}} JsonObject
 * @typedef {null | boolean | number | string | JsonValue[] | JsonObject} JsonValue
 */

/**
 * A decoded Struct as a plain object.
 * @param {any} struct
 * @returns {JsonObject}
 */
export function fromStruct(struct) {
  /** @type {JsonObject} */
  const out = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) {
    out[key] = fromValue(value);
  }
  return out;
}

/**
 * @param {any} value
 * @returns {JsonValue}
 */
function fromValue(value) {
  switch (value?.kind) {
    case 'stringValue':
      return value.stringValue;
    case 'numberValue':
      return value.numberValue;
    case 'boolValue':
      return value.boolValue;
    case 'structValue':
      return fromStruct(value.structValue);
    case 'listValue':
      return (value.listValue?.values ?? []).map(fromValue);
    default:
      return null;
  }
}

/**
 * A plain object as a Struct to encode.
 * @param {JsonObject} object
 * @returns {{fields: {[key: string]: object}}}
 */
export function toStruct(object) {
  /** @type {{[key: string]: object}} */
  const fields = {};
  for (const [key, value] of Object.entries(object)) {
    fields[key] = toValue(value);
  }
  return { fields };
}

/**
 * @param {JsonValue} value
 * @returns {object}
 */
function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

/**
 * Seconds as a google.protobuf.Duration.
 * @param {number} seconds
 * @returns {{seconds: number, nanos: number}}
 */
export function toDuration(seconds) {
  const whole = Math.floor(Math.max(seconds, 0));
  return { seconds: whole, nanos: Math.round((Math.max(seconds, 0) - whole) * 1e9) % 1e9 };
}

/**
 * A decoded google.protobuf.Duration in seconds.
 * @param {{seconds?: number | string, nanos?: number} | null | undefined} duration
 * @returns {number}
 */
export function fromDuration(duration) {
  if (!duration) return 0;
  return Number(duration.seconds ?? 0) + (duration.nanos ?? 0) / 1e9;
}

/**
 * An input as JSON in UTF-8 bytes, measured as the Python side measures it
 * (`json.dumps(data, ensure_ascii=False)`: ", " and ": " separators, whole floats as
 * "1.0"), so that a skill's max_input_bytes means the same on every worker.
 * @param {JsonValue} value
 * @returns {number}
 */
export function inputBytes(value) {
  return Buffer.byteLength(pythonJson(value), 'utf8');
}

/**
 * @param {JsonValue} value
 * @returns {string}
 */
function pythonJson(value) {
  if (value === null) return 'null';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : value < 0 ? '-Infinity' : 'NaN';
    return Number.isInteger(value) ? `${value}.0` : String(value);
  }
  if (typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  const members = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`);
  return `{${members.join(', ')}}`;
}

/**
 * JSON with the keys of every object sorted: the same object gives the same text.
 * @param {JsonValue} value
 * @returns {string}
 */
export function canonicalJson(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
}
