// Certificate files that change under a running process (../src/certfiles.js), with
// fakes: files whose "certificate" and "key" match when they carry the same tag, a fake
// clock, fake channels. Real certificates: renewal.test.js.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { CertificateFiles, RenewingChannel, WatchedCertificates } from '../src/certfiles.js';

const folder = mkdtempSync(join(tmpdir(), 'certfiles-'));
after(() => rmSync(folder, { recursive: true, force: true }));
let sets = 0;

/** Files in a folder of their own; `write(tag)` writes a certificate and key that match. */
function fakeFiles() {
  const dir = join(folder, String((sets += 1)));
  const paths = { ca: `${dir}-ca.pem`, cert: `${dir}-cert.pem`, key: `${dir}-key.pem` };
  writeFileSync(paths.ca, 'ca');
  const writeCert = (/** @type {string} */ tag) => writeFileSync(paths.cert, `cert ${tag}`);
  const writeKey = (/** @type {string} */ tag) => writeFileSync(paths.key, `key ${tag}`);
  writeCert('1');
  writeKey('1');
  /** @type {[string, string][]} */
  const said = [];
  const files = new CertificateFiles(paths, {
    check: ({ cert, key }) => {
      if (cert.toString().slice(5) !== key.toString().slice(4)) throw new Error('the key is not its own');
    },
    log: (level, message) => said.push([level, message]),
  });
  return { files, paths, writeCert, writeKey, said };
}

const warnings = (/** @type {[string, string][]} */ said) => said.filter(([level]) => level === 'warning').length;

test('a renewal is taken when the certificate comes with its key; a half-written one keeps the old, said once', () => {
  const { files, writeCert, writeKey, said } = fakeFiles();
  assert.equal(files.look().generation, 0);
  assert.equal(files.look().pem.cert.toString(), 'cert 1');
  writeCert('22'); // the key is not written yet
  for (let i = 0; i < 3; i += 1) assert.equal(files.look().pem.cert.toString(), 'cert 1');
  assert.equal(files.current.generation, 0);
  assert.equal(warnings(said), 1);
  writeKey('22');
  const { generation, pem } = files.look();
  assert.deepEqual([generation, pem.cert.toString(), pem.key.toString()], [1, 'cert 22', 'key 22']);
  assert.deepEqual(said.at(-1), ['info', 'certificate files renewed']);
});

test('files rewritten the same are no renewal; a missing file keeps the old ones', () => {
  const { files, paths, writeCert, writeKey, said } = fakeFiles();
  writeCert('1');
  writeKey('1');
  assert.equal(files.look().generation, 0);
  unlinkSync(paths.key);
  assert.equal(files.look().pem.key.toString(), 'key 1');
  assert.equal(warnings(said), 1);
  writeKey('1');
  assert.equal(files.look().generation, 0);
});

/** Fake files whose generation the test moves on. */
function movingFiles() {
  let generation = 0;
  let looks = 0;
  const pem = (/** @type {number} */ n) => ({ ca: Buffer.from('ca'), cert: Buffer.from(`c${n}`), key: Buffer.from(`k${n}`) });
  return {
    renew: () => (generation += 1),
    looks: () => looks,
    files: /** @type {any} */ ({
      get current() {
        return { generation, pem: pem(generation) };
      },
      look() {
        looks += 1;
        return this.current;
      },
    }),
  };
}

/** A RenewingChannel of fake stubs, each named by the certificate it was opened with. */
function fakeChannel(files) {
  let now = 0;
  /** @type {string[]} */
  const closed = [];
  const channel = new RenewingChannel({
    files,
    open: (pem) => (pem ? pem.cert.toString() : 'plaintext'),
    close: (stub) => closed.push(stub),
    periodMs: 1_000,
    clock: () => now,
  });
  return { channel, closed, tick: (/** @type {number} */ ms) => (now += ms) };
}

test('after a renewal new calls take a new channel; the old one closes when its last call ends', () => {
  const moving = movingFiles();
  const { channel, closed, tick } = fakeChannel(moving.files);
  const first = channel.acquire();
  moving.renew();
  const also = channel.acquire();
  assert.deepEqual([first.stub, also.stub, moving.looks()], ['c0', 'c0', 0], 'no look within the period');
  tick(1_000);
  const second = channel.acquire();
  assert.equal(second.stub, 'c1');
  assert.equal(channel.openChannels, 2);
  first.release();
  first.release(); // once only: `also` still holds c0
  assert.deepEqual(closed, []);
  also.release();
  assert.deepEqual(closed, ['c0']);
  assert.equal(channel.openChannels, 1);
  second.release();
  assert.deepEqual(closed, ['c0'], 'the current channel stays open');
});

test('the old channel closes at once when no call holds it; renew(true) looks within the period', () => {
  const moving = movingFiles();
  const { channel, closed } = fakeChannel(moving.files);
  channel.acquire().release();
  moving.renew();
  assert.equal(channel.renew(), false);
  assert.equal(channel.renew(true), true);
  assert.deepEqual(closed, ['c0']);
  assert.equal(channel.openChannels, 1);
  assert.equal(channel.renew(true), false, 'no change since');
  channel.close();
  assert.deepEqual(closed, ['c0', 'c1']);
  assert.equal(channel.renew(true), false, 'closed');
});

test('without files, one channel for ever', () => {
  const { channel, closed, tick } = fakeChannel(null);
  tick(5_000);
  assert.equal(channel.acquire().stub, 'plaintext');
  assert.equal(channel.renew(true), false);
  channel.close();
  assert.deepEqual(closed, ['plaintext']);
});

test('WatchedCertificates hands gRPC the files at once, then a renewal only when one is taken', async () => {
  const moving = movingFiles();
  const watched = new WatchedCertificates(moving.files, { periodMs: 60_000 });
  /** @type {string[]} */
  const heard = [];
  const identity = (/** @type {any} */ update) => heard.push(`identity ${update.certificate}`);
  const ca = (/** @type {any} */ update) => heard.push(`ca ${update.caCertificate}`);
  watched.addIdentityCertificateListener(identity);
  watched.addCaCertificateListener(ca);
  assert.deepEqual(heard, [], 'later: the credentials add their watcher after their listeners');
  await new Promise((resolve) => process.nextTick(resolve));
  assert.deepEqual(heard, ['identity c0', 'ca ca']);
  watched.look();
  assert.equal(heard.length, 2, 'nothing new');
  moving.renew();
  watched.look();
  assert.deepEqual(heard.slice(2), ['identity c1', 'ca ca']);
  watched.removeIdentityCertificateListener(identity);
  watched.removeCaCertificateListener(ca);
  moving.renew();
  watched.look();
  assert.equal(heard.length, 4, 'no listener left');
});
