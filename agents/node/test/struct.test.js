import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, fromDuration, inputBytes, toDuration } from '../src/struct.js';
import { decodeStatus, statusBytes, toServiceError, WorkerError } from '../src/status.js';

test('canonical JSON does not depend on key order', () => {
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] }), canonicalJson({ a: [{ c: 3, d: 2 }], b: 1 }));
});

test('input bytes are counted as json.dumps(ensure_ascii=False) writes them', () => {
  // json.dumps({"text": "é", "n": 1.0}) == '{"text": "é", "n": 1.0}': 24 bytes in UTF-8
  assert.equal(inputBytes({ text: 'é', n: 1 }), 24);
});

test('durations go both ways', () => {
  assert.deepEqual(toDuration(1.25), { seconds: 1, nanos: 250_000_000 });
  assert.equal(fromDuration({ seconds: 2, nanos: 500_000_000 }), 2.5);
});

test('errors carry their details in google.rpc.Status, with the call status code and message', () => {
  const error = new WorkerError(8, 'busy', { reason: 'AT_CAPACITY', retryAfter: 1.5 });
  const status = decodeStatus(statusBytes(error));
  assert.equal(status.code, 8);
  assert.equal(status.message, 'busy');
  assert.deepEqual(status.details.map((d) => d.type), ['RetryInfo', 'ErrorInfo']);
  const answered = toServiceError(new Error('boom'));
  assert.equal(answered.code, 13); // INTERNAL, never UNKNOWN
  const trailer = /** @type {Buffer} */ (answered.metadata?.get('grpc-status-details-bin')[0]);
  assert.equal(decodeStatus(trailer).message, answered.details);
});
