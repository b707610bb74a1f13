import assert from 'node:assert/strict';
import { test } from 'node:test';

import { v1 } from '../src/protos.js';
import {
  certificateFiles,
  checkListen,
  dnsNames,
  isLoopback,
  notScheduler,
  schedulerChannel,
  serverCredentials,
  tlsFromEnv,
  workerIds,
} from '../src/tls.js';

const OFF = tlsFromEnv({});
const SAN = 'DNS:w1.worker.agentmesh.local, DNS:localhost, IP Address:127.0.0.1';

test('loopback: 127.0.0.0/8, ::1 however spelt, localhost; nothing else', () => {
  for (const host of ['127.0.0.1', '127.9.9.9', 'localhost', '[::1]', '[0:0:0:0:0:0:0:1]']) {
    assert.ok(isLoopback(host), host);
  }
  for (const host of ['0.0.0.0', '[::]', '10.0.0.1', 'example.com', '']) assert.ok(!isLoopback(host), host);
});

test('without TLS, a listen address beyond loopback stops the worker, unless AGENTMESH_INSECURE=1', () => {
  checkListen('127.0.0.1:0', OFF, 'AGENTMESH_WORKER_LISTEN');
  assert.throws(
    () => checkListen('0.0.0.0:0', OFF, 'AGENTMESH_WORKER_LISTEN'),
    /^Error: AGENTMESH_WORKER_LISTEN=0\.0\.0\.0:0 is beyond loopback .* AGENTMESH_INSECURE=1/,
  );
  checkListen('0.0.0.0:0', tlsFromEnv({ AGENTMESH_INSECURE: '1' }), 'AGENTMESH_WORKER_LISTEN');
  assert.throws(() => tlsFromEnv({ AGENTMESH_INSECURE: 'maybe' }), /AGENTMESH_INSECURE="maybe" is not 0\/1/);
});

test('TLS takes a certificate, its key and the CA together, each a file', () => {
  assert.deepEqual(OFF, { cert: '', key: '', ca: '', domain: 'agentmesh.local', insecure: false, enabled: false });
  assert.throws(() => tlsFromEnv({ AGENTMESH_TLS_CA: 'x' }), /set AGENTMESH_TLS_CERT, AGENTMESH_TLS_KEY$/);
  const missing = { AGENTMESH_TLS_CA: 'nowhere.pem', AGENTMESH_TLS_CERT: 'nowhere.pem', AGENTMESH_TLS_KEY: 'nowhere.pem' };
  assert.throws(() => tlsFromEnv(missing), /AGENTMESH_TLS_CERT=nowhere\.pem: no such file/);
});

test("a certificate's DNS names, and the worker ids among them", () => {
  assert.deepEqual(dnsNames(SAN), ['w1.worker.agentmesh.local', 'localhost']);
  assert.deepEqual(dnsNames('DNS:"odd, name", DNS:b'), ['odd, name', 'b']);
  assert.deepEqual(dnsNames(undefined), []);
  const names = ['w1.worker.agentmesh.local', 'a.b.worker.agentmesh.local', 'w2.worker.example.com'];
  assert.deepEqual(workerIds(names, 'agentmesh.local'), ['w1']);
});

test("only the scheduler's certificate may hand the worker work; plaintext is not judged", () => {
  /** @param {object} auth */
  const call = (auth) => ({ getAuthContext: () => auth });
  const peer = (/** @type {string} */ san) => call({ transportSecurityType: 'ssl', sslPeerCertificate: { subjectaltname: san } });
  assert.equal(notScheduler(peer('DNS:scheduler.agentmesh.local, DNS:localhost'), 'agentmesh.local'), null);
  assert.equal(notScheduler(peer(SAN), 'agentmesh.local'), 'w1.worker.agentmesh.local');
  assert.equal(notScheduler(peer('DNS:scheduler.example.com'), 'agentmesh.local'), "no name in the mesh's domain");
  assert.equal(notScheduler(call({}), 'agentmesh.local'), null);
});

test('without TLS no files are followed: plaintext server, one plaintext channel for ever', () => {
  assert.equal(certificateFiles(OFF), null);
  assert.equal(serverCredentials(OFF)._isSecure(), false);
  const channel = schedulerChannel('127.0.0.1:1', v1.SchedulerService, OFF);
  const { stub, release } = channel.acquire();
  release();
  assert.equal(channel.renew(true), false);
  assert.equal(channel.acquire().stub, stub);
  assert.equal(channel.openChannels, 1);
  channel.close();
});
