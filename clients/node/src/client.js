/**
 * A promise-based client for agentmesh.v1.SchedulerService, the Node
 * counterpart of the Python client (clients/python/src/agentmesh/client.py).
 *
 * Every call has a deadline (the client's default unless the call names
 * one), which the scheduler passes on to the request's subtasks; objects go
 * in and come out plain (see ./convert.js); every failure rejects with an
 * AgentmeshError carrying the status code name and the typed details.
 *
 *     const client = new Client('127.0.0.1:50051');
 *     const request = await client.submit('support_ticket', { text: 'My order ...' });
 *     console.log(request.answer.reply);
 *     client.close();
 *
 * A scheduler that checks callers' tokens needs one: `{token}`, or the
 * AGENTMESH_TOKEN environment variable, sent with every call as
 * `authorization: Bearer <token>` metadata. A mesh with mutual TLS needs the
 * caller's certificate: `{tls: {ca, cert, key}}`, or `{tls: tlsFromEnv()}`
 * for the AGENTMESH_TLS_* variables (see ./security.js).
 *
 * @module
 */

import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { Converter } from './convert.js';
import { fromServiceError } from './errors.js';
import { bearerToken, callMetadata, channelSecurity } from './security.js';

/** Deadline of a call that names none, in seconds (as the Python client's). */
export const DEFAULT_TIMEOUT = 60;

/** The repository's contracts: protos/agentmesh/v1/*.proto. */
export const PROTOS_DIR = fileURLToPath(new URL('../../../protos', import.meta.url));

const PACKAGE = 'agentmesh.v1';

/** Objects as the rest of this package expects them (see ./convert.js). */
const LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS_DIR],
};

/** @type {{Service: grpc.ServiceClientConstructor, converter: Converter} | undefined} */
let loaded;

/** The contracts, parsed once per process: the stub's class and the converter. */
function contracts() {
  if (!loaded) {
    const definitions = protoLoader.loadSync(['agentmesh/v1/scheduler.proto'], LOADER_OPTIONS);
    const proto = /** @type {any} */ (grpc.loadPackageDefinition(definitions));
    loaded = { Service: proto.agentmesh.v1.SchedulerService, converter: new Converter(definitions) };
  }
  return loaded;
}

/**
 * What a request runs: a workflow's name (a string), or exactly one of a
 * workflow, a plan (as Decompose returns it) or a free-form goal.
 * @typedef {string | {workflow: string} | {plan: object} | {goal: string}} Source
 */

/**
 * Options of every call.
 * @typedef {object} CallOptions
 * @property {number} [timeout] the deadline in seconds; the client's default when left out
 */

/**
 * Options of Submit and StreamSubmit.
 * @typedef {object} SubmitOptions
 * @property {string} [requestId] idempotency key: a retry with the same id never runs the request twice
 * @property {string | number} [priority] such as 'PRIORITY_HIGH'
 * @property {number} [costBudgetUsd] the most the request may spend on models; 0 for no limit
 * @property {string | number} [view] how much of the finished request to answer with:
 *   'REQUEST_VIEW_BASIC' (the default: no plan, no subtasks) or 'REQUEST_VIEW_FULL'
 * @property {number} [timeout]
 */

/**
 * Options of GetRequest.
 * @typedef {object} GetRequestOptions
 * @property {string | number} [view] 'REQUEST_VIEW_FULL' (the default: plan and subtasks
 *   included) or 'REQUEST_VIEW_BASIC'
 * @property {string} [tenant] whose request of that id to read (each tenant has its own
 *   ids): an admin's choice; a client may name only its own tenant
 * @property {number} [timeout]
 */

/**
 * Options of Dispatch.
 * @typedef {object} DispatchOptions
 * @property {string} [requestId]
 * @property {string | number} [priority]
 * @property {string | number} [difficulty] such as 'DIFFICULTY_NUANCED'
 * @property {number} [timeout]
 */

