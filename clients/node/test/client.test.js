// The client without a scheduler: what it refuses before sending, and a
// scheduler that is not there.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';

import { AgentmeshError, Client } from '../src/index.js';

/** A loopback port nothing listens on (bound, then released). */
async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  await new Promise((resolve) => server.close(resolve));
  return port;
}

let client;
before(async () => {
  client = new Client(`127.0.0.1:${await closedPort()}`, { timeout: 5 });
});
after(() => client.close());

test('a source is a workflow name or exactly one of workflow, plan, goal', async () => {
  await assert.rejects(client.submit({ workflow: 'a', goal: 'b' }, { text: 'x' }), {
    name: 'TypeError',
    message: /a source is a workflow name, or one of/,
  });
  await assert.rejects(client.decompose({ recipe: 'x' }, { text: 'x' }), TypeError);
  await assert.rejects(client.streamSubmit(42, {}).next(), TypeError);
});

test('a misspelt option is refused, not dropped', async () => {
  await assert.rejects(client.submit('support_ticket', { text: 'x' }, { requestID: 'r1' }), {
    name: 'TypeError',
    message: "agentmesh.v1.SubmitRequest has no field 'requestID'",
  });
  await assert.rejects(client.dispatch('sentiment', { text: 'x' }, { difficulty: 'HARD' }), /DIFFICULTY_NUANCED/);
});

test('a scheduler that is not there is UNAVAILABLE, and retryable', async () => {
  await assert.rejects(client.listWorkers(), (error) => {
    assert.ok(error instanceof AgentmeshError);
    assert.equal(error.code, 'UNAVAILABLE');
    assert.equal(error.retryable, true);
    return true;
  });
});
