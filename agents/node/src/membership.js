/**
 * A worker's place in the mesh: Register, then one Heartbeat stream kept open.
 *
 * Each beat carries the worker's health; the scheduler answers each with a
 * directive. When the stream is lost, or the scheduler answers
 * HEARTBEAT_DIRECTIVE_REGISTER (it evicted the worker, or it restarted), the worker
 * registers again and opens a new stream. Closing the stream (after a last beat that
 * says "draining", and its answer) is how a worker leaves: the scheduler removes it at
 * once.
 *
 * With TLS on, the calls go over a RenewingChannel: each Register, and each new
 * Heartbeat stream, takes the channel opened with the worker's current certificate
 * files (looked at, at most once a second, and at once after a failed call, when a
 * refused handshake may mean the old certificate expired); a stream keeps its channel
 * to its end.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { v1 } from './protos.js';
import { schedulerChannel } from './tls.js';
import { fromDuration } from './struct.js';
import { log } from './log.js';

const REGISTER_TIMEOUT_MS = 5_000;

export class Membership {
  /**
   * @param {string} scheduler host:port
   * @param {() => object} info the WorkerInfo to register, read afresh for each Register
   * @param {() => object} health the WorkerHealth to report, read afresh for each beat
   * @param {import('./tls.js').TlsConfig} tls with TLS on, the worker's certificate is its
   *   credential for Register and Heartbeat, and the scheduler's must name scheduler.<domain>
   * @param {import('../../../clients/node/src/certfiles.js').CertificateFiles | null} [files] `tls`'s files, shared with
   *   the server (read here when left out)
   */
  constructor(scheduler, info, health, tls, files) {
    /** The channel to the scheduler, new after each renewal of the certificate files. */
    this.channel = schedulerChannel(scheduler, v1.SchedulerService, tls, files);
    this.info = info;
    this.health = health;
    /** Seconds between beats; the scheduler's answers set it. */
    this.heartbeatInterval = 1;
    /** Times the worker registered (the first, and each re-registration). */
    this.registrations = 0;
    this.stopping = false;
    /** @type {(() => void) | null} sends a beat now, on the open stream */
    this.wake = null;
    /** @type {Promise<void> | null} */
    this.loop = null;
    /** @type {(() => void) | null} */
    this.interrupt = null;
  }

  /** Register and keep beating, in the background. */
  start() {
    this.loop = this.forever();
  }

  /** Send a beat without waiting for the interval (such as "draining"). */
  beatNow() {
    this.wake?.();
  }

  /**
   * Send a last beat, close the stream once it is answered (the scheduler removes the
   * worker), stop.
   * @param {number} [timeoutMs]
   */
  async stop(timeoutMs = 2_000) {
    this.stopping = true;
    this.interrupt?.();
    this.wake?.();
    await Promise.race([this.loop, sleep(timeoutMs, undefined, { ref: false })]);
    this.channel.close();
  }

  async forever() {
    while (!this.stopping) {
      if (!(await this.register())) return;
      await this.stream();
      if (!this.stopping) await this.pause(200);
    }
  }

  /**
   * Register, retrying with backoff until the scheduler answers.
   * @returns {Promise<boolean>} false when stopped first
   */
  async register() {
    let delay = 100;
    while (!this.stopping) {
      const info = this.info();
      const { stub, release } = this.channel.acquire();
      try {
        const response = await new Promise((resolve, reject) => {
          const deadline = new Date(Date.now() + REGISTER_TIMEOUT_MS);
          stub.Register({ worker: info }, { deadline }, (/** @type {any} */ error, /** @type {any} */ reply) =>
            error ? reject(error) : resolve(reply),
          );
        });
        release();
        this.heartbeatInterval = fromDuration(response.heartbeat_interval) || this.heartbeatInterval;
        this.registrations += 1;
        log('info', 'registered', { worker_id: info.worker_id, address: info.address });
        return true;
      } catch (error) {
        release();
        this.channel.renew(true); // a refused handshake: perhaps a renewed certificate
        log('warning', 'cannot register with the scheduler; retrying', {
          error: String(/** @type {any} */ (error).details ?? error),
        });
        await this.pause(delay);
        delay = Math.min(delay * 2, 2_000);
      }
    }
    return false;
  }

  /**
   * One Heartbeat stream, until it ends, fails, or the scheduler asks to register again.
   * @returns {Promise<void>}
   */
  stream() {
    return new Promise((resolve) => {
      const workerId = /** @type {any} */ (this.info()).worker_id;
      const { stub, release } = this.channel.acquire();
      const call = stub.Heartbeat();
      /** @type {NodeJS.Timeout | undefined} */
      let timer;
      let closed = false;
      const finish = () => {
        if (closed) return;
        closed = true;
        clearTimeout(timer);
        this.wake = null;
        release();
        resolve();
      };
      let sent = 0;
      let answered = 0;
      let last = 0; // the last beat, once stopping: the stream closes when it is answered
      const beat = () => {
        if (closed || last) return;
        clearTimeout(timer);
        call.write({ worker_id: workerId, health: this.health() });
        sent += 1;
        if (this.stopping) {
          last = sent;
          return;
        }
        timer = setTimeout(beat, this.heartbeatInterval * 1000);
      };
      this.wake = beat;
      call.on('data', (/** @type {any} */ reply) => {
        answered += 1; // the scheduler answers each beat, in order
        if (last && answered >= last) {
          // The answers to the calls in flight left before this beat: the scheduler
          // has them by now, and closing the stream (which evicts) loses nothing.
          call.end();
          return;
        }
        if (reply.directive === 'HEARTBEAT_DIRECTIVE_REGISTER') {
          log('warning', 'the scheduler does not know this worker; registering again');
          finish();
          call.cancel(); // this stream no longer speaks for the worker
          return;
        }
        this.heartbeatInterval = fromDuration(reply.heartbeat_interval) || this.heartbeatInterval;
      });
      call.on('error', (/** @type {any} */ error) => {
        if (!closed && !this.stopping) {
          log('warning', 'heartbeat stream lost; registering again', { error: error.details });
          this.channel.renew(true); // the next calls are a new handshake perhaps
        }
        finish();
      });
      call.on('status', finish);
      beat();
    });
  }

  /**
   * Wait, unless stop() interrupts.
   * @param {number} ms
   */
  pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve(undefined);
      }
      this.interrupt = done;
    });
  }
}