/**
 * A request with its plan, subtasks and answer: agentmesh.v1.Request, with
 * `answer` and each subtask's `output` as plain objects, durations in
 * seconds and times as Dates. In the BASIC view (Submit's default) `plan` is
 * null and `subtasks` empty.
 * @typedef {{requestId: string, workflow: string, state: string, plan: object | null,
 *   subtasks: object[], answer: Record<string, any> | null, usage: object | null,
 *   error: {code: string, message: string} | null, createdAt: Date | null,
 *   finishedAt: Date | null, costBudgetUsd: number}} Request
 */

/**
 * One message of StreamSubmit: `event` names the field that is set, 'plan'
 * first, then 'subtask' events, then 'result' (the finished Request).
 * @typedef {{requestId: string, event: 'plan' | 'subtask' | 'result', plan?: object,
 *   subtask?: {subtaskId: string, capability: string, kind: string, workerId: string,
 *   attempt: number, message: string}, result?: Request}} StreamEvent
 */

/** @param {Source} source */
function sourceFields(source) {
  if (typeof source === 'string') return { workflow: source };
  const keys = Object.keys(source ?? {});
  if (keys.length !== 1 || !['workflow', 'plan', 'goal'].includes(keys[0])) {
    throw new TypeError('a source is a workflow name, or one of {workflow}, {plan} or {goal}');
  }
  return source;
}

/** A client of one scheduler; `close()` it when done. */
export class Client {
  /** @type {grpc.Client & Record<string, Function>} */
  #stub;
  /** @type {Converter} */
  #converter;
  /** The bearer token sent with every call; empty for none. */
  #token;

