/**
 * The worker: serves WorkerService.Execute (with health and reflection), registers
 * and heartbeats through `Membership`, and drains on `shutdown()`.
 *
 * Each subtask runs once per (request_id, subtask_id): a finished result is kept (the
 * last `resultsKept`, in memory) and answered again, marked `replayed`; a repeat of a
 * subtask still running waits for that run; the same ids with another capability or
 * input are refused with FAILED_PRECONDITION. Capacity bounds the subtasks running at
 * once; the rest wait inside the worker and are reported as its queue.
 */

import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import { HEALTH_SERVICE, WORKER_SERVICE, packageDefinition, v1 } from './protos.js';
import { Membership } from './membership.js';
import { CAPABILITY, checkInput, detectLanguage, outputViolations } from './skill.js';
import { WorkerError, toServiceError } from './status.js';
import { canonicalJson, fromStruct, toDuration, toStruct } from './struct.js';
import { certificateFiles, notScheduler, serverCredentials } from './tls.js';
import { log } from './log.js';
import { WorkerMetrics } from './metrics.js';

const { status } = grpc;

/**
 * @typedef {{capability: string, digest: string, response: object}} Stored
 * @typedef {{capability: string, digest: string, promise: Promise<object>,
 *            controller: AbortController, callers: number}} Running
 */

export class Worker {
  /** @param {import('./config.js').WorkerConfig} config */
  constructor(config) {
    this.config = config;
    this.workerId = config.workerId;
    this.capacity = config.capacity;
    this.address = '';
    this.bound = '';
    this.draining = false;
    this.inFlight = 0;
    this.waiting = 0;
    /** @type {(() => void)[]} callers waiting for a free slot */
    this.queue = [];
    /** @type {Map<string, Stored>} oldest first */
    this.results = new Map();
    /** @type {Map<string, Running>} */
    this.running = new Map();
    /** @type {Set<Promise<void>>} Execute calls not answered yet */
    this.calls = new Set();
    this.latency = 0.05; // seconds, an EWMA of successful subtasks
    this.errorRate = 0; // an EWMA of failures, 0 to 1
    this.server = new grpc.Server();
    this.server.addService(v1.WorkerService.service, {
      Execute: (/** @type {any} */ call, /** @type {any} */ callback) => this.handle(call, callback),
    });
    this.health = new HealthImplementation({ '': 'NOT_SERVING', [WORKER_SERVICE]: 'NOT_SERVING' });
    this.health.addToServer(this.server);
    new ReflectionService(packageDefinition, { services: [WORKER_SERVICE, HEALTH_SERVICE] }).addToServer(
      this.server,
    );
    /** The certificate files (TLS on), followed by the server and the channel to the scheduler alike. */
    this.files = certificateFiles(config.tls);
    this.membership = new Membership(config.scheduler, () => this.info(), () => this.healthReport(), config.tls, this.files);
    /** @type {Promise<void> | null} */
    this.stopped = null;
    this.metrics = new WorkerMetrics({ workerId: this.workerId, backend: 'node', model: '', tier: 'builtin' }, () => this);
    this.metricsAddress = ''; // host:port of /metrics once served; empty when off
  }

  /** What the worker declares when it registers (agentmesh.v1.WorkerInfo). */
  info() {
    return {
      worker_id: this.workerId,
      address: this.address,
      capabilities: [CAPABILITY],
      backend: 'node',
      model: '', // no model: the keyword method runs in the process
      tier: 'TIER_BUILTIN',
      capacity: this.capacity,
      input_price_per_mtok: 0,
      output_price_per_mtok: 0,
    };
  }

  /** What each beat reports (agentmesh.v1.WorkerHealth). */
  healthReport() {
    return {
      in_flight: this.inFlight,
      capacity: this.capacity,
      queue_length: this.waiting,
      latency_estimate: toDuration(this.latency),
      error_rate: this.errorRate,
      draining: this.draining,
    };
  }

