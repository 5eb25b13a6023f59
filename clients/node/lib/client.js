'use strict';
// The raftline REST client: HTTP/1.1 keep-alive to every node, failover between them.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const crypto = require('node:crypto');
const { RaftlineError } = require('./errors');

const DEFAULT_DEADLINE_MS = 30000;
const DEFAULT_TIMEOUT_MS = 10000;
const BATCH_MAX = 1000;
const TERMINAL = new Set(['succeeded', 'dead', 'cancelled']);
const TLS_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal && signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      if (signal) signal.removeEventListener('abort', done);
      resolve();
    }
    if (signal) signal.addEventListener('abort', done, { once: true });
  });
}

/** `127.0.0.1:7301` or `http(s)://host:port[/]` -> {protocol, hostname, port, label}. */
function parseAddr(addr, tlsDefault) {
  let s = String(addr).trim();
  if (!s) throw new TypeError('raftline: empty address');
  if (!/^[a-z]+:\/\//i.test(s)) s = `${tlsDefault ? 'https' : 'http'}://${s}`;
  const u = new URL(s);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new TypeError(`raftline: address ${addr}: scheme must be http or https`);
  }
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  // URL keeps IPv6 hosts in brackets; node:http wants them bare.
  const hostname = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return { protocol: u.protocol, hostname, port, label: `${u.protocol}//${u.host}` };
}

/** Date | number (ms since the epoch) -> ms. */
function toMs(v, name) {
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string') return v;
  throw new TypeError(`raftline: ${name} must be a Date or milliseconds`);
}

/** Buffer | Uint8Array | string (UTF-8) | null -> base64. */
function toBase64(v, name) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return Buffer.from(v, 'utf8').toString('base64');
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  if (v instanceof ArrayBuffer) return Buffer.from(v).toString('base64');
  throw new TypeError(`raftline: ${name} must be a Buffer, Uint8Array or string`);
}

function fromBase64(v) {
  return typeof v === 'string' ? Buffer.from(v, 'base64') : v;
}

/** A job as the API returns it, with `payload` as a Buffer. */
function decodeJob(job) {
  if (job && typeof job.payload === 'string') job.payload = fromBase64(job.payload);
  return job;
}

function decodeLeased(lj) {
  decodeJob(lj.job);
  if (typeof lj.checkpoint === 'string') lj.checkpoint = fromBase64(lj.checkpoint);
  return lj;
}

function identity(v) {
  return v;
}

// SubmitRequest's fields: [proto field, names accepted in options, conversion].
const SUBMIT_FIELDS = [
  ['priority', ['priority'], identity],
  ['delay_ms', ['delay', 'delayMs', 'delay_ms'], identity],
  ['run_at_ms', ['runAt', 'runAtMs', 'run_at', 'run_at_ms'], (v) => toMs(v, 'runAt')],
  ['max_attempts', ['maxAttempts', 'max_attempts'], identity],
  ['backoff', ['backoff'], backoff],
  ['timeout_ms', ['timeout', 'timeoutMs', 'timeout_ms'], identity],
  ['lease_ttl_ms', ['leaseTtl', 'leaseTtlMs', 'lease_ttl', 'lease_ttl_ms'], identity],
  ['idempotency_key', ['idempotencyKey', 'idempotency_key'], identity],
  ['tags', ['tags'], identity],
  ['required_capabilities', ['requires', 'requiredCapabilities', 'required_capabilities'], identity],
  ['permanent_exit_codes', ['permanentExitCodes', 'permanent_exit_codes'], identity],
  ['deadline_ms', ['deadline', 'deadlineMs', 'deadline_ms'], (v) => toMs(v, 'deadline')],
  ['resources', ['resources'], identity],
];
const SUBMIT_OWN = new Set(['queue', 'payload', 'shell', 'argv', 'env', 'cwd']);
const SUBMIT_KNOWN = new Set([...SUBMIT_OWN, ...SUBMIT_FIELDS.flatMap((f) => f[1])]);

