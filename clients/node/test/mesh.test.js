// The client against a running mesh: the scheduler at AGENTMESH_SCHEDULER
// with builtin workers (tests/integration/test_node_client.py starts one
// and names its workers in AGENTMESH_TEST_WORKERS). Skipped without it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { AgentmeshError, Client } from '../src/index.js';

const TARGET = process.env.AGENTMESH_SCHEDULER;
const WORKERS = (process.env.AGENTMESH_TEST_WORKERS ?? '').split(',').filter(Boolean);
const TICKETS = new URL('../../../examples/tickets/', import.meta.url);
const readTicket = (name) => JSON.parse(readFileSync(new URL(name, TICKETS), 'utf8'));
const TICKET = readTicket('01_refund_broken_laptop_en.json');
const GERMAN = readTicket('07_rueckerstattung_kaffeemaschine_de.json');
const STEPS = ['entities', 'language', 'sentiment', 'summary', 'triage', 'reply'];

/** A plan of one required step for a capability no builtin worker offers. */
const TRANSLATE_PLAN = {
  steps: [
    {
      id: 'french',
      capability: 'translate',
      inputs: { text: { refs: ['request.text'] }, target_language: { value: 'fr' } },
    },
  ],
  answer: { french: { refs: ['steps.french'] } },
};

/** Polls check() until it returns something truthy, for at most 10 s. */
async function until(check, what) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The AgentmeshError a promise rejects with; fails when it resolves. */
async function refusal(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AgentmeshError, `not an AgentmeshError: ${error}`);
    return error;
  }
  assert.fail('the call did not fail');
}

