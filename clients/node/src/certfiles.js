/**
 * Certificate files that change under a running process, and what follows them: the
 * Node counterpart of the Python side's agentmesh.certfiles
 * (clients/python/src/agentmesh/certfiles.py).
 *
 * cert-manager renews a certificate by rewriting its files (the CSI driver in place, a
 * projected Secret by swapping a symlink), long before it expires. `CertificateFiles`
 * notices by a stat of each file, reads them only then, and takes a new set only when
 * the certificate comes with its own key. `RenewingChannel` is how the owner of a
 * long-lived channel (the client's, the Node worker's to the scheduler) opens a new
 * channel after a renewal without cutting a call; `WatchedCertificates` feeds a renewal
 * to @grpc/grpc-js's certificate-provider credentials (the Node worker's server).
 *
 * The Node worker (agents/node) imports this module too: it uses nothing but Node's own
 * modules, so that each package's own copy of @grpc/grpc-js does the gRPC side.
 *
 * @module
 */

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

/**
 * Milliseconds between two looks (a stat of each file) at the certificate files: how
 * soon after a renewal a long-lived channel's next call, or a server's next handshake,
 * uses the new certificate.
 */
export const CHECK_PERIOD_MS = 1_000;

/**
 * One identity's files, read together.
 * @typedef {{ca: Buffer, cert: Buffer, key: Buffer}} Pem
 */

/**
 * The paths of the mesh's CA, this process's certificate chain and its key.
 * @typedef {{ca: string, cert: string, key: string}} Paths
 */

/**
 * Where renewals are told: the Node worker's JSON log, or the client's warnings.
 * @typedef {(level: 'info' | 'warning', message: string, fields: object) => void} Logger
 */

/**
 * Throw unless `cert` is a certificate, `key` its private key and `ca` holds
 * certificates: what a half-written renewal is not.
 * @param {Pem} pem
 */
export function checkSet({ ca, cert, key }) {
  // An encrypted key has no passphrase here and fails, as gRPC would fail it.
  if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) {
    throw new Error("the key is not the certificate's");
  }
  // Node's secure context skips a CA certificate cut short: each must parse here.
  const text = ca.toString('latin1');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g) ?? [];
  if (!blocks.length || blocks.length !== text.split('-----BEGIN CERTIFICATE-----').length - 1) {
    throw new Error('the CA file holds no certificate, or one cut short');
  }
  for (const block of blocks) void new X509Certificate(block);
  createSecureContext({ ca, cert, key }); // what @grpc/grpc-js will build from them
}

/**
 * A file's version without reading it: device, inode, size, modification time (ns);
 * null when it is missing. Through a symlink: a Secret volume swaps its target.
 * @param {string} path
 */
