/**
 * Mutual TLS, as the Python worker has it (clients/python/src/agentmesh/tls.py and
 * agentmesh/server/tls.py): the same AGENTMESH_TLS_* variables, the same identities.
 *
 * With TLS on (AGENTMESH_TLS_CA, AGENTMESH_TLS_CERT, AGENTMESH_TLS_KEY, all three),
 * the worker serves mutual TLS (every caller presents a certificate signed by the
 * mesh's CA), runs Execute only for the scheduler's certificate, registers and beats
 * with its own certificate, verifying that the scheduler's names `scheduler.<domain>`
 * whatever address it dials, and goes by the worker id its certificate names. Who a
 * peer is comes from the DNS names of the certificate gRPC verified, never from
 * anything a caller writes. Without TLS it serves loopback only, unless
 * AGENTMESH_INSECURE=1.
 *
 * It follows its certificate files, as the Python worker does (agentmesh.certfiles,
 * whose Node counterpart, clients/node/src/certfiles.js, it shares with the Node
 * client): its server presents a renewed certificate from the first handshake after a
 * look at the files (once a second), and its channel to the scheduler opens a new
 * channel after a renewal, the calls on the old one going on to their end.
 */

import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import grpc from '@grpc/grpc-js';
import { CertificateFiles, RenewingChannel, WatchedCertificates } from '../../../clients/node/src/certfiles.js';
import { log } from './log.js';

/** The mesh's DNS domain for identities when none is configured. */
export const DEFAULT_DOMAIN = 'agentmesh.local';

/**
 * @typedef {object} TlsConfig
 * @property {string} cert     this process's certificate chain, PEM. AGENTMESH_TLS_CERT.
 * @property {string} key      its private key, PEM. AGENTMESH_TLS_KEY.
 * @property {string} ca       the mesh's CA certificate(s), PEM. AGENTMESH_TLS_CA; empty: TLS off.
 * @property {string} domain   the domain of identities. AGENTMESH_TLS_DOMAIN, default agentmesh.local.
 * @property {boolean} insecure plaintext beyond loopback allowed. AGENTMESH_INSECURE, default off.
 * @property {boolean} enabled TLS is on (a CA is set).
 */

const TRUE = ['1', 'true', 'yes', 'on'];
const FALSE = ['0', 'false', 'no', 'off'];

/**
 * The TLS settings in the environment; an Error names the variable of a bad one.
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {TlsConfig}
 */
export function tlsFromEnv(env = process.env) {
  const read = (/** @type {string} */ name) => (env[`AGENTMESH_TLS_${name}`] ?? '').trim();
  const files = { AGENTMESH_TLS_CERT: read('CERT'), AGENTMESH_TLS_KEY: read('KEY'), AGENTMESH_TLS_CA: read('CA') };
  const given = Object.values(files);
  if (given.some(Boolean) && !given.every(Boolean)) {
    const missing = Object.keys(files).filter((name) => !files[/** @type {keyof files} */ (name)]);
    throw new Error(`TLS needs a certificate, its key and the mesh's CA together: set ${missing.join(', ')}`);
  }
  for (const [name, path] of Object.entries(files)) {
    if (path && !(existsSync(path) && statSync(path).isFile())) throw new Error(`${name}=${path}: no such file`);
  }
  const insecure = (env.AGENTMESH_INSECURE ?? '').trim().toLowerCase();
  if (insecure && !TRUE.includes(insecure) && !FALSE.includes(insecure)) {
    throw new Error(`environment variable AGENTMESH_INSECURE=${JSON.stringify(insecure)} is not 0/1`);
  }
  return {
    cert: files.AGENTMESH_TLS_CERT,
    key: files.AGENTMESH_TLS_KEY,
    ca: files.AGENTMESH_TLS_CA,
    domain: read('DOMAIN') || DEFAULT_DOMAIN,
    insecure: TRUE.includes(insecure),
    enabled: Boolean(files.AGENTMESH_TLS_CA),
  };
}

/** @param {string} domain */
export const schedulerName = (domain) => `scheduler.${domain}`;

/**
 * Whether `host` (of a host:port listen address) is a loopback interface only.
 * @param {string} host
 */
export function isLoopback(host) {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  // The URL parser writes an IPv6 address in its shortest form: ::1 however spelt.
  if (isIP(bare) === 6) return new URL(`http://[${bare}]/`).hostname === '[::1]';
  return false;
}

/**
 * Refuse to serve beyond loopback in plaintext, naming the setting and the ways out.
 * @param {string} listen host:port
 * @param {TlsConfig} tls
 * @param {string} setting the variable `listen` came from
 */
export function checkListen(listen, tls, setting) {
  const host = listen.slice(0, listen.lastIndexOf(':'));
  if (tls.enabled || tls.insecure || isLoopback(host)) return;
  throw new Error(
    `${setting}=${listen} is beyond loopback and TLS is off: set AGENTMESH_TLS_CERT, ` +
      'AGENTMESH_TLS_KEY and AGENTMESH_TLS_CA (`agentmesh certs DIR` makes development ' +
      'ones), or AGENTMESH_INSECURE=1 to serve plaintext anyway',
  );
}

/**
 * The DNS names in a certificate's subject alternative names (Node's `subjectaltname`
 * text: `DNS:a, IP Address:127.0.0.1`; a name with special characters comes quoted).
 * @param {string | undefined} subjectAltName
 * @returns {string[]}
 */