describe('a running mesh', { skip: TARGET ? false : 'AGENTMESH_SCHEDULER is not set' }, () => {
  /** @type {Client} */
  let client;
  before(() => {
    client = new Client(TARGET, { timeout: 30 });
  });
  after(() => client.close());

  test('a support ticket is answered, and can be read again by its id', async () => {
    const request = await client.submit('support_ticket', TICKET, { view: 'REQUEST_VIEW_FULL' });
    assert.equal(request.state, 'REQUEST_STATE_SUCCEEDED');
    assert.equal(request.workflow, 'support_ticket');
    assert.equal(request.answer.intent, 'refund');
    assert.equal(request.answer.language, 'en');
    assert.match(request.answer.reply, /refund/i);
    assert.ok(request.answer.entities.order_ids.includes('ORD-784213'));
    const byId = Object.fromEntries(request.subtasks.map((s) => [s.id, s]));
    for (const id of STEPS) {
      assert.equal(byId[id].state, 'SUBTASK_STATE_SUCCEEDED', id);
      assert.equal(typeof byId[id].output, 'object', id);
      assert.ok(WORKERS.length === 0 || WORKERS.includes(byId[id].workerId), id);
      assert.equal(typeof byId[id].duration, 'number', id);
    }
    assert.ok(request.createdAt instanceof Date && request.finishedAt >= request.createdAt);
    assert.equal(request.error, null);

    const fetched = await client.getRequest(request.requestId);
    assert.deepEqual(fetched.answer, request.answer);
    assert.equal(fetched.state, 'REQUEST_STATE_SUCCEEDED');
    assert.equal(fetched.subtasks.length, request.subtasks.length);
  });

  test('Submit answers without the plan and subtasks unless asked; GetRequest with them', async () => {
    const request = await client.submit('support_ticket', TICKET);
    assert.equal(request.state, 'REQUEST_STATE_SUCCEEDED');
    assert.equal(request.answer.intent, 'refund');
    assert.ok(request.usage && request.finishedAt instanceof Date);
    assert.equal(request.plan, null);
    assert.deepEqual(request.subtasks, []);
    const full = await client.getRequest(request.requestId);
    assert.equal(full.plan.workflow, 'support_ticket');
    assert.ok(full.subtasks.length >= STEPS.length);
    const basic = await client.getRequest(request.requestId, { view: 'REQUEST_VIEW_BASIC' });
    assert.equal(basic.plan, null);
    assert.deepEqual(basic.subtasks, []);
    assert.deepEqual(basic.answer, request.answer);
  });

  test('a stream of events starts with the plan and ends with the result', async () => {
    const requestId = `node-stream-${randomUUID()}`;
    const events = [];
    for await (const event of client.streamSubmit('support_ticket', GERMAN, { requestId })) {
      events.push(event);
    }
    assert.equal(events[0].event, 'plan');
    assert.deepEqual(events[0].plan.steps.map((s) => s.id).sort(), [...STEPS, 'translate'].sort());
    const last = events.at(-1);
    assert.equal(last.event, 'result');
    assert.equal(last.result.requestId, requestId);
    assert.equal(last.result.state, 'REQUEST_STATE_SUCCEEDED');
    assert.equal(last.result.answer.language, 'de');
    assert.ok(events.every((e) => e.requestId === requestId));
    const middle = events.slice(1, -1);
    assert.ok(middle.every((e) => e.event === 'subtask'));
    const started = new Set(
      middle.filter((e) => e.subtask.kind === 'SUBTASK_EVENT_KIND_STARTED').map((e) => e.subtask.subtaskId),
    );
    assert.deepEqual([...started].sort(), [...STEPS].sort());
    // No worker translates here: the German ticket's translate step is skipped, saying why.
    const skipped = middle.find((e) => e.subtask.kind === 'SUBTASK_EVENT_KIND_SKIPPED');
    assert.equal(skipped?.subtask.subtaskId, 'translate');
    assert.ok(skipped.subtask.message);
  });

  test('leaving a stream early cancels the request', async () => {
    // The step waits for a translate worker, which this mesh lacks, for
    // AGENTMESH_WORKER_WAIT: the request is still running when the loop is left.
    let requestId = '';
    for await (const event of client.streamSubmit({ plan: TRANSLATE_PLAN }, { text: 'hello' })) {
      assert.equal(event.event, 'plan');
      requestId = event.requestId;
      break;
    }
    const state = await until(async () => {
      const request = await client.getRequest(requestId);
      return request.state !== 'REQUEST_STATE_RUNNING' && request.state;
    }, 'the request to end');
    assert.equal(state, 'REQUEST_STATE_CANCELLED');
  });

  test('a capability no worker offers is UNAVAILABLE, naming it', async () => {
    const missing = await refusal(client.dispatch('translate', { text: 'hello', target_language: 'fr' }));
    assert.equal(missing.code, 'UNAVAILABLE');
    assert.equal(missing.retryable, true);
    assert.equal(missing.reason, 'NO_WORKER');
    assert.deepEqual(missing.metadata, { capability: 'translate' });
  });

  test('bad input is INVALID_ARGUMENT with field violations', async () => {
    const lacking = await refusal(client.submit('support_ticket', { body: 'hello' }));
    assert.equal(lacking.code, 'INVALID_ARGUMENT');
    assert.equal(lacking.retryable, false);
    assert.deepEqual(
      lacking.violations.map((v) => v.field),
      ['input.text'],
    );
    assert.match(lacking.violations[0].description, /text/);
    assert.match(lacking.message, /lacks/);

    const empty = await refusal(client.submit('support_ticket', {}));
    assert.equal(empty.code, 'INVALID_ARGUMENT');
    assert.ok(empty.violations.some((v) => v.field === 'input'), JSON.stringify(empty.violations));

    // A stream is refused the same way, from the loop.
    const streamed = await refusal(
      (async () => {
        for await (const event of client.streamSubmit('support_ticket', { body: 'hello' })) {
          assert.fail(`an event for a refused request: ${event.event}`);
        }
      })(),
    );
    assert.equal(streamed.code, 'INVALID_ARGUMENT');
    assert.deepEqual(streamed.violations.map((v) => v.field), ['input.text']);
  });

  test('an unknown request id is NOT_FOUND, an unknown workflow too', async () => {
    const unknown = await refusal(client.getRequest('node-no-such-request'));
    assert.equal(unknown.code, 'NOT_FOUND');
    assert.match(unknown.message, /node-no-such-request/);
    const workflow = await refusal(client.submit('make_coffee', TICKET));
    assert.equal(workflow.code, 'NOT_FOUND');
    assert.match(workflow.message, /make_coffee/);
  });

  test('a request id reused with other input is ALREADY_EXISTS, with its ErrorInfo', async () => {
    const requestId = `node-reused-${randomUUID()}`;
    await client.submit('support_ticket', TICKET, { requestId });
    const reused = await refusal(client.submit('support_ticket', GERMAN, { requestId }));
    assert.equal(reused.code, 'ALREADY_EXISTS');
    assert.equal(reused.reason, 'REQUEST_ID_REUSED');
    assert.deepEqual(reused.metadata, { request_id: requestId });
  });

  test('a call past its deadline is DEADLINE_EXCEEDED', async () => {
    const late = await refusal(client.submit('support_ticket', TICKET, { timeout: 0.001 }));
    assert.equal(late.code, 'DEADLINE_EXCEEDED');
    assert.equal(late.retryable, true);
  });

  test('ListWorkers reports the workers with their health, filtered by capability', async () => {
    const workers = await client.listWorkers();
    const ids = workers.map((w) => w.info.workerId).sort();
    if (WORKERS.length > 0) assert.deepEqual(ids, [...WORKERS].sort());
    for (const worker of workers) {
      assert.equal(worker.state, 'WORKER_STATE_ACTIVE');
      assert.equal(worker.info.backend, 'builtin');
      assert.ok(worker.info.capabilities.includes('sentiment'));
      assert.ok(worker.lastHeartbeat instanceof Date);
      assert.equal(typeof worker.latencyEstimate, 'number');
    }
    assert.deepEqual((await client.listWorkers('sentiment')).map((w) => w.info.workerId).sort(), ids);
    assert.deepEqual(await client.listWorkers('no_such_capability'), []);
  });

  test('a plan from Decompose, submitted back, runs', async () => {
    const plan = await client.decompose('support_ticket', TICKET);
    assert.equal(plan.workflow, 'support_ticket');
    assert.ok(plan.steps.some((s) => s.id === 'reply' && s.capability === 'draft_reply'));
    const request = await client.submit({ plan }, TICKET);
    assert.equal(request.state, 'REQUEST_STATE_SUCCEEDED');
    assert.equal(request.answer.intent, 'refund');
  });

  test('Dispatch runs one subtask; GetStats counts the requests', async () => {
    const result = await client.dispatch('sentiment', { text: 'I love this, thank you!' });
    assert.equal(result.output.label, 'positive');
    assert.equal(result.attempts, 1);
    assert.ok(WORKERS.length === 0 || WORKERS.includes(result.workerId));

    const stats = await client.getStats(5);
    assert.ok(stats.succeeded >= 1, JSON.stringify(stats));
    assert.ok(stats.recent.length >= 1 && stats.recent.length <= 5);
    assert.ok(stats.recent[0].finishedAt instanceof Date);
    assert.ok(stats.queues.some((q) => q.capability === 'sentiment' && q.depth === 0));
  });
});