  /** Serve on the configured address (port 0 takes a free one), then register and beat. */
  async start() {
    const port = await new Promise((resolve, reject) =>
      this.server.bindAsync(this.config.listen, serverCredentials(this.config.tls, this.files), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    const host = this.config.listen.slice(0, this.config.listen.lastIndexOf(':'));
    this.bound = `${host}:${port}`; // the listen address with the port bound, as announced
    this.address = this.config.advertise || this.bound;
    if (this.config.metricsListen) this.metricsAddress = await this.metrics.serve(this.config.metricsListen);
    this.health.setStatus('', 'SERVING');
    this.health.setStatus(WORKER_SERVICE, 'SERVING');
    this.membership.start();
  }

  /**
   * The Execute handler: the answer, or the error as a status with its details.
   * @param {grpc.ServerUnaryCall<any, any>} call
   * @param {grpc.sendUnaryData<any>} callback
   */
  handle(call, callback) {
    // With TLS on, only the scheduler's certificate may hand this worker work.
    const peer = notScheduler(call, this.config.tls.domain);
    if (peer !== null) {
      log('warning', 'call refused for its certificate', { reason: 'not_scheduler' });
      this.metrics.authDenied.labels('not_scheduler').inc();
      const refusal = `this certificate (${peer}) may not call this method`;
      callback(toServiceError(new WorkerError(status.PERMISSION_DENIED, refusal, { reason: 'NOT_SCHEDULER' })));
      return;
    }
    const answered = this.answer(call, callback);
    this.calls.add(answered);
    answered.finally(() => this.calls.delete(answered));
  }

  /**
   * @param {grpc.ServerUnaryCall<any, any>} call
   * @param {grpc.sendUnaryData<any>} callback
   */
  async answer(call, callback) {
    const deadline = call.getDeadline();
    const ms = deadline instanceof Date ? deadline.getTime() : Number(deadline);
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    /** @type {Promise<never>} rejects when the caller is gone: cancelled or out of time */
    const gone = new Promise((_, reject) => {
      call.on('cancelled', () => reject(new WorkerError(status.CANCELLED, 'the call was cancelled')));
      if (Number.isFinite(ms)) {
        const left = Math.max(ms - Date.now(), 0);
        const late = 'the deadline passed before the output was ready';
        timer = setTimeout(() => reject(new WorkerError(status.DEADLINE_EXCEEDED, late)), left);
      }
    });
    gone.catch(() => {}); // a caller that leaves after its answer is nobody's concern
    try {
      callback(null, await this.execute(call.request, gone));
    } catch (error) {
      if (!(error instanceof WorkerError)) log('error', 'subtask failed', { error: String(error) });
      callback(toServiceError(error));
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Run one subtask, or answer a repeat of it.
   * @param {any} request agentmesh.v1.ExecuteRequest, decoded
   * @param {Promise<never>} gone rejects when the caller leaves
   * @returns {Promise<object>} agentmesh.v1.ExecuteResponse
   */
  async execute(request, gone) {
    const missing = ['request_id', 'subtask_id'].filter((name) => !request[name]);
    if (missing.length) {
      throw new WorkerError(status.INVALID_ARGUMENT, 'Execute needs a request_id and a subtask_id', {
        violations: missing.map((field) => ({
          field,
          description: 'must not be empty: it is part of the idempotency key',
        })),
        reason: 'MISSING_ID',
      });
    }
    const key = `${request.request_id}\u0000${request.subtask_id}`;
    const input = fromStruct(request.input);
    const digest = createHash('sha256').update(canonicalJson(input)).digest('hex');
    const stored = this.results.get(key);
    if (stored) {
      sameWork(request, digest, stored, 'finished');
      this.metrics.replays.inc();
      return { ...stored.response, replayed: true };
    }
    const running = this.running.get(key);
    if (running) {
      sameWork(request, digest, running, 'running');
      this.metrics.replays.inc();
      return { ...(await this.follow(running, gone)), replayed: true };
    }
    if (this.draining) {
      throw new WorkerError(status.UNAVAILABLE, `worker ${this.workerId} is draining`, { reason: 'DRAINING' });
    }
    if (request.capability !== CAPABILITY) {
      throw new WorkerError(
        status.UNIMPLEMENTED,
        `worker ${this.workerId} does not offer ${JSON.stringify(request.capability)}; it offers ${CAPABILITY}`,
        { reason: 'CAPABILITY_NOT_OFFERED' },
      );
    }
    checkInput(input);
    const controller = new AbortController();
    /** @type {Running} */
    const entry = {
      capability: request.capability,
      digest,
      controller,
      callers: 0,
      promise: this.runAndKeep(key, request.capability, digest, input, controller.signal),
    };
    entry.promise.catch(() => {}); // each caller sees the failure through follow()
    this.running.set(key, entry);
    return this.follow(entry, gone);
  }

  /**
   * Wait for a running subtask on behalf of one caller; when its last caller leaves
   * (cancelled, or past its deadline), the work is stopped.
   * @param {Running} entry
   * @param {Promise<never>} gone
   */
  async follow(entry, gone) {
    entry.callers += 1;
    try {
      return await Promise.race([entry.promise, gone]);
    } catch (error) {
      if (error instanceof WorkerError && (error.code === status.CANCELLED || error.code === status.DEADLINE_EXCEEDED)) {
        if (entry.callers === 1) entry.controller.abort(error);
      }
      throw error;
    } finally {
      entry.callers -= 1;
    }
  }

  /**
   * @param {string} key
   * @param {string} capability
   * @param {string} digest
   * @param {import('./struct.js').JsonObject} input
   * @param {AbortSignal} signal
   */
  async runAndKeep(key, capability, digest, input, signal) {
    try {
      const response = await this.run(input, signal);
      // Kept before the reply: a repeat after a lost reply is answered from here.
      this.results.set(key, { capability, digest, response });
      while (this.results.size > this.config.resultsKept) {
        this.results.delete(this.results.keys().next().value ?? '');
      }
      return response;
    } finally {
      this.running.delete(key);
    }
  }

  /**
   * One subtask in a slot: the skill, its output checked against the output schema.
   * @param {import('./struct.js').JsonObject} input
   * @param {AbortSignal} signal
   */
  async run(input, signal) {
    await this.acquire(signal);
    const started = performance.now();
    let code = 'OK'; // the status code's name, as agentmesh_worker_subtasks_total counts it
    try {
      // Cut short when the call is: its reason (not the timer's AbortError) is thrown below.
      if (this.config.delay > 0) await sleep(this.config.delay * 1000, undefined, { signal }).catch(() => {});
      signal.throwIfAborted();
      const output = detectLanguage(String(input.text));
      const problems = outputViolations(output);
      if (problems.length) {
        throw new WorkerError(
          status.INTERNAL,
          `output for ${CAPABILITY} fails its schema: ${problems.join('; ')}`,
          { reason: 'OUTPUT_INVALID' },
        );
      }
      const elapsed = (performance.now() - started) / 1000;
      this.latency = 0.8 * this.latency + 0.2 * elapsed;
      return {
        output: toStruct(output),
        usage: { input_tokens: 0, output_tokens: 0, cost_usd: 0 }, // no model, no tokens
        model: '',
        duration: toDuration(elapsed),
        replayed: false,
      };
    } catch (error) {
      // The Python worker's codes: CANCELLED however the caller left, INTERNAL for the unforeseen.
      code = signal.aborted ? 'CANCELLED' : error instanceof WorkerError ? status[error.code] : 'INTERNAL';
      throw error;
    } finally {
      // a cancelled subtask says nothing about the worker
      if (!signal.aborted) this.errorRate = 0.9 * this.errorRate + (code === 'OK' ? 0 : 0.1);
      this.release();
      this.metrics.ran(CAPABILITY, code, (performance.now() - started) / 1000);
    }
  }

  /**
   * A slot, waiting (as the worker's queue) while all `capacity` are taken.
   * @param {AbortSignal} signal
   */
  async acquire(signal) {
    if (this.inFlight < this.capacity && this.queue.length === 0) {
      this.inFlight += 1;
      return;
    }
    this.waiting += 1;
    try {
      await new Promise((resolve, reject) => {
        const grant = () => {
          signal.removeEventListener('abort', leave);
          resolve(undefined);
        };
        const leave = () => {
          this.queue.splice(this.queue.indexOf(grant), 1);
          reject(signal.reason);
        };
        this.queue.push(grant);
        signal.addEventListener('abort', leave, { once: true });
      });
    } finally {
      this.waiting -= 1;
    }
  }

  release() {
    const next = this.queue.shift();
    if (next) next(); // the slot passes on: in_flight stays the same
    else this.inFlight -= 1;
  }

  /**
   * Drain and stop: health NOT_SERVING, a beat that says "draining" (the scheduler
   * sends no more work), in-flight subtasks finish (up to the drain timeout), the
   * Heartbeat stream closes (the scheduler removes the worker), the server stops.
   * Safe to call more than once.
   * @returns {Promise<void>}
   */
  shutdown() {
    this.stopped ??= this.drain();
    return this.stopped;
  }

  async drain() {
    this.draining = true;
    this.health.setStatus('', 'NOT_SERVING');
    this.health.setStatus(WORKER_SERVICE, 'NOT_SERVING');
    this.membership.beatNow();
    log('info', 'draining', { worker_id: this.workerId, in_flight: this.running.size });
    const grace = this.config.drainTimeout * 1000;
    // Every call answered, not only the work done: the scheduler must have the answer
    // before the stream closes, or it evicts the worker and re-queues the subtask.
    await Promise.race([Promise.all(this.calls), sleep(grace)]);
    for (const r of this.running.values()) r.controller.abort(new WorkerError(status.UNAVAILABLE, 'the worker stopped'));
    await this.membership.stop();
    await new Promise((resolve) => {
      const force = setTimeout(() => this.server.forceShutdown(), 1_000);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve(undefined);
      });
    });
    this.metrics.close();
    log('info', 'stopped', { worker_id: this.workerId });
  }
}

/**
 * Refuse a repeat whose ids name a subtask that ran (or runs) other work.
 * @param {any} request
 * @param {string} digest
 * @param {{capability: string, digest: string}} kept
 * @param {string} state
 */
function sameWork(request, digest, kept, state) {
  if (request.capability === kept.capability && digest === kept.digest) return;
  const what = request.capability !== kept.capability ? 'capability' : 'input';
  throw new WorkerError(
    status.FAILED_PRECONDITION,
    `subtask ${JSON.stringify(request.subtask_id)} of request ${JSON.stringify(request.request_id)} is ` +
      `${state} on this worker with another ${what} (${JSON.stringify(kept.capability)}); a repeat must ` +
      'send the same capability and input, and new work needs new ids',
    { reason: 'SUBTASK_MISMATCH', metadata: { capability: request.capability, differs: what } },
  );
}