function backoff(b) {
  if (b === null || b === undefined) return undefined;
  // The server needs every field once a backoff is given: unset ones get its defaults.
  const out = { base_ms: 1000, factor: 2, cap_ms: 16000 };
  const map = {
    baseMs: 'base_ms', base_ms: 'base_ms', base: 'base_ms',
    factor: 'factor',
    capMs: 'cap_ms', cap_ms: 'cap_ms', cap: 'cap_ms',
    noJitter: 'no_jitter', no_jitter: 'no_jitter',
  };
  for (const [k, v] of Object.entries(b)) {
    if (!(k in map)) throw new TypeError(`raftline: unknown backoff option ${k}`);
    if (v !== undefined) out[map[k]] = v;
  }
  return out;
}

/**
 * Builds a SubmitRequest (proto JSON) from submit options. A job is a shell job when `shell`
 * or `argv` is given, else an external job carrying `payload` (empty when not given).
 * Gives it a fresh idempotency key unless it has one.
 */
function submitRequest(opts) {
  if (!opts || typeof opts !== 'object') throw new TypeError('raftline: submit needs an options object');
  for (const k of Object.keys(opts)) {
    if (!SUBMIT_KNOWN.has(k)) throw new TypeError(`raftline: unknown submit option ${k}`);
  }
  if (typeof opts.queue !== 'string' || !opts.queue) throw new TypeError('raftline: submit needs a queue');
  const req = { queue: opts.queue };
  let shell = opts.shell;
  if (opts.argv !== undefined) shell = { ...(shell || {}), argv: opts.argv };
  if (opts.env !== undefined) shell = { ...(shell || {}), env: opts.env };
  if (opts.cwd !== undefined) shell = { ...(shell || {}), cwd: opts.cwd };
  if (shell) {
    if (opts.payload !== undefined && opts.payload !== null) {
      throw new TypeError('raftline: a job is either a shell job (argv) or an external job (payload), not both');
    }
    const s = {};
    for (const [k, v] of Object.entries(shell)) {
      if (!['argv', 'env', 'cwd'].includes(k)) throw new TypeError(`raftline: unknown shell option ${k}`);
      if (v !== undefined) s[k] = v;
    }
    req.shell = s;
  } else {
    req.payload = toBase64(opts.payload, 'payload');
  }
  for (const [field, names, conv] of SUBMIT_FIELDS) {
    for (const n of names) {
      if (opts[n] !== undefined && opts[n] !== null) {
        const v = conv(opts[n]);
        if (v !== undefined) req[field] = v;
        break;
      }
    }
  }
  if (!req.idempotency_key) req.idempotency_key = crypto.randomUUID();
  return req;
}

function query(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '' || v === false || v === 0) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

const LIST_FIELDS = {
  queue: 'queue',
  state: 'state',
  tag: 'tag',
  text: 'text',
  limit: 'limit',
  stale: 'stale',
  afterId: 'after_id', after_id: 'after_id',
  createdAfter: 'created_after_ms', createdAfterMs: 'created_after_ms', created_after_ms: 'created_after_ms',
  createdBefore: 'created_before_ms', createdBeforeMs: 'created_before_ms', created_before_ms: 'created_before_ms',
  finishedAfter: 'finished_after_ms', finishedAfterMs: 'finished_after_ms', finished_after_ms: 'finished_after_ms',
  finishedBefore: 'finished_before_ms', finishedBeforeMs: 'finished_before_ms', finished_before_ms: 'finished_before_ms',
};

function listParams(filter = {}) {
  const out = {};
  for (const [k, v] of Object.entries(filter)) {
    const f = LIST_FIELDS[k];
    if (!f) throw new TypeError(`raftline: unknown listJobs filter ${k}`);
    if (v === undefined || v === null) continue;
    out[f] = f.endsWith('_ms') ? toMs(v, k) : v;
  }
  return out;
}

function enc(v) {
  return encodeURIComponent(String(v));
}