export function dnsNames(subjectAltName) {
  const names = [];
  for (const match of (subjectAltName ?? '').matchAll(/(?:^|, )DNS:("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
    names.push(match[1].startsWith('"') ? JSON.parse(match[1]) : match[1]);
  }
  return names;
}

/**
 * The worker ids `names` give, in `<worker_id>.worker.<domain>`.
 * @param {string[]} names
 * @param {string} domain
 */
export function workerIds(names, domain) {
  const suffix = `.worker.${domain}`;
  return names
    .filter((name) => name.endsWith(suffix))
    .map((name) => name.slice(0, -suffix.length))
    .filter((id) => id && !id.includes('.'));
}

/**
 * The worker id a worker with TLS on goes by: the one its certificate names, which must
 * be the configured one if there is one; an Error says what is wrong.
 * @param {TlsConfig} tls
 * @param {string} configured AGENTMESH_WORKER_ID, or empty
 */
export function ownWorkerId(tls, configured) {
  const ids = workerIds(dnsNames(new X509Certificate(readFileSync(tls.cert)).subjectAltName), tls.domain).sort();
  const listing = ids.length ? `worker ${ids.join(', ')}` : 'no worker';
  if (configured && !ids.includes(configured)) {
    throw new Error(
      `AGENTMESH_WORKER_ID=${configured}: the certificate AGENTMESH_TLS_CERT=${tls.cert} names ` +
        `${listing}, and the scheduler accepts only that identity`,
    );
  }
  if (!configured && ids.length !== 1) {
    throw new Error(
      `the certificate AGENTMESH_TLS_CERT=${tls.cert} names ${listing}: set AGENTMESH_WORKER_ID, ` +
        `or use a certificate for <id>.worker.${tls.domain}`,
    );
  }
  return configured || ids[0];
}

/**
 * The certificate files of `tls` to follow, read now; null with TLS off. A renewal taken
 * is logged (`certificate files renewed`), and one that is not a certificate with its
 * key is said once, the previous files staying in use.
 * @param {TlsConfig} tls
 * @returns {CertificateFiles | null}
 */
export function certificateFiles(tls) {
  if (!tls.enabled) return null;
  return new CertificateFiles({ ca: tls.ca, cert: tls.cert, key: tls.key }, { log });
}

/**
 * Server credentials: with TLS on, this worker's certificate, and a client certificate
 * signed by the mesh's CA required of every caller (a handshake without one fails
 * before any handler runs); plaintext otherwise. The certificate follows `files`:
 * @grpc/grpc-js's certificate-provider credentials set the server's secure context anew
 * when WatchedCertificates hands over a renewal, and new handshakes present it.
 * @param {TlsConfig} tls
 * @param {CertificateFiles | null} [files] `tls`'s files, shared with the channel to the scheduler
 */
export function serverCredentials(tls, files = certificateFiles(tls)) {
  if (!tls.enabled || !files) return grpc.ServerCredentials.createInsecure();
  const provider = new WatchedCertificates(files, { log });
  // grpc-js 1.14.7 names its parameters (ca, identity) but uses the first as the
  // identity's provider: one provider for both makes the order moot.
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, true);
}

/**
 * The channel to the scheduler, a RenewingChannel of SchedulerService stubs: with TLS
 * on, this worker's certificate, the mesh's CA, and `scheduler.<domain>` as the name the
 * scheduler's certificate must hold, whatever address is dialled; a renewal of `files`
 * opens a new channel for the calls that start after it.
 * @param {string} target host:port
 * @param {grpc.ServiceClientConstructor} Service
 * @param {TlsConfig} tls
 * @param {CertificateFiles | null} [files]
 */
export function schedulerChannel(target, Service, tls, files = certificateFiles(tls)) {
  const options = tls.enabled ? { 'grpc.ssl_target_name_override': schedulerName(tls.domain) } : {};
  return new RenewingChannel({
    files: tls.enabled ? files : null,
    open: (pem) => {
      const credentials = pem
        ? grpc.credentials.createSsl(pem.ca, pem.key, pem.cert)
        : grpc.credentials.createInsecure();
      return /** @type {grpc.Client & Record<string, Function>} */ (new Service(target, credentials, options));
    },
    close: (stub) => stub.close(),
    log: (level, message, fields) => log(level, message, { target, ...fields }),
  });
}

/**
 * The DNS names of the certificate a call's peer presented and gRPC verified; null
 * for a call over plaintext. `call.getAuthContext()` is @grpc/grpc-js's (1.14.7, as
 * package-lock.json pins it): the peer's certificate as Node's TLS socket verified it.
 * @param {{getAuthContext(): {transportSecurityType?: string,
 *   sslPeerCertificate?: {subjectaltname?: string}}}} call
 * @returns {string[] | null}
 */
export function peerNames(call) {
  const auth = call.getAuthContext();
  if (auth?.transportSecurityType !== 'ssl') return null;
  return dnsNames(auth.sslPeerCertificate?.subjectaltname);
}

/**
 * Why a call's peer may not hand this worker work (only the scheduler may), or null
 * when it may; over plaintext (loopback, or AGENTMESH_INSECURE=1) everyone may.
 * @param {Parameters<typeof peerNames>[0]} call
 * @param {string} domain
 * @returns {string | null} a description of the peer, for the refusal
 */
export function notScheduler(call, domain) {
  const names = peerNames(call);
  if (names === null || names.includes(schedulerName(domain))) return null;
  const ours = names.filter((name) => name.endsWith(`.${domain}`));
  return ours.length ? ours.join(', ') : "no name in the mesh's domain";
}
