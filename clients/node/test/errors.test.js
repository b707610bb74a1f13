// Decoding the google.rpc.Status trailer, against statuses serialised by the
// Python side (agentmesh.status.to_status_proto), so both ends read the
// same bytes the same way.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import { AgentmeshError, decodeStatus, fromServiceError } from '../src/index.js';

// to_status_proto(ResourceExhausted('queue for summarize is full', retry_after=2.25,
//   reason='QUEUE_FULL', metadata={'capability': 'summarize'})).SerializeToString()
const RESOURCE_EXHAUSTED = Buffer.from(
  'CAgSG3F1ZXVlIGZvciBzdW1tYXJpemUgaXMgZnVsbBo1Cih0eXBlLmdvb2dsZWFwaXMuY29tL2dvb2dsZS5ycGMuUmV0' +
    'cnlJbmZvEgkKBwgCEIDlmncaYAoodHlwZS5nb29nbGVhcGlzLmNvbS9nb29nbGUucnBjLkVycm9ySW5mbxI0CgpRVUVV' +
    'RV9GVUxMEg1hZ2VudG1lc2guZGV2GhcKCmNhcGFiaWxpdHkSCXN1bW1hcml6ZQ==',
  'base64',
);

// to_status_proto(InvalidArgument('bad plan', violations=[
//   FieldViolation('plan.steps[0].capability', 'unknown capability'),
//   FieldViolation('input', 'must not be empty')], reason='INVALID_PLAN')).SerializeToString()
const INVALID_ARGUMENT = Buffer.from(
  'CAMSCGJhZCBwbGFuGnkKKXR5cGUuZ29vZ2xlYXBpcy5jb20vZ29vZ2xlLnJwYy5CYWRSZXF1ZXN0EkwKLgoYcGxhbi5z' +
    'dGVwc1swXS5jYXBhYmlsaXR5EhJ1bmtub3duIGNhcGFiaWxpdHkKGgoFaW5wdXQSEW11c3Qgbm90IGJlIGVtcHR5GkkK' +
    'KHR5cGUuZ29vZ2xlYXBpcy5jb20vZ29vZ2xlLnJwYy5FcnJvckluZm8SHQoMSU5WQUxJRF9QTEFOEg1hZ2VudG1lc2gu' +
    'ZGV2',
  'base64',
);

/** A failed call as grpc-js reports it, with the trailer when given. */
function serviceError(code, details, trailer) {
  const metadata = new grpc.Metadata();
  if (trailer) metadata.set('grpc-status-details-bin', trailer);
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), {
    code,
    details,
    metadata,
  });
}

test('a RetryInfo delay and an ErrorInfo are read from the status', () => {
  const status = decodeStatus(RESOURCE_EXHAUSTED);
  assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(status.message, 'queue for summarize is full');
  assert.deepEqual(status.details, [
    { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: 2.25 },
    {
      '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: 'QUEUE_FULL',
      domain: 'agentmesh.dev',
      metadata: { capability: 'summarize' },
    },
  ]);
});

test('a failed call becomes an AgentmeshError with its code name and details', () => {
  const error = fromServiceError(
    serviceError(grpc.status.RESOURCE_EXHAUSTED, 'queue for summarize is full', RESOURCE_EXHAUSTED),
  );
  assert.ok(error instanceof AgentmeshError);
  assert.ok(error instanceof Error);
  assert.equal(error.code, 'RESOURCE_EXHAUSTED');
  assert.equal(error.message, 'queue for summarize is full');
  assert.equal(error.retryAfter, 2.25);
  assert.equal(error.reason, 'QUEUE_FULL');
  assert.deepEqual(error.metadata, { capability: 'summarize' });
  assert.equal(error.retryable, true);
  assert.equal(error.cause.code, grpc.status.RESOURCE_EXHAUSTED);
});

test('every field violation is kept, in order', () => {
  const error = fromServiceError(
    serviceError(grpc.status.INVALID_ARGUMENT, 'bad plan', INVALID_ARGUMENT),
  );
  assert.equal(error.code, 'INVALID_ARGUMENT');
  assert.deepEqual(error.violations, [
    { field: 'plan.steps[0].capability', description: 'unknown capability' },
    { field: 'input', description: 'must not be empty' },
  ]);
  assert.equal(error.retryAfter, 0);
  assert.equal(error.reason, 'INVALID_PLAN');
  assert.equal(error.retryable, false);
});

test('without a trailer the code and message still come through', () => {
  const error = fromServiceError(serviceError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
  assert.equal(error.code, 'DEADLINE_EXCEEDED');
  assert.equal(error.message, 'Deadline exceeded');
  assert.deepEqual(error.details, []);
  assert.deepEqual(error.violations, []);
});

test('a trailer that does not decode leaves the code and message', () => {
  const truncated = INVALID_ARGUMENT.subarray(0, 20);
  const error = fromServiceError(serviceError(grpc.status.INVALID_ARGUMENT, 'bad plan', truncated));
  assert.equal(error.code, 'INVALID_ARGUMENT');
  assert.equal(error.message, 'bad plan');
  assert.deepEqual(error.details, []);
});

test('a detail of another type is kept with its bytes', () => {
  // google.rpc.Status{code: 5, details: [Any{type_url: '.../google.rpc.Help', value: 0a00}]}
  const typeUrl = Buffer.from('type.googleapis.com/google.rpc.Help');
  const any = Buffer.concat([Buffer.from([0x0a, typeUrl.length]), typeUrl, Buffer.from([0x12, 2, 0x0a, 0])]);
  const status = Buffer.concat([Buffer.from([0x08, 5, 0x1a, any.length]), any]);
  assert.deepEqual(decodeStatus(status).details, [
    { '@type': 'type.googleapis.com/google.rpc.Help', value: Buffer.from([0x0a, 0]) },
  ]);
});
