/**
 * A caller's credentials, as the Python client has them
 * (clients/python/src/agentmesh/tls.py, client.py): a bearer token sent as
 * `authorization: Bearer <token>` metadata, and mutual TLS with the caller's
 * certificate (`<name>.client.<domain>`, signed by the mesh's CA), in the same
 * AGENTMESH_TOKEN and AGENTMESH_TLS_* variables.
 *
 * @module
 */

import { readFileSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';

import { CertificateFiles } from './certfiles.js';

/**
 * Mutual TLS to the scheduler. `ca`, `cert` and `key` are PEM files (paths) or
 * their contents (Buffers), all three or none.
 * @typedef {object} TlsOptions
 * @property {string | Buffer} ca the mesh's CA certificate(s), that the scheduler's certificate must chain to
 * @property {string | Buffer} cert this caller's certificate chain
 * @property {string | Buffer} key its private key
 * @property {string} [serverName] the name the scheduler's certificate must hold; the host dialled when left out
 */

/**
 * The TLS settings in AGENTMESH_TLS_CA, _CERT, _KEY and _SERVER_NAME, for the
 * `tls` option of a Client; null when none is set (plaintext). An Error names
 * what is missing when only some are.
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {TlsOptions | null}
 */
export function tlsFromEnv(env = process.env) {
  const read = (/** @type {string} */ name) => (env[`AGENTMESH_TLS_${name}`] ?? '').trim();
  const [ca, cert, key] = [read('CA'), read('CERT'), read('KEY')];
  if (!ca && !cert && !key) return null;
  const serverName = read('SERVER_NAME');
  return checkedTls({ ca, cert, key, ...(serverName ? { serverName } : {}) }, 'AGENTMESH_TLS_');
}

/**
 * @param {TlsOptions} tls
 * @param {string} prefix how the missing parts are named: 'tls.' or 'AGENTMESH_TLS_'
 * @returns {TlsOptions}
 */
function checkedTls(tls, prefix) {
  const missing = /** @type {const} */ (['cert', 'key', 'ca']).filter((part) => !tls[part]);
  if (missing.length) {
    const names = missing.map((part) => (prefix === 'tls.' ? `tls.${part}` : `${prefix}${part.toUpperCase()}`));
    throw new TypeError(`TLS needs a certificate, its key and the mesh's CA together: set ${names.join(', ')}`);
  }
  return tls;
}

/** @param {string | Buffer} pem a path, or the PEM itself */
function pemOf(pem) {
  return typeof pem === 'string' ? readFileSync(pem) : pem;
}

/**
 * Channel credentials and options: mutual TLS when `tls` is given (with
 * `grpc.ssl_target_name_override` when it names a server), else plaintext.
 * @param {TlsOptions | null | undefined} tls
 * @param {import('./certfiles.js').Pem | null} [pem] the files of `tls` as read
 *   (CertificateFiles); read here when left out
 * @returns {{credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions}}
 */
export function channelSecurity(tls, pem = null) {
  if (!tls) return { credentials: grpc.credentials.createInsecure(), options: {} };
  const { ca, cert, key, serverName } = checkedTls(tls, 'tls.');
  const read = pem ?? { ca: pemOf(ca), cert: pemOf(cert), key: pemOf(key) };
  return {
    credentials: grpc.credentials.createSsl(read.ca, read.key, read.cert),
    options: serverName ? { 'grpc.ssl_target_name_override': serverName } : {},
  };
}

/**
 * The files of `tls` to follow for renewals, when its CA, certificate and key are all
 * paths (read now); null for plaintext or PEM given as contents, which cannot change.
 * A renewal that is not a certificate with its key is said once as a process warning
 * (`AgentmeshCertificateWarning`).
 * @param {TlsOptions | null | undefined} tls
 * @returns {CertificateFiles | null}
 */
export function certificateFiles(tls) {
  if (!tls) return null;
  const { ca, cert, key } = checkedTls(tls, 'tls.');
  if (typeof ca !== 'string' || typeof cert !== 'string' || typeof key !== 'string') return null;
  return new CertificateFiles({ ca, cert, key }, { log: warnOnly });
}

/** @type {import('./certfiles.js').Logger} */
function warnOnly(level, message, fields) {
  if (level === 'warning') {
    process.emitWarning(`${message} (${JSON.stringify(fields)})`, 'AgentmeshCertificateWarning');
  }
}

/**
 * The bearer token a client sends: `token` when given (an empty string sends
 * none), else AGENTMESH_TOKEN if it is set.
 * @param {string | undefined} token
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {string}
 */
export function bearerToken(token, env = process.env) {
  return (token ?? env.AGENTMESH_TOKEN ?? '').trim();
}

/**
 * The metadata of one call: `authorization: Bearer <token>` when there is a token.
 * @param {string} token
 * @returns {grpc.Metadata}
 */
export function callMetadata(token) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}