function stamp(path) {
  try {
    const stat = statSync(path, { bigint: true });
    return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}`;
  } catch {
    return null;
  }
}

/** @param {Pem} a @param {Pem} b */
const samePem = (a, b) => a.ca.equals(b.ca) && a.cert.equals(b.cert) && a.key.equals(b.key);

/**
 * A set of files as last read whole and sound, and its generation.
 *
 * `look()` stats the three files and reads them again only when one's device, inode,
 * size or modification time differs from what it last saw: a rewrite in place and a
 * file swapped in alike. It takes the new files only when the certificate parses, the
 * key is its own and nothing changed while it read them; otherwise the previous ones
 * stay in use (said once) until the files change again, as a renewal seen between
 * writing the certificate and its key does. One instance may serve many users: each
 * compares the generation it last used with the one `look()` gives.
 */
export class CertificateFiles {
  /** @type {(string | null)[]} */
  #seen;
  /** @type {Pem} */
  #pem;
  #generation = 0;
  #check;
  #log;

  /**
   * Reads the files now (an Error when it cannot).
   * @param {Paths} paths
   * @param {{check?: (pem: Pem) => void, log?: Logger}} [options] `check` throws for a
   *   set that is not sound (default: checkSet); `log` hears of renewals
   */
  constructor(paths, { check = checkSet, log = () => {} } = {}) {
    /** @type {Paths} */
    this.paths = { ca: paths.ca, cert: paths.cert, key: paths.key };
    this.#check = check;
    this.#log = log;
    this.#seen = this.#stamps();
    this.#pem = this.#read();
  }

  #stamps() {
    return [this.paths.ca, this.paths.cert, this.paths.key].map(stamp);
  }

  /** @returns {Pem} */
  #read() {
    return { ca: readFileSync(this.paths.ca), cert: readFileSync(this.paths.cert), key: readFileSync(this.paths.key) };
  }

  /**
   * The files in use and their generation, without a look: 0 for those read at start,
   * one more at each renewal taken.
   * @returns {{generation: number, pem: Pem}}
   */
  get current() {
    return { generation: this.#generation, pem: this.#pem };
  }

  /** `current`, after a look at the files (a stat of each; a read if they changed). */
  look() {
    this.#refresh();
    return this.current;
  }

  #refresh() {
    const stamps = this.#stamps();
    if (stamps.every((one, i) => one === this.#seen[i])) return;
    /** @type {Pem} */
    let pem;
    try {
      if (stamps.includes(null)) throw new Error('a file is missing');
      pem = this.#read();
      this.#check(pem);
    } catch (error) {
      // Settled, not a read racing a write: said once, until the files change again.
      if (this.#stamps().every((one, i) => one === stamps[i])) {
        this.#seen = stamps;
        this.#log(
          'warning',
          'the certificate files changed to something that is not a certificate with its ' +
            'key: the previous ones stay in use until the files change again',
          { cert: this.paths.cert, key: this.paths.key, error: String(/** @type {Error} */ (error).message ?? error) },
        );
      }
      return;
    }
    if (!this.#stamps().every((one, i) => one === stamps[i])) return; // written meanwhile: the next look reads again
    this.#seen = stamps;
    if (samePem(pem, this.#pem)) return; // touched only, or rewritten the same
    this.#pem = pem;
    this.#generation += 1;
    this.#log('info', 'certificate files renewed', { cert: this.paths.cert });
  }
}

/**
 * @template S
 * @typedef {{stub: S, holders: number, retired: boolean}} Opened
 */

/**
 * A channel to one target whose certificate follows this process's files.
 *
 * A @grpc/grpc-js channel made with `credentials.createSsl` keeps that certificate for
 * good, and a connection keeps the certificate of its handshake. `acquire()` gives the
 * stub of the channel opened with the current files, after a look at them (a stat, at
 * most once per period; `renew(true)` looks now, as after a call failed UNAVAILABLE).
 * When they changed, it opens a new channel and retires the old one, which stays open
 * for the calls and streams that hold it, each to its end, and closes when the last
 * lets go: no call is moved, cut or repeated. Without files (plaintext, or PEM given
 * as contents) it is one channel for ever.
 * @template S the stub (a @grpc/grpc-js Client)
 */
export class RenewingChannel {
  #files;
  #open;
  #close;
  #period;
  #clock;
  #next;
  #generation;
  /** @type {Opened<S>} */
  #current;
  /** @type {Opened<S>[]} */
  #retired = [];
  #closed = false;
  #log;

  /**
   * @param {object} options
   * @param {CertificateFiles | null} options.files the certificate files; null: no renewal
   * @param {(pem: Pem | null) => S} options.open a new stub on a new channel with `pem`
   *   (files' null: whatever credentials the owner chose)
   * @param {(stub: S) => void} options.close closes a stub's channel
   * @param {number} [options.periodMs] at most one look per period (CHECK_PERIOD_MS)
   * @param {() => number} [options.clock] milliseconds, for the period
   * @param {Logger} [options.log]
   */
  constructor({ files, open, close, periodMs = CHECK_PERIOD_MS, clock = () => performance.now(), log = () => {} }) {
    this.#files = files;
    this.#open = open;
    this.#close = close;
    this.#period = periodMs;
    this.#clock = clock;
    this.#next = clock() + periodMs;
    this.#log = log;
    const { generation, pem } = files ? files.current : { generation: 0, pem: null };
    this.#generation = generation;
    this.#current = { stub: open(pem), holders: 0, retired: false };
  }

  /** The channels open now: the current one and the retired ones still held. */
  get openChannels() {
    return 1 + this.#retired.length;
  }

  /**
   * Open a new channel if the files changed to a sound new set; whether it did. Looks at
   * the files at most once per period, unless `force`.
   */
  renew(force = false) {
    if (!this.#files || this.#closed) return false;
    const now = this.#clock();
    if (!force && now < this.#next) return false;
    this.#next = now + this.#period;
    const { generation, pem } = this.#files.look();
    if (generation === this.#generation) return false;
    this.#generation = generation;
    const old = this.#current;
    this.#current = { stub: this.#open(pem), holders: 0, retired: false };
    old.retired = true;
    this.#retired.push(old);
    this.#log('info', 'certificate renewed: new calls go over a new channel', { held: old.holders });
    this.#release(old);
    return true;
  }

  /**
   * The current stub (after a look at the files), and the function that lets go of its
   * channel (once), to call when the call ends.
   * @returns {{stub: S, release: () => void}}
   */
  acquire() {
    this.renew();
    const opened = this.#current;
    opened.holders += 1;
    let released = false;
    return {
      stub: opened.stub,
      release: () => {
        if (released) return;
        released = true;
        opened.holders -= 1;
        this.#release(opened);
      },
    };
  }

  /** Close `opened` if it is retired and no call holds it. @param {Opened<S>} opened */
  #release(opened) {
    const at = this.#retired.indexOf(opened);
    if (!opened.retired || opened.holders > 0 || at < 0) return;
    this.#retired.splice(at, 1);
    this.#close(opened.stub);
  }

  /** Close every channel, ending the calls still on them. */
  close() {
    this.#closed = true;
    for (const opened of [this.#current, ...this.#retired.splice(0)]) this.#close(opened.stub);
  }
}

/**
 * @typedef {(update: {caCertificate: Buffer} | null) => void} CaListener
 * @typedef {(update: {certificate: Buffer, privateKey: Buffer} | null) => void} IdentityListener
 */

/**
 * CertificateFiles as a @grpc/grpc-js certificate provider (the `CertificateProvider`
 * of its `experimental` API): while gRPC listens (a server bound with
 * `experimental.createCertificateProviderServerCredentials`), it looks at the files
 * once a period and hands over a new set only when one was taken. grpc-js's own
 * `FileWatcherCertificateProvider` re-reads the files on a timer but hands over
 * whatever it read: a certificate without its key makes grpc-js's server refuse every
 * new connection until the key is there, where this keeps the previous pair.
 */
export class WatchedCertificates {
  #files;
  #period;
  /** @type {Set<CaListener>} */
  #ca = new Set();
  /** @type {Set<IdentityListener>} */
  #identity = new Set();
  /** @type {NodeJS.Timeout | null} */
  #timer = null;
  #sent;
  #log;

  /**
   * @param {CertificateFiles} files
   * @param {{periodMs?: number, log?: Logger}} [options]
   */
  constructor(files, { periodMs = CHECK_PERIOD_MS, log = () => {} } = {}) {
    this.#files = files;
    this.#period = periodMs;
    this.#sent = files.current.generation;
    this.#log = log;
  }

  /** Look at the files now; tell the listeners of a renewal. */
  look() {
    let current;
    try {
      current = this.#files.look();
    } catch (error) {
      // A timer's callback must not throw: serve on with what gRPC has.
      this.#log('warning', 'cannot look at the certificate files', { error: String(error) });
      return;
    }
    if (current.generation === this.#sent) return;
    this.#sent = current.generation;
    // One synchronous run: no handshake sees the new pair with the old CA in between.
    for (const listener of this.#identity) listener(identityOf(current.pem));
    for (const listener of this.#ca) listener({ caCertificate: current.pem.ca });
  }

  /** @param {CaListener} listener */
  addCaCertificateListener(listener) {
    this.#ca.add(listener);
    this.#watch();
    // Later, as grpc-js's own provider does: its credentials add their watcher after this.
    process.nextTick(listener, { caCertificate: this.#files.current.pem.ca });
  }

  /** @param {CaListener} listener */
  removeCaCertificateListener(listener) {
    this.#ca.delete(listener);
    this.#unwatch();
  }

  /** @param {IdentityListener} listener */
  addIdentityCertificateListener(listener) {
    this.#identity.add(listener);
    this.#watch();
    process.nextTick(listener, identityOf(this.#files.current.pem));
  }

  /** @param {IdentityListener} listener */
  removeIdentityCertificateListener(listener) {
    this.#identity.delete(listener);
    this.#unwatch();
  }

  #watch() {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.look(), this.#period);
    this.#timer.unref(); // looking at files is no reason to keep the process alive
  }

  #unwatch() {
    if (this.#ca.size || this.#identity.size || !this.#timer) return;
    clearInterval(this.#timer);
    this.#timer = null;
  }
}

/** @param {Pem} pem */
function identityOf(pem) {
  return { certificate: pem.cert, privateKey: pem.key };
}
