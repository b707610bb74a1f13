// Tokens and mutual TLS. The unit tests always run; the suite 'a secured mesh'
// runs against a scheduler with TLS on that checks callers' tokens
// (tests/integration/test_node_client.py starts one), given in
// AGENTMESH_SCHEDULER with AGENTMESH_TEST_SECURE=1, this caller's identity in
// AGENTMESH_TLS_CA, _CERT and _KEY, a client's token in AGENTMESH_TOKEN, and a
// worker's certificate (not a caller's) in AGENTMESH_TEST_WORKER_CERT and _KEY.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { AgentmeshError, Client, tlsFromEnv } from '../src/index.js';
import { bearerToken, callMetadata, channelSecurity } from '../src/security.js';

const TARGET = process.env.AGENTMESH_SCHEDULER;
const SECURE = Boolean(TARGET && process.env.AGENTMESH_TEST_SECURE);
const TICKET = JSON.parse(
  readFileSync(new URL('../../../examples/tickets/01_refund_broken_laptop_en.json', import.meta.url), 'utf8'),
);

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

test('tlsFromEnv: none set is plaintext, all three are TLS, some is an error naming the rest', () => {
  assert.equal(tlsFromEnv({}), null);
  assert.deepEqual(
    tlsFromEnv({ AGENTMESH_TLS_CA: 'ca.pem', AGENTMESH_TLS_CERT: 'c.pem', AGENTMESH_TLS_KEY: 'k.pem' }),
    { ca: 'ca.pem', cert: 'c.pem', key: 'k.pem' },
  );
  const named = tlsFromEnv({
    AGENTMESH_TLS_CA: 'ca.pem',
    AGENTMESH_TLS_CERT: 'c.pem',
    AGENTMESH_TLS_KEY: 'k.pem',
    AGENTMESH_TLS_SERVER_NAME: 'scheduler.agentmesh.local',
  });
  assert.equal(named?.serverName, 'scheduler.agentmesh.local');
  assert.throws(() => tlsFromEnv({ AGENTMESH_TLS_CA: 'ca.pem' }), /set AGENTMESH_TLS_CERT, AGENTMESH_TLS_KEY$/);
});

test('the tls option needs a certificate, its key and the CA together', () => {
  assert.throws(() => channelSecurity({ ca: 'ca.pem', cert: 'c.pem', key: '' }), {
    name: 'TypeError',
    message: /set tls\.key$/,
  });
  assert.deepEqual(channelSecurity(null).options, {});
});

test('the token: the given one, else AGENTMESH_TOKEN; an empty one sends none', () => {
  assert.equal(bearerToken(undefined, { AGENTMESH_TOKEN: ' from-env ' }), 'from-env');
  assert.equal(bearerToken('given', { AGENTMESH_TOKEN: 'from-env' }), 'given');
  assert.equal(bearerToken('', { AGENTMESH_TOKEN: 'from-env' }), '');
  assert.deepEqual(callMetadata('abc').get('authorization'), ['Bearer abc']);
  assert.deepEqual(callMetadata('').get('authorization'), []);
});

describe('a secured mesh', { skip: SECURE ? false : 'AGENTMESH_TEST_SECURE is not set' }, () => {
  /** @type {Client} */
  let client;
  before(() => {
    // The certificate from AGENTMESH_TLS_*, the token from AGENTMESH_TOKEN.
    client = new Client(TARGET, { timeout: 30, tls: tlsFromEnv() });
  });
  after(() => client.close());

  test('a call with the caller certificate and a token succeeds, and so does a stream', async () => {
    const request = await client.submit('support_ticket', TICKET);
    assert.equal(request.state, 'REQUEST_STATE_SUCCEEDED');
    let last;
    for await (const event of client.streamSubmit('support_ticket', TICKET)) last = event;
    assert.equal(last?.event, 'result');
    assert.equal(last.result.state, 'REQUEST_STATE_SUCCEEDED');
  });

  test('the token decides the role: a client may not list workers', async () => {
    const error = await refusal(client.listWorkers());
    assert.equal(error.code, 'PERMISSION_DENIED');
    assert.equal(error.reason, 'ROLE_DENIED');
  });

  test('without a token, UNAUTHENTICATED (MISSING_TOKEN); with a malformed one, MALFORMED_TOKEN', async () => {
    for (const [token, reason] of [['', 'MISSING_TOKEN'], ['not.a.jwt', 'MALFORMED_TOKEN']]) {
      const bare = new Client(TARGET, { timeout: 10, tls: tlsFromEnv(), token });
      try {
        const error = await refusal(bare.submit('support_ticket', TICKET));
        assert.equal(error.code, 'UNAUTHENTICATED');
        assert.equal(error.reason, reason);
        assert.equal(error.retryable, false);
      } finally {
        bare.close();
      }
    }
  });

  test('without a certificate (plaintext), the handshake fails: UNAVAILABLE', async () => {
    const plain = new Client(TARGET, { timeout: 10 });
    try {
      assert.equal((await refusal(plain.submit('support_ticket', TICKET))).code, 'UNAVAILABLE');
    } finally {
      plain.close();
    }
  });

  test("a worker's certificate is not a caller's: PERMISSION_DENIED (NOT_CLIENT)", async () => {
    const tls = {
      ...tlsFromEnv(),
      cert: String(process.env.AGENTMESH_TEST_WORKER_CERT),
      key: String(process.env.AGENTMESH_TEST_WORKER_KEY),
    };
    const worker = new Client(TARGET, { timeout: 10, tls });
    try {
      const error = await refusal(worker.submit('support_ticket', TICKET));
      assert.equal(error.code, 'PERMISSION_DENIED');
      assert.equal(error.reason, 'NOT_CLIENT');
    } finally {
      worker.close();
    }
  });

  test('serverName: the name the scheduler certificate must hold, whatever address is dialled', async () => {
    const named = new Client(TARGET, { timeout: 10, tls: { ...tlsFromEnv(), serverName: 'scheduler.agentmesh.local' } });
    const wrong = new Client(TARGET, { timeout: 10, tls: { ...tlsFromEnv(), serverName: 'nobody.agentmesh.local' } });
    try {
      const plan = await named.decompose('support_ticket', TICKET);
      assert.ok(plan.steps.length > 0);
      assert.equal((await refusal(wrong.decompose('support_ticket', TICKET))).code, 'UNAVAILABLE');
    } finally {
      named.close();
      wrong.close();
    }
  });
});
