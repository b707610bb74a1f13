/**
 * Plain JavaScript values to and from the objects @grpc/proto-loader
 * serialises, driven by the message descriptors it loads.
 *
 * proto-loader already turns messages into objects (camelCase field names,
 * enums as their names, int64 as numbers). What it leaves in protobuf's
 * shape are the well-known types; here they become what a caller expects:
 *
 *   google.protobuf.Struct     a plain object ({"text": "..."})
 *   google.protobuf.Value      a plain value (null, number, string, boolean, array, object)
 *   google.protobuf.ListValue  an array
 *   google.protobuf.Duration   a number of seconds (the client's timeouts are seconds too)
 *   google.protobuf.Timestamp  a Date
 *
 * A message field that is not set reads as null. Going out, the converter
 * also refuses what protobuf.js would drop silently: a field name the
 * message does not have, or an enum name its enum does not define.
 *
 * @module
 */

/**
 * A value a google.protobuf.Value can hold.
 * @typedef {null | number | string | boolean | JsonArray | JsonObject} JsonValue
 */

/**
 * What a google.protobuf.ListValue holds.
 * @typedef {Array<JsonValue>} JsonArray
 */

/**
 * What a google.protobuf.Struct holds.
 * @typedef {{[key: string]: JsonValue}} JsonObject
 */

/** Struct, the one way a Value holds an object. */
const STRUCT = 'google.protobuf.Struct';
const VALUE = 'google.protobuf.Value';
const LIST = 'google.protobuf.ListValue';
const DURATION = 'google.protobuf.Duration';
const TIMESTAMP = 'google.protobuf.Timestamp';

/**
 * How one message field is converted.
 * @typedef {object} FieldShape
 * @property {string} name the field's key in the object (camelCase)
 * @property {string} type the full name of its message type, '' for a scalar
 * @property {string} enumType the full name of its enum, '' for other fields
 * @property {'single' | 'repeated' | 'map'} kind
 */

/** @param {JsonValue | undefined} value @returns {object} */
export function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  switch (typeof value) {
    case 'number':
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      if (Array.isArray(value)) return { listValue: toList(value) };
      return { structValue: toStruct(value) };
    default:
      throw new TypeError(`a ${typeof value} cannot be sent as a google.protobuf.Value`);
  }
}

/** @param {JsonValue[]} values */
function toList(values) {
  // As JSON.stringify does: an undefined array element is null.
  return { values: values.map((v) => toValue(v ?? null)) };
}

/** @param {{[key: string]: JsonValue | undefined}} object @returns {object} */
export function toStruct(object) {
  if (object === null || typeof object !== 'object' || Array.isArray(object)) {
    throw new TypeError('a google.protobuf.Struct must be a plain object');
  }
  /** @type {Record<string, object>} */
  const fields = {};
  for (const [key, value] of Object.entries(object)) {
    // As JSON.stringify does: an undefined property is left out.
    if (value !== undefined) fields[key] = toValue(value);
  }
  return { fields };
}

/** @param {any} value @returns {JsonValue} */
export function fromValue(value) {
  if (value === null || value === undefined) return null;
  switch (value.kind) {
    case 'numberValue':
      return value.numberValue;
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'structValue':
      return fromStruct(value.structValue);
    case 'listValue':
      return (value.listValue.values ?? []).map(fromValue);
    default:
      return null;
  }
}

/** @param {any} struct @returns {{[key: string]: JsonValue}} */
export function fromStruct(struct) {
  /** @type {{[key: string]: JsonValue}} */
  const object = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) object[key] = fromValue(value);
  return object;
}

/** @param {number} seconds */
function toDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) {
    throw new TypeError('a google.protobuf.Duration is given as a finite number of seconds');
  }
  const whole = Math.trunc(seconds);
  return { seconds: whole, nanos: Math.round((seconds - whole) * 1e9) };
}

/** @param {Date} date */
function toTimestamp(date) {
  if (!(date instanceof Date)) throw new TypeError('a google.protobuf.Timestamp is given as a Date');
  const millis = date.getTime();
  const seconds = Math.floor(millis / 1000);
  return { seconds, nanos: (millis - seconds * 1000) * 1e6 };
}

/** The well-known types: [to the wire, from the wire]. */
const SPECIAL = new Map([
  [STRUCT, [toStruct, fromStruct]],
  [VALUE, [toValue, fromValue]],
  [LIST, [toList, (/** @type {any} */ l) => (l?.values ?? []).map(fromValue)]],
  [DURATION, [toDuration, (/** @type {any} */ d) => Number(d.seconds) + d.nanos / 1e9]],
  [TIMESTAMP, [toTimestamp, (/** @type {any} */ t) => new Date(Number(t.seconds) * 1000 + t.nanos / 1e6)]],
]);

/** Converts the messages of one loaded package definition. */
export class Converter {
  /** @type {Record<string, any>} */
  #definitions;
  /** @type {Map<string, FieldShape[]>} */
  #shapes = new Map();