class Client {
  /**
   * new Client({addrs, token, ca, ...}) or new Client(addrs, {token, ...}).
   *
   * @param {object} [options]
   * @param {string[]|string} [options.addrs] every node's http address (`127.0.0.1:7301` or
   *   `https://host:port`); default env RAFTLINE_ADDRS (comma-separated).
   * @param {string} [options.token] API token; default env RAFTLINE_TOKEN, else the file
   *   named by `tokenFile` / RAFTLINE_TOKEN_FILE.
   * @param {string|Buffer} [options.ca] the cluster's CA: a PEM file path or its contents;
   *   default env RAFTLINE_CA_FILE. Given, addresses without a scheme use https.
   * @param {number} [options.timeout] how long one HTTP request may take at one node, ms
   *   (10 s; a long-poll adds its wait).
   * @param {number} [options.deadline] how long one call keeps failing over between nodes, ms
   *   (30 s), before it throws UNAVAILABLE.
   */
  constructor(options = {}, more = undefined) {
    if (Array.isArray(options) || typeof options === 'string') options = { ...(more || {}), addrs: options };
    const env = process.env;
    let addrs = options.addrs !== undefined ? options.addrs : env.RAFTLINE_ADDRS;
    if (typeof addrs === 'string') addrs = addrs.split(',');
    addrs = (addrs || []).map((a) => String(a).trim()).filter(Boolean);
    if (!addrs.length) throw new TypeError('raftline: no node addresses (give addrs or set RAFTLINE_ADDRS)');

    let token = options.token !== undefined ? options.token : env.RAFTLINE_TOKEN;
    const tokenFile = options.tokenFile || options.token_file || env.RAFTLINE_TOKEN_FILE;
    if (!token && tokenFile) token = fs.readFileSync(tokenFile, 'utf8').trim();
    this.token = token || null;

    let ca = options.ca !== undefined ? options.ca : options.caFile || options.ca_file || env.RAFTLINE_CA_FILE;
    if (typeof ca === 'string' && !ca.includes('-----BEGIN')) ca = fs.readFileSync(ca);
    this.ca = ca || null;

    this.addrs = addrs.map((a) => parseAddr(a, !!this.ca));
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.deadline = options.deadline ?? DEFAULT_DEADLINE_MS;
    this._httpAgent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 64 });
    const tlsOpts = { keepAlive: true, maxSockets: options.maxSockets ?? 64 };
    if (this.ca) tlsOpts.ca = this.ca;
    if (options.servername) tlsOpts.servername = options.servername;
    this._httpsAgent = new https.Agent(tlsOpts);
    this._preferred = 0;
    this._closed = false;
  }

  /** Closes idle keep-alive connections; the client can't be used afterwards. */
  close() {
    this._closed = true;
    this._httpAgent.destroy();
    this._httpsAgent.destroy();
  }

  // ---- transport ------------------------------------------------------------------------

  /** One HTTP attempt against one address. Resolves {status, body} or rejects on a network error. */
  _once(addr, method, path, payload, timeoutMs, signal) {
    return new Promise((resolve, reject) => {
      const tls = addr.protocol === 'https:';
      const headers = { accept: 'application/json' };
      if (this.token) headers.authorization = `Bearer ${this.token}`;
      if (payload !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = Buffer.byteLength(payload);
      }
      const req = (tls ? https : http).request({
        protocol: addr.protocol,
        hostname: addr.hostname,
        port: addr.port,
        method,
        path,
        headers,
        agent: tls ? this._httpsAgent : this._httpAgent,
      });
      let settled = false;
      const timer = setTimeout(() => {
        const e = new Error(`no answer within ${timeoutMs} ms`);
        e.code = 'ETIMEDOUT';
        req.destroy(e);
      }, timeoutMs);
      const onAbort = () => {
        const e = new Error('aborted');
        e.name = 'AbortError';
        e.code = 'ABORT_ERR';
        req.destroy(e);
      };
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
      const finish = (err, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (signal) signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(value);
      };
      req.on('error', (err) => finish(err));
      req.on('response', (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', (err) => finish(err));
        res.on('aborted', () => finish(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body = null;
          if (text) {
            try {
              body = JSON.parse(text);
            } catch {
              body = text;
            }
          }
          finish(null, { status: res.statusCode, body });
        });
      });
      if (signal && signal.aborted) onAbort();
      req.end(payload);
    });
  }

  /**
   * Sends one API call, failing over between nodes on a connection error, a timeout or 503
   * UNAVAILABLE until the call's deadline. Other errors throw a RaftlineError at once.
   *
   * @param {string} method GET, POST, PUT or DELETE
   * @param {string} path e.g. `/v1/jobs/42`
   * @param {object} [body] the JSON body (POST, PUT)
   * @param {{deadline?: number, wait?: number, signal?: AbortSignal, onRetry?: (err: Error) => void}} [opts]
   *   `deadline`: this call's failover deadline (ms); `wait`: how long the server may hold the
   *   call (long-poll), added to each request's timeout; `onRetry`: called before each retry
   *   with the error that caused it.
   */
  async request(method, path, body, opts = {}) {
    if (this._closed) throw new RaftlineError('client is closed', { status: 'CANCELLED' });
    const wait = opts.wait || 0;
    const budget = Math.max(opts.deadline ?? this.deadline, wait + this.timeout);
    const deadline = Date.now() + budget;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const n = this.addrs.length;
    let idx = this._preferred;
    let lastErr = null;
    let certFailures = 0;
    for (let attempt = 0; ; attempt++) {
      const addr = this.addrs[idx];
      const remaining = deadline - Date.now();
      let res = null;
      try {
        res = await this._once(addr, method, path, payload, Math.max(1, Math.min(wait + this.timeout, remaining)), opts.signal);
      } catch (err) {
        if (err && (err.name === 'AbortError' || (opts.signal && opts.signal.aborted))) throw err;
        lastErr = new RaftlineError(`${addr.label}: ${err.message}`, { status: 'UNAVAILABLE', cause: err });
        // Every node's certificate refused: a configuration error (CA file, address) that no
        // amount of waiting mends.
        if (TLS_ERRORS.has(err.code) && ++certFailures >= n) {
          throw new RaftlineError(`TLS: no node's certificate is trusted: ${lastErr.message}`, { status: 'UNAVAILABLE', cause: err });
        }
      }
      if (res) {
        if (res.status >= 200 && res.status < 300) {
          this._preferred = idx;
          return res.body;
        }
        const e = errorFrom(res, addr);
        if (res.status !== 503) throw e;
        lastErr = e;
      }
      if (Date.now() >= deadline) {
        throw new RaftlineError(`no node answered within ${budget} ms: ${lastErr.message}`, {
          status: 'UNAVAILABLE',
          httpStatus: lastErr.httpStatus,
          cause: lastErr,
        });
      }
      if (opts.onRetry) opts.onRetry(lastErr);
      idx = (idx + 1) % n;
      // Every node once at once, then back off a little more each round (at most 1 s).
      const round = Math.floor((attempt + 1) / n);
      const pause = Math.min(round === 0 ? 0 : 50 * 2 ** (round - 1), 1000, Math.max(0, deadline - Date.now()));
      if (pause > 0) await sleep(pause, opts.signal);
      if (Date.now() >= deadline) {
        throw new RaftlineError(`no node answered within ${budget} ms: ${lastErr.message}`, {
          status: 'UNAVAILABLE',
          httpStatus: lastErr.httpStatus,
          cause: lastErr,
        });
      }
      if (opts.signal && opts.signal.aborted) {
        const e = new Error('aborted');
        e.name = 'AbortError';
        e.code = 'ABORT_ERR';
        throw e;
      }
    }
  }

  // ---- jobs -----------------------------------------------------------------------------

  /**
   * Submits a job; resolves its id. Every SubmitRequest option is accepted (see README). A
   * retry after an ambiguous failure reuses the call's idempotency key, so it never makes a
   * second job.
   */
  async submit(options) {
    const res = await this.submitResult(options);
    return res.id;
  }

  /** Like submit, resolving `{id, duplicate}` (duplicate: the idempotency key matched an earlier job). */
  async submitResult(options) {
    const req = submitRequest(options);
    return this.request('POST', '/v1/jobs', req);
  }

  /**
   * Submits many jobs (1,000 per call; more are split into several calls). Resolves their ids,
   * in order. One invalid job refuses its whole call (INVALID_ARGUMENT naming jobs[i]).
   */
  async submitBatch(jobs) {
    const ids = [];
    const reqs = jobs.map(submitRequest);
    for (let i = 0; i < reqs.length; i += BATCH_MAX) {
      const res = await this.request('POST', '/v1/jobs/batch', { jobs: reqs.slice(i, i + BATCH_MAX) });
      for (const j of res.jobs) ids.push(j.id);
    }
    return ids;
  }

  /** Reads a job (linearizable unless `stale`). Its payload is a Buffer. */
  async getJob(id, { stale = false } = {}) {
    return decodeJob(await this.request('GET', `/v1/jobs/${enc(id)}${query({ stale })}`));
  }

  /**
   * Polls a job until it is succeeded, dead or cancelled, and resolves it. Rejects with a
   * RaftlineError DEADLINE_EXCEEDED after `timeout` ms (no limit when not given).
   */
  async wait(id, { timeout, interval = 100, maxInterval = 1000, signal } = {}) {
    const end = timeout === undefined || timeout === null ? Infinity : Date.now() + timeout;
    let pause = interval;
    for (;;) {
      const job = await this.getJob(id);
      if (TERMINAL.has(job.state)) return job;
      if (signal && signal.aborted) throw new RaftlineError(`wait for job ${id} aborted`, { status: 'CANCELLED' });
      if (Date.now() + pause > end) {
        throw new RaftlineError(`job ${id} is still ${job.state} after ${timeout} ms`, { status: 'DEADLINE_EXCEEDED' });
      }
      await sleep(pause, signal);
      pause = Math.min(pause * 2, maxInterval);
    }
  }

  /** Cancels an unfinished job; resolves its state (`cancelled`). */
  async cancel(id) {
    return (await this.request('POST', `/v1/jobs/${enc(id)}/cancel`, {})).state;
  }

  /**
   * Runs a scheduled, dead or cancelled job again now; resolves its state. Options:
   * argv, env, priority, maxAttempts.
   */
  async retry(id, options = {}) {
    const body = {};
    for (const [k, v] of Object.entries(options)) {
      if (v === undefined || v === null) continue;
      if (k === 'argv' || k === 'env' || k === 'priority') body[k] = v;
      else if (k === 'maxAttempts' || k === 'max_attempts') body.max_attempts = v;
      else throw new TypeError(`raftline: unknown retry option ${k}`);
    }
    return (await this.request('POST', `/v1/jobs/${enc(id)}/retry`, body)).state;
  }

  /**
   * One page of jobs in id order: resolves `{jobs, nextAfterId}` (nextAfterId 0 when no job is
   * left). Filter: queue, state, tag, text, createdAfter, createdBefore, finishedAfter,
   * finishedBefore (Date or ms), limit (page size), afterId, stale.
   */
  async listJobsPage(filter = {}) {
    const res = await this.request('GET', `/v1/jobs${query(listParams(filter))}`);
    return { jobs: (res.jobs || []).map(decodeJob), nextAfterId: res.next_after_id || 0 };
  }

  /** Every job the filter keeps, page after page: `for await (const job of client.listJobs({queue}))`. */
  async *listJobs(filter = {}) {
    let afterId = filter.afterId ?? filter.after_id ?? 0;
    const rest = { ...filter };
    delete rest.afterId;
    delete rest.after_id;
    for (;;) {
      const page = await this.listJobsPage({ ...rest, afterId });
      for (const job of page.jobs) yield job;
      if (!page.nextAfterId || page.nextAfterId <= afterId) return;
      afterId = page.nextAfterId;
    }
  }

  // ---- queues and cluster ---------------------------------------------------------------

  async getQueue(queue, { stale = false } = {}) {
    return this.request('GET', `/v1/queues/${enc(queue)}${query({ stale })}`);
  }

  async listQueues({ stale = false } = {}) {
    return (await this.request('GET', `/v1/queues${query({ stale })}`)).queues || [];
  }

  async pauseQueue(queue) {
    return this.request('POST', `/v1/queues/${enc(queue)}/pause`, {});
  }

  async resumeQueue(queue) {
    return this.request('POST', `/v1/queues/${enc(queue)}/resume`, {});
  }

  /** The answering node's view of the cluster (NodeStatus: state, leader, term, members). */
  async nodeStatus() {
    return this.request('GET', '/v1/cluster/status');
  }

  // ---- the worker API (what Worker uses) -------------------------------------------------

  /** Lease: `{workerId, queues, capabilities, max, ttl, waitMs}` -> LeasedJob[] (payload and checkpoint as Buffers). */
  async lease(opts, { signal, onRetry } = {}) {
    const req = leaseRequest(opts);
    const res = await this.request('POST', '/v1/worker/lease', req, { wait: req.wait_ms, signal, onRetry });
    return (res.jobs || []).map(decodeLeased);
  }

  /** Heartbeat: extends every lease of the worker; resolves the leases it still holds. */
  async heartbeat(workerId, { deadline } = {}) {
    const res = await this.request('POST', '/v1/worker/heartbeat', { worker_id: workerId }, { deadline });
    return res.leases || [];
  }

  /** Complete one attempt: `{jobId, token, success, errorClass, exitCode, error, outputTail}`. */
  async complete(c) {
    return this.request('POST', '/v1/worker/complete', completeRequest(c));
  }

  /**
   * CompleteAndLease: ends attempts and leases the next jobs in one round trip. Resolves
   * `{completions, jobs}`; each completion succeeds or fails on its own.
   */
  async completeAndLease(completions, lease, { signal, onRetry } = {}) {
    const body = { completions: completions.map(completeRequest) };
    let wait = 0;
    if (lease) {
      body.lease = leaseRequest(lease);
      wait = body.lease.wait_ms || 0;
    }
    const res = await this.request('POST', '/v1/worker/complete-and-lease', body, { wait, signal, onRetry });
    return { completions: res.completions || [], jobs: (res.jobs || []).map(decodeLeased) };
  }

  /** Stores a leased job's progress; the next attempt's lease returns it. */
  async checkpoint(jobId, token, data) {
    return this.request('POST', '/v1/worker/checkpoint', { job_id: jobId, token, data: toBase64(data, 'data') });
  }

  /** Hands a leased job back without counting the attempt. */
  async release(jobId, token) {
    return this.request('POST', '/v1/worker/release', { job_id: jobId, token });
  }
}

