/**
 * @agentmesh/client: a Node.js client for the agentmesh scheduler.
 * @module
 */

export { Client, DEFAULT_TIMEOUT, PROTOS_DIR } from './client.js';
export { AgentmeshError, RETRYABLE_CODES, decodeStatus, fromServiceError } from './errors.js';
export { tlsFromEnv } from './security.js';
export { fromStruct, fromValue, toStruct, toValue } from './convert.js';