  /**
   * @param {string} target the scheduler's address, such as '127.0.0.1:50051'
   * @param {object} [options]
   * @param {number} [options.timeout] default deadline of a call, in seconds (60)
   * @param {string} [options.token] the bearer token sent with every call (default:
   *   AGENTMESH_TOKEN, if set; '' sends none)
   * @param {import('./security.js').TlsOptions | null} [options.tls] mutual TLS with this
   *   caller's certificate (such as `tlsFromEnv()`); plaintext when left out
   * @param {grpc.ChannelCredentials} [options.credentials] other channel credentials, instead of `tls`
   * @param {grpc.ChannelOptions} [options.channelOptions]
   */
  constructor(target, { timeout = DEFAULT_TIMEOUT, token, tls, credentials, channelOptions } = {}) {
    const { Service, converter } = contracts();
    /** Default deadline of a call, in seconds. */
    this.timeout = timeout;
    this.#converter = converter;
    this.#token = bearerToken(token);
    const security = channelSecurity(tls);
    this.#stub = /** @type {any} */ (
      new Service(target, credentials ?? security.credentials, { ...security.options, ...channelOptions })
    );
  }

  /**
   * Runs a workflow (by name), a plan or a goal on an input; resolves to the
   * finished request, without its plan and subtasks unless `view` is
   * 'REQUEST_VIEW_FULL'.
   * @param {Source} source
   * @param {Record<string, any>} input the request's input, such as {text: '...'}
   * @param {SubmitOptions} [options]
   * @returns {Promise<Request>}
   */
  async submit(source, input, { timeout, ...options } = {}) {
    const request = { ...options, ...sourceFields(source), input };
    return (await this.#unary('Submit', request, timeout)).request;
  }

  /**
   * Progress events, then the finished request as the last one (BASIC unless
   * `view` is 'REQUEST_VIEW_FULL': the events carry the plan and every
   * subtask's progress). Leaving the
   * loop early (break, return, throw) cancels the request and its running
   * subtasks; a failure is thrown from the loop after the events so far.
   * @param {Source} source
   * @param {Record<string, any>} input
   * @param {SubmitOptions} [options]
   * @returns {AsyncGenerator<StreamEvent, void, undefined>}
   */
  async *streamSubmit(source, input, { timeout, ...options } = {}) {
    const request = this.#toWire('StreamSubmitRequest', { ...options, ...sourceFields(source), input });
    const call = this.#stub.StreamSubmit(request, callMetadata(this.#token), { deadline: this.#deadline(timeout) });
    try {
      for await (const message of call) {
        yield this.#converter.fromWire(`${PACKAGE}.StreamSubmitResponse`, message);
      }
    } catch (error) {
      throw fromServiceError(/** @type {grpc.ServiceError} */ (error));
    } finally {
      // Cancelling makes grpc-js report a CANCELLED status as an 'error'
      // event after the loop is left: expected, so heard and dropped here
      // rather than left to whatever listener the stream still has.
      call.on('error', () => {});
      call.cancel();
    }
  }

  /**
   * A request's state and, once finished, its result: plan and subtasks
   * included unless `view` is 'REQUEST_VIEW_BASIC'.
   * @param {string} requestId
   * @param {GetRequestOptions} [options]
   * @returns {Promise<Request>}
   */
  async getRequest(requestId, { timeout, ...options } = {}) {
    return (await this.#unary('GetRequest', { ...options, requestId }, timeout)).request;
  }

  /**
   * The plan a workflow (or a planner, for a goal) makes for an input, or a
   * plan checked and normalised; it may be edited and passed to submit as
   * {plan}.
   * @param {Source} source
   * @param {Record<string, any>} input
   * @param {CallOptions} [options]
   * @returns {Promise<object>} an agentmesh.v1.Plan
   */
  async decompose(source, input, { timeout } = {}) {
    return (await this.#unary('Decompose', { ...sourceFields(source), input }, timeout)).plan;
  }

  /**
   * One subtask, routed to the best worker offering the capability, with
   * retries; resolves to its output (a plain object), worker, model,
   * attempts, usage and duration.
   * @param {string} capability such as 'sentiment'
   * @param {Record<string, any>} input
   * @param {DispatchOptions} [options]
   * @returns {Promise<{requestId: string, output: Record<string, any> | null, workerId: string,
   *   model: string, attempts: number, usage: object | null, duration: number | null}>}
   */
  async dispatch(capability, input, { timeout, ...options } = {}) {
    return this.#unary('Dispatch', { ...options, capability, input }, timeout);
  }

  /**
   * The registered workers with their health; only those offering the
   * capability when one is named.
   * @param {string} [capability]
   * @param {CallOptions} [options]
   * @returns {Promise<object[]>} agentmesh.v1.WorkerStatus objects
   */
  async listWorkers(capability = '', { timeout } = {}) {
    return (await this.#unary('ListWorkers', { capability }, timeout)).workers;
  }

  /**
   * Queues, request outcomes, rate, latency percentiles (seconds) and the
   * most recent requests (0 for the scheduler's default of 20).
   * @param {number} [recentRequests]
   * @param {CallOptions} [options]
   * @returns {Promise<object>} an agentmesh.v1.GetStatsResponse
   */
  async getStats(recentRequests = 0, { timeout } = {}) {
    return this.#unary('GetStats', { recentRequests }, timeout);
  }

  /** Closes the channel; calls in flight are cancelled. */
  close() {
    this.#stub.close();
  }

  /**
   * A unary call with the client's default deadline; errors as AgentmeshError.
   * @param {string} method @param {object} request @param {number | undefined} timeout
   * @returns {Promise<any>}
   */
  #unary(method, request, timeout) {
    const wire = this.#toWire(`${method}Request`, request);
    return new Promise((resolve, reject) => {
      this.#stub[method](wire, callMetadata(this.#token), { deadline: this.#deadline(timeout) }, (
        /** @type {grpc.ServiceError | null} */ error,
        /** @type {any} */ response,
      ) => {
        if (error) reject(fromServiceError(error));
        else resolve(this.#converter.fromWire(`${PACKAGE}.${method}Response`, response));
      });
    });
  }

  /** @param {string} typeName @param {object} request */
  #toWire(typeName, request) {
    return this.#converter.toWire(`${PACKAGE}.${typeName}`, request);
  }

  /** @param {number | undefined} timeout seconds */
  #deadline(timeout) {
    return Date.now() + (timeout ?? this.timeout) * 1000;
  }
}
