'use strict';
// The worker: leases external jobs (long-poll), runs an async handler for each, heartbeats
// while handlers run, completes with CompleteAndLease, stops gracefully.

const os = require('node:os');
const crypto = require('node:crypto');
const { EventEmitter } = require('node:events');
const { RaftlineError, statusName } = require('./errors');
const { sleep } = require('./client');

const DEFAULT_TTL_MS = 30000;
// Refusals of a lease call that retrying can't mend.
const FATAL = new Set(['INVALID_ARGUMENT', 'UNAUTHENTICATED', 'PERMISSION_DENIED']);
const ERROR_MAX = 4096;
const OUTPUT_MAX = 4096;

function defaultWorkerId() {
  const host = os.hostname().replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'host';
  return `${host}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
}

function clip(s, max) {
  s = String(s ?? '');
  if (Buffer.byteLength(s) <= max) return s;
  // The tail is what matters for output; keep the last `max` bytes worth of characters.
  return s.slice(-max);
}

function abortError(message) {
  const e = new Error(message);
  e.name = 'AbortError';
  e.code = 'ABORT_ERR';
  return e;
}

/** What a handler gets for one attempt of a job. */
class JobContext {
  constructor(worker, leased, controller) {
    const job = leased.job;
    /** The job id. */
    this.id = job.id;
    /** The attempt number (1 for the first). */
    this.attempt = leased.attempt;
    /** The lease's fencing token. */
    this.token = leased.token;
    this.queue = job.queue;
    /** The payload as a Buffer (empty when none). */
    this.payload = Buffer.isBuffer(job.payload) ? job.payload : Buffer.alloc(0);
    /** The checkpoint stored by an earlier attempt or by checkpoint() (a Buffer), or null. */
    this.lastCheckpoint = leased.checkpoint ?? null;
    this.tags = job.tags || [];
    /** The job as the lease returned it (proto JSON, payload as a Buffer). */
    this.info = job;
    this.job = job;
    /** When the lease ends unless heartbeats extend it (ms since the epoch, as first leased). */
    this.expiresMs = leased.expires_ms;
    this.ttlMs = leased.ttl_ms;
    /** Aborted when the lease is lost (cancelled, expired, taken by another worker) or the job's timeout passes. */
    this.signal = controller.signal;
    this.workerId = worker.workerId;
    this._worker = worker;
    this._lost = false;
  }

  /** The payload as UTF-8 text. */
  text() {
    return this.payload.toString('utf8');
  }

  /** The payload parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }

  /** True once the lease was lost: the result will not be reported. */
  get leaseLost() {
    return this._lost;
  }

  /**
   * Stores progress (Buffer, Uint8Array or string); a later attempt sees it as
   * `lastCheckpoint`. Rejects with a RaftlineError FAILED_PRECONDITION when the lease is
   * lost (the handler should then stop).
   */
  async checkpoint(data) {
    if (this._lost) throw new RaftlineError(`job ${this.id}: lease lost`, { status: 'FAILED_PRECONDITION' });
    try {
      await this._worker.client.checkpoint(this.id, this.token, data);
      this.lastCheckpoint = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    } catch (e) {
      if (e instanceof RaftlineError && (e.status === 'FAILED_PRECONDITION' || e.status === 'NOT_FOUND')) {
        this._worker._lose(this.id, this.token, e.message);
      }
      throw e;
    }
  }
}

/**
 * Runs `handler` for the jobs of `queues`.
 *
 *   const w = new Worker(client, { queues: ['email'], concurrency: 4, handler: async (job) => {...} });
 *   w.start();          // or: await w.run() (resolves after stop())
 *   ...
 *   await w.stop();     // graceful
 *
 * Events: 'completed' (ctx, state), 'failed' (ctx, error, state), 'lost' (ctx, reason),
 * 'released' (jobId), 'warning' (error).
 */
class Worker extends EventEmitter {
  constructor(client, options = {}, handler = undefined, more = undefined) {
    super();
    // Also: new Worker(client, queues, handler, options).
    if (Array.isArray(options) || typeof options === 'string') {
      options = { ...(more || {}), queues: options, handler };
    }
    if (!client) throw new TypeError('raftline: Worker needs a Client');
    if (typeof options.handler !== 'function') throw new TypeError('raftline: Worker needs a handler function');
    this.client = client;
    this.handler = options.handler;
    let queues = options.queues ?? [];
    if (typeof queues === 'string') queues = [queues];
    this.queues = queues;
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.workerId = options.workerId ?? options.worker_id ?? defaultWorkerId();
    this.capabilities = options.capabilities ?? [];
    /** Lease ttl (ms) asked for; 0: each job's own. */
    this.ttl = options.ttl ?? options.ttlMs ?? 0;
    /** Long-poll wait of a lease (ms, at most 60,000). */
    this.pollWait = options.pollWait ?? options.waitMs ?? 5000;
    this.heartbeatInterval = options.heartbeatInterval ?? null;
    this.stats = { leased: 0, succeeded: 0, failed: 0, lost: 0, released: 0, recovered: 0 };
    this._running = new Map(); // job id -> {token, controller, ctx, leasedAt, ttlMs, lost}
    this._stopping = false;
    this._started = false;
    this._abort = new AbortController(); // aborts long-polls and pauses on stop
    // Leases held under this worker id that it never saw (the answer of a lease call was lost):
    // `${id}:${token}` -> the lease calls in flight when a heartbeat first found it.
    this._orphans = new Map();
    this._inflight = new Set(); // sequence numbers of lease calls in flight
    this._seq = 0;
    this._received = new Set(); // `${id}:${token}` of leases answered but not yet registered
    this._checkSoon = 0; // when set: heartbeat at this time (ms) to look for orphans
    this._slots = [];
    this._done = null;
    /** Why the worker stopped on its own (see run()), or null. */
    this.error = null;
  }

  /** Starts the lease loops and the heartbeat; returns the worker. */
  start() {
    if (this._started) return this;
    this._started = true;
    for (let i = 0; i < this.concurrency; i++) this._slots.push(this._slot(i));
    this._hbStop = new AbortController();
    this._hb = this._heartbeatLoop(this._hbStop.signal);
    this._done = this._finish();
    return this;
  }

  /**
   * Starts the worker and resolves once it has stopped. Rejects when the cluster refused the
   * worker's lease itself (a bad queue name or worker id, a token without the worker role): the
   * worker then stops on its own; `worker.error` holds the reason.
   */
  run() {
    this.start();
    return this._done.then(() => {
      if (this.error) throw this.error;
    });
  }

  /**
   * Stops gracefully: no new leases, in-flight handlers finish and complete, leases not started
   * are handed back. Resolves true once done; with `timeout` (ms), resolves false if handlers
   * are still running then (they go on; the worker finishes in the background).
   */
  async stop({ timeout } = {}) {
    this._stopping = true;
    this._abort.abort();
    if (!this._started) return true;
    if (timeout === undefined || timeout === null) {
      await this._done;
      return true;
    }
    let timer;
    const expired = new Promise((resolve) => (timer = setTimeout(() => resolve(false), timeout)));
    try {
      return await Promise.race([this._done.then(() => true), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** True once stop() was called. */
  get stopping() {
    return this._stopping;
  }

  async _finish() {
    await Promise.all(this._slots);
    // Hand back anything still held under this worker id: leases granted to a call whose
    // answer was lost (an aborted long-poll, a node that died after applying the lease).
    try {
      const held = await this.client.heartbeat(this.workerId, { deadline: 5000 });
      await Promise.all(held.map((l) => this._release(l.job_id, l.token)));
    } catch (e) {
      this._warn(e);
    }
    this._hbStop.abort();
    await this._hb;
  }

  _warn(e) {
    if (this.listenerCount('warning')) this.emit('warning', e);
  }

  _interval() {
    if (this.heartbeatInterval) return this.heartbeatInterval;
    let ttl = this.ttl || DEFAULT_TTL_MS;
    for (const r of this._running.values()) if (r.ttlMs && r.ttlMs < ttl) ttl = r.ttlMs;
    return Math.max(100, Math.floor(ttl / 3));
  }

  async _heartbeatLoop(signal) {
    let last = Date.now();
    while (!signal.aborted) {
      await sleep(Math.min(100, this._interval()), signal);
      if (signal.aborted) break;
      const soon = this._checkSoon && Date.now() >= this._checkSoon;
      if (!soon && Date.now() - last < this._interval()) continue;
      this._checkSoon = 0;
      last = Date.now();
      await this._heartbeat();
    }
  }

  async _heartbeat() {
    const sentAt = Date.now();
    let held;
    try {
      held = await this.client.heartbeat(this.workerId, { deadline: Math.max(this._interval(), 5000) });
    } catch (e) {
      this._warn(e);
      return;
    }
    const tokens = new Map(held.map((l) => [l.job_id, l.token]));
    for (const [id, r] of this._running) {
      if (r.leasedAt < sentAt && tokens.get(id) !== r.token) {
        this._lose(id, r.token, 'the heartbeat says the lease is no longer held (cancelled, expired or taken)');
      }
    }
    // Held but unknown: a lease whose answer was lost. Once every lease call that was in
    // flight when a heartbeat first found it has ended without it, hand it back.
    const seen = new Map();
    for (const l of held) {
      const r = this._running.get(l.job_id);
      const key = `${l.job_id}:${l.token}`;
      if ((r && r.token === l.token) || this._received.has(key)) continue;
      const before = this._orphans.get(key);
      if (before && ![...before].some((seq) => this._inflight.has(seq))) {
        await this._release(l.job_id, l.token);
      } else {
        seen.set(key, before || new Set(this._inflight));
      }
    }
    this._orphans = seen;
    if (seen.size && !this._checkSoon) this._checkSoon = Date.now() + 500;
  }

  /** A worker call was retried: its first try may have leased jobs whose answer was lost. */
  _suspect() {
    if (!this._checkSoon) this._checkSoon = Date.now() + 500;
  }

  /** Marks a running attempt lost: its handler's signal is aborted and its result dropped. */
  _lose(id, token, reason) {
    const r = this._running.get(id);
    if (!r || r.token !== token || r.lost) return;
    r.lost = true;
    r.reason = reason;
    r.ctx._lost = true;
    r.controller.abort(abortError(`job ${id}: lease lost: ${reason}`));
  }

  async _release(jobId, token) {
    try {
      await this.client.release(jobId, token);
      this.stats.released++;
      this.emit('released', jobId);
    } catch (e) {
      // FAILED_PRECONDITION: it is no longer ours anyway (maybe a retried release).
      if (!(e instanceof RaftlineError && (e.status === 'FAILED_PRECONDITION' || e.status === 'NOT_FOUND'))) this._warn(e);
    }
  }

  _leaseOpts(waitMs) {
    return {
      workerId: this.workerId,
      queues: this.queues,
      capabilities: this.capabilities,
      max: 1,
      ttl: this.ttl,
      waitMs,
    };
  }

  async _slot() {
    let pending = null; // {req, ctx, firstTry}
    let failures = 0;
    for (;;) {
      const leasing = !this._stopping;
      if (!leasing && !pending) return;
      let res;
      const seq = ++this._seq;
      this._inflight.add(seq);
      const onRetry = () => this._suspect();
      try {
        if (pending) {
          // With a completion aboard the call is not abortable and does not long-poll: a
          // completion is never given up for a stop. An empty answer is followed by a long-poll.
          res = await this.client.completeAndLease([pending.req], leasing ? this._leaseOpts(0) : null, { onRetry });
        } else {
          res = await this.client.completeAndLease([], this._leaseOpts(this.pollWait), { signal: this._abort.signal, onRetry });
        }
        failures = 0;
        for (const lj of res.jobs) this._received.add(`${lj.job.id}:${lj.token}`);
      } catch (e) {
        this._suspect();
        if (e && e.name === 'AbortError') continue; // stopping
        this._warn(e);
        if (!pending && e instanceof RaftlineError && FATAL.has(e.status)) {
          // The lease itself is refused: no retry mends that. Stop, finishing what runs.
          if (!this.error) this.error = e;
          this._stopping = true;
          this._abort.abort();
          continue;
        }
        failures++;
        if (pending && pending.req && !this._retryable(e)) {
          // The request itself was refused (a bug, or a token without the worker role): the
          // attempt can't be reported; its lease will expire.
          this._finishAttempt(pending, null, e);
          pending = null;
        } else if (pending && Date.now() - pending.firstTry > (pending.ctx.ttlMs || DEFAULT_TTL_MS) * 2) {
          // The lease has long expired: someone else runs the job now.
          this._lostAfter(pending, 'no node took the completion before the lease expired');
          pending = null;
        }
        await sleep(Math.min(100 * 2 ** Math.min(failures, 4), 2000), pending ? undefined : this._abort.signal);
        continue;
      } finally {
        this._inflight.delete(seq);
      }
      if (pending) {
        const result = res.completions[0];
        await this._settle(pending, result);
        pending = null;
      }
      for (const lj of res.jobs) {
        this.stats.leased++;
        const key = `${lj.job.id}:${lj.token}`;
        if (this._stopping) {
          await this._release(lj.job.id, lj.token);
          this._received.delete(key);
          continue;
        }
        pending = await this._run(lj, () => this._received.delete(key));
      }
    }
  }

  _retryable(e) {
    return e instanceof RaftlineError && (e.status === 'UNAVAILABLE' || e.status === 'RESOURCE_EXHAUSTED');
  }

  /** Runs the handler for one leased job; resolves the completion to send, or null when lost. */
  async _run(lj, registered) {
    const controller = new AbortController();
    const ctx = new JobContext(this, lj, controller);
    const entry = { token: lj.token, controller, ctx, leasedAt: Date.now(), ttlMs: lj.ttl_ms, lost: false };
    this._running.set(ctx.id, entry);
    registered();
    let req;
    let timer;
    try {
      const work = Promise.resolve().then(() => this.handler(ctx));
      let out;
      const limit = Number(ctx.info.timeout_ms || 0);
      if (limit > 0) {
        // The job's timeout: the worker enforces it (as the nodes' executors do for shell
        // jobs): the signal aborts and the attempt fails as `timeout` without waiting for the
        // handler.
        work.catch(() => {});
        const expired = new Promise((_, reject) => {
          timer = setTimeout(() => {
            const e = new Error(`job ${ctx.id}: timed out after ${limit} ms`);
            e.name = 'TimeoutError';
            e.timeout = true;
            controller.abort(e);
            reject(e);
          }, limit);
        });
        out = await Promise.race([work, expired]);
      } else {
        out = await work;
      }
      req = { job_id: ctx.id, token: ctx.token, success: true };
      if (out !== undefined && out !== null) {
        const text = Buffer.isBuffer(out) ? out.toString('utf8') : typeof out === 'string' ? out : JSON.stringify(out);
        if (text) req.output_tail = clip(text, OUTPUT_MAX);
      }
    } catch (e) {
      req = {
        job_id: ctx.id,
        token: ctx.token,
        success: false,
        error_class: e && e.permanent ? 'permanent' : e && e.timeout ? 'timeout' : 'transient',
        error: clip((e && (e.stack || e.message)) || String(e), ERROR_MAX),
      };
      if (e && Number.isInteger(e.exitCode)) req.exit_code = e.exitCode;
      req._error = e;
    } finally {
      clearTimeout(timer);
    }
    // The entry stays in _running until its completion is settled, so heartbeats don't take
    // the lease for an orphan meanwhile.
    entry.finished = true;
    if (entry.lost) {
      this._forget(ctx);
      this.stats.lost++;
      this.emit('lost', ctx, entry.reason);
      return null;
    }
    const error = req._error;
    delete req._error;
    return { req, ctx, error, firstTry: Date.now() };
  }

  /** Reads what became of a completion the server refused or whose answer was lost. */
  async _settle(pending, result) {
    if (result && result.state) {
      this._finishAttempt(pending, result.state);
      return;
    }
    const code = statusName(result && result.error_code);
    if (code !== 'FAILED_PRECONDITION' && code !== 'NOT_FOUND') {
      this._finishAttempt(pending, null, new RaftlineError(result ? result.error : 'no completion result', { status: code || 'UNKNOWN' }));
      return;
    }
    // Refused for the token. Either our first try was applied and its answer lost (the job's
    // attempt under our token has our result), or the lease ended (expired, cancelled,
    // another worker holds it now).
    let job;
    try {
      job = await this.client.getJob(pending.ctx.id);
    } catch (e) {
      this._warn(e);
      this._lostAfter(pending, result.error);
      return;
    }
    const a = (job.attempts || []).find((x) => x.token === pending.req.token);
    const want = pending.req.success ? 'succeeded' : 'failed';
    const ours = a && a.result === want && (pending.req.success || ['transient', 'permanent', 'timeout'].includes(a.error_class));
    if (ours) {
      this.stats.recovered++;
      this._finishAttempt(pending, job.state);
    } else {
      this._lostAfter(pending, result.error);
    }
  }

  _forget(ctx) {
    const r = this._running.get(ctx.id);
    if (r && r.token === ctx.token) this._running.delete(ctx.id);
  }

  _lostAfter(pending, reason) {
    this._forget(pending.ctx);
    this.stats.lost++;
    this.emit('lost', pending.ctx, reason);
  }

  _finishAttempt(pending, state, refused) {
    this._forget(pending.ctx);
    if (refused) {
      this._warn(refused);
      this.stats.lost++;
      this.emit('lost', pending.ctx, refused.message);
      return;
    }
    if (pending.req.success) {
      this.stats.succeeded++;
      this.emit('completed', pending.ctx, state);
    } else {
      this.stats.failed++;
      this.emit('failed', pending.ctx, pending.error, state);
    }
  }
}

module.exports = { Worker, JobContext, defaultWorkerId };
