// Plain values to and from the messages proto-loader serialises, through
// the real contracts' serialisers (no server needed).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as protoLoader from '@grpc/proto-loader';

import { PROTOS_DIR } from '../src/index.js';
import { Converter } from '../src/convert.js';

const definitions = protoLoader.loadSync(['agentmesh/v1/scheduler.proto'], {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS_DIR],
});
const converter = new Converter(definitions);
const service = definitions['agentmesh.v1.SchedulerService'];

/** Serialises with the contract, then reads back as the server would see it. */
function overTheWire(method, object) {
  const wire = converter.toWire(`agentmesh.v1.${method}Request`, object);
  return service[method].requestDeserialize(service[method].requestSerialize(wire));
}

const INPUT = {
  text: 'Wo ist meine Bestellung?',
  count: 3,
  ratio: 0.5,
  urgent: true,
  missing: null,
  tags: ['a', 1, false, null, { deep: ['x'] }],
  nested: { empty: {}, list: [] },
};

test('a Struct input survives the wire as the same plain object', () => {
  const sent = overTheWire('Submit', { workflow: 'support_ticket', input: INPUT });
  assert.deepEqual(converter.fromWire('google.protobuf.Struct', sent.input), INPUT);
  assert.equal(sent.source, 'workflow');
});

test('a plan made plain goes back into a request unchanged', () => {
  const plan = {
    workflow: '',
    steps: [
      {
        id: 'mood',
        capability: 'sentiment',
        inputs: { text: { refs: ['request.text'], collect: false, value: { fallback: [1, 'two'] } } },
        dependsOn: [],
        priority: 'PRIORITY_HIGH',
        difficulty: 'DIFFICULTY_NUANCED',
        optional: true,
        when: { ref: 'request.lang', operator: 'CONDITION_OPERATOR_EQUALS', value: 'de' },
      },
    ],
    answer: { mood: { refs: ['steps.mood'], collect: false, value: null } },
  };
  const sent = overTheWire('Decompose', { plan, input: { text: 'x' } });
  assert.deepEqual(converter.fromWire('agentmesh.v1.Plan', sent.plan), plan);
});

test('durations read as seconds, timestamps as Dates, unset messages as null', () => {
  const response = {
    request: {
      requestId: 'r1',
      createdAt: { seconds: 1764473600, nanos: 250_000_000 },
      subtasks: [{ id: 'a', duration: { seconds: 1, nanos: 500_000_000 }, output: { fields: {} } }],
    },
  };
  const method = service.Submit;
  const read = method.responseDeserialize(method.responseSerialize(response));
  const request = converter.fromWire('agentmesh.v1.SubmitResponse', read).request;
  assert.deepEqual(request.createdAt, new Date(1764473600250));
  assert.equal(request.subtasks[0].duration, 1.5);
  assert.deepEqual(request.subtasks[0].output, {});
  assert.equal(request.finishedAt, null);
  assert.equal(request.answer, null);
  assert.equal(request.error, null);
});

test('a field the message does not have is refused, not dropped', () => {
  assert.throws(
    () => converter.toWire('agentmesh.v1.SubmitRequest', { workflow: 'w', input: {}, request_id: 'x' }),
    { name: 'TypeError', message: "agentmesh.v1.SubmitRequest has no field 'request_id'" },
  );
  assert.throws(
    () => converter.toWire('agentmesh.v1.DecomposeRequest', { plan: { steps: [{ id: 'a', needs: [] }] } }),
    /agentmesh.v1.PlanStep has no field 'needs'/,
  );
});

test('an enum name the enum does not define is refused; numbers are left to the server', () => {
  assert.throws(
    () => converter.toWire('agentmesh.v1.SubmitRequest', { workflow: 'w', priority: 'HIGH' }),
    /'HIGH' is not a value of agentmesh.v1.Priority \(one of PRIORITY_UNSPECIFIED, .*PRIORITY_HIGH/,
  );
  const sent = overTheWire('Submit', { workflow: 'w', priority: 3 });
  assert.equal(sent.priority, 'PRIORITY_HIGH');
});

test('what a Struct cannot hold is refused', () => {
  assert.throws(() => converter.toWire('google.protobuf.Struct', ['a']), TypeError);
  assert.throws(() => converter.toWire('google.protobuf.Struct', { n: 10n }), /a bigint cannot be sent/);
});