function leaseRequest(o) {
  const req = {
    worker_id: o.workerId ?? o.worker_id,
    queues: o.queues || [],
    capabilities: o.capabilities || [],
    max: o.max ?? 1,
  };
  const ttl = o.ttl ?? o.ttlMs ?? o.ttl_ms;
  if (ttl) req.ttl_ms = ttl;
  const wait = o.waitMs ?? o.wait_ms ?? 0;
  if (wait) req.wait_ms = wait;
  return req;
}

function completeRequest(c) {
  if (c.job_id !== undefined && c.token !== undefined && c.jobId === undefined) return c; // already proto JSON
  const req = { job_id: c.jobId, token: c.token, success: !!c.success };
  const errorClass = c.errorClass ?? c.error_class;
  if (errorClass) req.error_class = errorClass;
  const exitCode = c.exitCode ?? c.exit_code;
  if (exitCode !== undefined && exitCode !== null) req.exit_code = exitCode;
  if (c.error) req.error = c.error;
  const out = c.outputTail ?? c.output_tail;
  if (out) req.output_tail = out;
  return req;
}

function errorFrom(res, addr) {
  const e = res.body && typeof res.body === 'object' && res.body.error ? res.body.error : null;
  if (e) {
    return new RaftlineError(e.message || `HTTP ${res.status}`, {
      status: e.status || 'UNKNOWN',
      httpStatus: res.status,
      field: e.field ?? null,
      body: res.body,
    });
  }
  const status = { 400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND', 409: 'ABORTED', 413: 'RESOURCE_EXHAUSTED', 429: 'RESOURCE_EXHAUSTED', 503: 'UNAVAILABLE' }[res.status] || 'UNKNOWN';
  const text = typeof res.body === 'string' ? res.body.slice(0, 200) : '';
  return new RaftlineError(`${addr.label}: HTTP ${res.status}${text ? `: ${text}` : ''}`, { status, httpStatus: res.status, body: res.body });
}

// Aliases: the generic call as the Python client names it, and earlier names.
Client.prototype.call = Client.prototype.request;
Client.prototype.submitWithResult = Client.prototype.submitResult;
Client.prototype.clusterStatus = Client.prototype.nodeStatus;

module.exports = { Client, submitRequest, parseAddr, listParams, completeRequest, leaseRequest, decodeJob, sleep, TERMINAL };
