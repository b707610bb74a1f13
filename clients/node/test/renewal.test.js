// The client follows its certificate files, with real certificates: the suite
// 'renewed certificates' runs when AGENTMESH_TEST_RENEWAL names a folder of them
// (tests/integration/test_node_renewal.py makes one): ca.pem, scheduler.pem and
// scheduler-key.pem, client.pem and client-key.pem (the first), renewed.pem and
// renewed-key.pem (the renewal). A server here notes the certificate of each caller.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { checkSet } from '../src/certfiles.js';
import { Client, PROTOS_DIR } from '../src/index.js';

const CERTS = process.env.AGENTMESH_TEST_RENEWAL;

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

describe('renewed certificates', { skip: CERTS ? false : 'AGENTMESH_TEST_RENEWAL is not set' }, () => {
  const file = (/** @type {string} */ name) => join(String(CERTS), name);
  const fingerprint = (/** @type {string} */ name) => new X509Certificate(readFileSync(file(name))).fingerprint256;
  /** The fingerprint of the certificate each call presented, in order. */
  const seen = /** @type {string[]} */ ([]);
  /** @type {(() => void)[]} answers ListWorkers calls held by the test */
  const held = [];
  let holding = false;
  const server = new grpc.Server();
  const live = mkdtempSync(join(tmpdir(), 'renewal-'));
  const tls = { ca: file('ca.pem'), cert: join(live, 'tls.crt'), key: join(live, 'tls.key') };
  /** @type {Client} */
  let client;
  /** @type {string[]} */
  const warnings = [];
  const onWarning = (/** @type {Error} */ warning) => {
    if (warning.name === 'AgentmeshCertificateWarning') warnings.push(warning.message);
  };

  before(async () => {
    const definitions = protoLoader.loadSync(['agentmesh/v1/scheduler.proto'], { includeDirs: [PROTOS_DIR] });
    const proto = /** @type {any} */ (grpc.loadPackageDefinition(definitions));
    server.addService(proto.agentmesh.v1.SchedulerService.service, {
      ListWorkers: (/** @type {any} */ call, /** @type {Function} */ callback) => {
        const raw = call.getAuthContext().sslPeerCertificate.raw;
        seen.push(new X509Certificate(raw).fingerprint256);
        if (holding) held.push(() => callback(null, { workers: [] }));
        else callback(null, { workers: [] });
      },
    });
    const credentials = grpc.ServerCredentials.createSsl(
      readFileSync(file('ca.pem')),
      [{ private_key: readFileSync(file('scheduler-key.pem')), cert_chain: readFileSync(file('scheduler.pem')) }],
      true,
    );
    const port = await new Promise((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    copyFileSync(file('client.pem'), tls.cert);
    copyFileSync(file('client-key.pem'), tls.key);
    process.on('warning', onWarning);
    client = new Client(`127.0.0.1:${port}`, { timeout: 10, tls });
  });

  after(() => {
    client?.close();
    server.forceShutdown();
    process.off('warning', onWarning);
    rmSync(live, { recursive: true, force: true });
  });

  test('a set is sound when the certificate comes with its key and every CA certificate is whole', () => {
    const pem = { ca: readFileSync(file('ca.pem')), cert: readFileSync(file('client.pem')), key: readFileSync(file('client-key.pem')) };
    checkSet(pem);
    assert.throws(() => checkSet({ ...pem, key: readFileSync(file('renewed-key.pem')) }), /not the certificate's/);
    const cut = Buffer.concat([pem.ca, pem.ca.subarray(0, 200)]);
    assert.throws(() => checkSet({ ...pem, ca: cut }), /cut short/);
    assert.throws(() => checkSet({ ...pem, cert: pem.cert.subarray(0, 200) }));
  });

  test('the client presents its renewed certificate; a call begun before the renewal ends on the old channel', async () => {
    await client.listWorkers();
    assert.equal(seen.at(-1), fingerprint('client.pem'));

    holding = true;
    const early = client.listWorkers(); // answered only when the test says
    await until(() => held.length === 1, 'the early call to reach the server');
    holding = false;

    copyFileSync(file('renewed.pem'), tls.cert);
    copyFileSync(file('renewed-key.pem'), tls.key);
    await until(async () => {
      await client.listWorkers();
      return seen.at(-1) === fingerprint('renewed.pem');
    }, 'a call presenting the renewed certificate');
    assert.equal(client.openChannels, 2, 'the early call holds the old channel');

    held.shift()?.();
    assert.deepEqual(await early, [], 'the early call is answered, neither cut nor repeated');
    assert.equal(held.length, 0);
    assert.equal(client.openChannels, 1, 'the old channel closed with its last call');
  });

  test('a half-written renewal keeps the previous certificate, said once, until the key comes', async () => {
    const presented = fingerprint('renewed.pem');
    copyFileSync(file('client.pem'), tls.cert); // the certificate without its key
    await until(async () => {
      await client.listWorkers();
      return warnings.length > 0;
    }, 'the warning of a certificate without its key');
    for (let i = 0; i < 3; i += 1) {
      await client.listWorkers();
      assert.equal(seen.at(-1), presented);
    }
    assert.equal(client.openChannels, 1);
    copyFileSync(file('client-key.pem'), tls.key);
    await until(async () => {
      await client.listWorkers();
      return seen.at(-1) === fingerprint('client.pem');
    }, 'the certificate with its key, once written');
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0], /not a certificate with its key/);
  });
});