  /** @param {Record<string, any>} definitions what proto-loader's loadSync returned */
  constructor(definitions) {
    this.#definitions = definitions;
  }

  /**
   * An object of a message type, made ready for proto-loader to serialise.
   * @param {string} typeName the message's full name, such as 'agentmesh.v1.Plan'
   * @param {any} object
   * @returns {any}
   */
  toWire(typeName, object) {
    const special = SPECIAL.get(typeName);
    if (special) return special[0](object);
    if (object === null || typeof object !== 'object' || Array.isArray(object)) {
      throw new TypeError(`${typeName} must be given as an object`);
    }
    const shapes = this.#fieldShapes(typeName);
    const known = new Set([
      ...shapes.map((s) => s.name),
      ...(this.#definitions[typeName].type.oneofDecl ?? []).map((/** @type {any} */ o) => o.name),
    ]);
    /** @type {Record<string, any>} */
    const wire = {};
    for (const [key, value] of Object.entries(object)) {
      if (!known.has(key)) throw new TypeError(`${typeName} has no field '${key}'`);
      // Left out, a field is not set; a Value field set to null is a null.
      if (value === undefined) continue;
      const shape = /** @type {FieldShape} */ (shapes.find((s) => s.name === key));
      if (value === null && shape.type !== VALUE) continue;
      wire[key] = this.#each(shape, value, (one) => this.#fieldToWire(typeName, shape, one));
    }
    return wire;
  }

  /**
   * A deserialised message as plain JavaScript.
   * @param {string} typeName
   * @param {any} message
   * @returns {any}
   */
  fromWire(typeName, message) {
    if (message === null || message === undefined) return null;
    const special = SPECIAL.get(typeName);
    if (special) return special[1](message);
    const object = { ...message };
    for (const shape of this.#fieldShapes(typeName)) {
      const value = object[shape.name];
      if (shape.type === '' || value === undefined || value === null) continue;
      object[shape.name] = this.#each(shape, value, (one) => this.fromWire(shape.type, one));
    }
    return object;
  }

  /**
   * @param {string} typeName @param {FieldShape} shape @param {any} value
   * @returns {any}
   */
  #fieldToWire(typeName, shape, value) {
    if (shape.type !== '') return this.toWire(shape.type, value);
    if (shape.enumType !== '' && typeof value === 'string') {
      const names = this.#definitions[shape.enumType].type.value.map((/** @type {any} */ v) => v.name);
      if (!names.includes(value)) {
        throw new TypeError(
          `${typeName}.${shape.name}: '${value}' is not a value of ${shape.enumType} (one of ${names.join(', ')})`,
        );
      }
    }
    return value;
  }

  /**
   * Applies convert to a single value, each element of a repeated field, or
   * each value of a map field.
   * @param {FieldShape} shape @param {any} value @param {(one: any) => any} convert
   */
  #each(shape, value, convert) {
    if (shape.kind === 'repeated') {
      if (!Array.isArray(value)) throw new TypeError(`'${shape.name}' must be an array`);
      return value.map(convert);
    }
    if (shape.kind === 'map') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, convert(v)]));
    }
    return convert(value);
  }

  /** @param {string} typeName @returns {FieldShape[]} */
  #fieldShapes(typeName) {
    const known = this.#shapes.get(typeName);
    if (known) return known;
    const descriptor = this.#definitions[typeName]?.type;
    if (!descriptor?.field) throw new TypeError(`unknown message type ${typeName}`);
    /** @type {FieldShape[]} */
    const shapes = descriptor.field.map((/** @type {any} */ field) => {
      const entry = (descriptor.nestedType ?? []).find(
        (/** @type {any} */ n) => n.name === field.typeName && n.options?.mapEntry,
      );
      // A map field is a repeated field of a nested entry message: its
      // values are what need converting.
      const target = entry ? entry.field.find((/** @type {any} */ f) => f.name === 'value') : field;
      const resolved = target.typeName ? this.#resolve(target.typeName, typeName) : '';
      const isMessage = target.type === 'TYPE_MESSAGE';
      /** @type {FieldShape} */
      const shape = {
        name: field.name,
        type: isMessage ? resolved : '',
        enumType: target.type === 'TYPE_ENUM' ? resolved : '',
        kind: entry ? 'map' : field.label === 'LABEL_REPEATED' ? 'repeated' : 'single',
      };
      return shape;
    });
    this.#shapes.set(typeName, shapes);
    return shapes;
  }

  /**
   * A type name as written in a .proto, resolved by protobuf's scoping rules
   * from the message that uses it (innermost scope first).
   * @param {string} name @param {string} scope
   */
  #resolve(name, scope) {
    if (name.startsWith('.')) return name.slice(1);
    const parts = scope.split('.');
    for (let i = parts.length; i >= 0; i -= 1) {
      const candidate = [...parts.slice(0, i), name].join('.');
      if (candidate in this.#definitions) return candidate;
    }
    throw new TypeError(`cannot resolve type ${name} from ${scope}`);
  }
}
