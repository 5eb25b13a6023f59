'use strict';
// Unit tests: request building, address parsing, errors, failover against fake nodes.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Client, RaftlineError, submitRequest } = require('..');
const { parseAddr, listParams } = require('../lib/client');
const { statusName } = require('../lib/errors');
const { freePort } = require('./support/cluster');

test('submitRequest maps every option to SubmitRequest fields', () => {
  const runAt = new Date(1800000000000);
  const req = submitRequest({
    queue: 'q',
    payload: 'hi',
    priority: 7,
    delay: 100,
    runAt,
    maxAttempts: 4,
    backoff: { baseMs: 10, factor: 3, capMs: 1000, noJitter: true },
    timeout: 5000,
    leaseTtl: 2000,
    idempotencyKey: 'k',
    tags: ['a'],
    requires: ['gpu'],
    permanentExitCodes: [3],
    deadline: 1900000000000,
    resources: ['slot:2'],
  });
  assert.deepEqual(req, {
    queue: 'q',
    payload: Buffer.from('hi').toString('base64'),
    priority: 7,
    delay_ms: 100,
    run_at_ms: 1800000000000,
    max_attempts: 4,
    backoff: { base_ms: 10, factor: 3, cap_ms: 1000, no_jitter: true },
    timeout_ms: 5000,
    lease_ttl_ms: 2000,
    idempotency_key: 'k',
    tags: ['a'],
    required_capabilities: ['gpu'],
    permanent_exit_codes: [3],
    deadline_ms: 1900000000000,
    resources: ['slot:2'],
  });
});

test('submitRequest: snake_case names, shell jobs, a fresh idempotency key, bytes payloads', () => {
  const a = submitRequest({ queue: 'q', argv: ['echo', 'x'], env: { A: '1' }, max_attempts: 2 });
  assert.deepEqual(a.shell, { argv: ['echo', 'x'], env: { A: '1' } });
  assert.equal(a.payload, undefined);
  assert.equal(a.max_attempts, 2);
  assert.deepEqual(submitRequest({ queue: 'q', backoff: { base: 5 } }).backoff, { base_ms: 5, factor: 2, cap_ms: 16000 });
  assert.match(a.idempotency_key, /^[0-9a-f-]{36}$/);
  const b = submitRequest({ queue: 'q' });
  assert.notEqual(a.idempotency_key, b.idempotency_key);
  assert.equal(b.payload, '');
  assert.equal(submitRequest({ queue: 'q', payload: new Uint8Array([1, 2, 255]) }).payload, 'AQL/');
  assert.equal(submitRequest({ queue: 'q', payload: Buffer.from([0]) }).payload, 'AA==');
  assert.throws(() => submitRequest({ queue: 'q', prio: 1 }), /unknown submit option prio/);
  assert.throws(() => submitRequest({ queue: 'q', argv: ['x'], payload: 'y' }), /either a shell job/);
  assert.throws(() => submitRequest({ payload: 'y' }), /needs a queue/);
});

test('addresses: bare host:port, schemes, TLS default with a CA', () => {
  assert.deepEqual(parseAddr('127.0.0.1:7301', false), { protocol: 'http:', hostname: '127.0.0.1', port: 7301, label: 'http://127.0.0.1:7301' });
  assert.equal(parseAddr('127.0.0.1:7301', true).protocol, 'https:');
  assert.equal(parseAddr('https://node-1:9000/', false).port, 9000);
  assert.equal(parseAddr('http://[::1]:80', false).hostname, '::1');
  assert.throws(() => parseAddr('ftp://x:1', false), /scheme/);
  const c = new Client({ addrs: 'a:1, b:2', token: 't' });
  assert.equal(c.addrs.length, 2);
  c.close();
  assert.throws(() => new Client({ addrs: [] }), /no node addresses/);
});

test('list filters and status names', () => {
  assert.deepEqual(listParams({ queue: 'q', createdAfter: new Date(5), afterId: 3, limit: 2 }), {
    queue: 'q',
    created_after_ms: 5,
    after_id: 3,
    limit: 2,
  });
  assert.throws(() => listParams({ qeue: 'q' }), /unknown listJobs filter/);
  assert.equal(statusName('FailedPrecondition'), 'FAILED_PRECONDITION');
  assert.equal(statusName('NOT_FOUND'), 'NOT_FOUND');
  assert.equal(statusName('NotFound'), 'NOT_FOUND');
});

/** A fake node: answers with `handler(req, body)` -> [status, json]. */
async function fakeNode(handler) {
  const seen = [];
  const srv = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      const body = data ? JSON.parse(data) : null;
      seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, body });
      const [status, json] = handler(req, body, seen.length);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { srv, seen, addr: `127.0.0.1:${srv.address().port}`, close: () => new Promise((r) => srv.close(r)) };
}

const unavailable = [503, { error: { code: 503, status: 'UNAVAILABLE', message: 'no leader', field: null } }];

test('failover: a dead address and a 503 are skipped; a retried submit keeps its idempotency key', async () => {
  const dead = `127.0.0.1:${await freePort()}`;
  const a = await fakeNode(() => unavailable);
  const b = await fakeNode(() => [200, { id: 42, duplicate: false }]);
  const c = new Client({ addrs: [dead, a.addr, b.addr], token: 'sekrit' });
  try {
    const id = await c.submit({ queue: 'q', payload: 'x' });
    assert.equal(id, 42);
    assert.equal(a.seen.length, 1);
    assert.equal(b.seen.length, 1);
    assert.equal(a.seen[0].auth, 'Bearer sekrit');
    assert.equal(a.seen[0].url, '/v1/jobs');
    assert.equal(a.seen[0].body.idempotency_key, b.seen[0].body.idempotency_key, 'same key on every retry');
    // The node that answered is tried first next time.
    await c.getJob(42).catch(() => {});
    assert.equal(b.seen.length, 2);
  } finally {
    c.close();
    await a.close();
    await b.close();
  }
});

test('errors: other statuses throw a RaftlineError at once with status, http status and field', async () => {
  const a = await fakeNode(() => [400, { error: { code: 400, status: 'INVALID_ARGUMENT', message: 'priority: is 42, must be 1..=10', field: 'priority' } }]);
  const b = await fakeNode(() => [200, {}]);
  const c = new Client({ addrs: [a.addr, b.addr], token: 't' });
  try {
    await assert.rejects(c.submit({ queue: 'q', priority: 42 }), (e) => {
      assert.ok(e instanceof RaftlineError);
      assert.equal(e.status, 'INVALID_ARGUMENT');
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.equal(e.httpStatus, 400);
      assert.equal(e.field, 'priority');
      assert.match(e.message, /must be 1..=10/);
      return true;
    });
    assert.equal(b.seen.length, 0, 'not failed over');
  } finally {
    c.close();
    await a.close();
    await b.close();
  }
});

test('failover gives up at the deadline with UNAVAILABLE', async () => {
  const a = await fakeNode(() => unavailable);
  const c = new Client({ addrs: [a.addr, `127.0.0.1:${await freePort()}`], token: 't', deadline: 600, timeout: 200 });
  const t0 = Date.now();
  try {
    await assert.rejects(c.getJob(1), (e) => e instanceof RaftlineError && e.status === 'UNAVAILABLE');
    const took = Date.now() - t0;
    assert.ok(took >= 500 && took < 3000, `took ${took} ms`);
    assert.ok(a.seen.length >= 2, 'retried');
  } finally {
    c.close();
    await a.close();
  }
});

test('wait polls until a terminal state; listJobs follows next_after_id', async () => {
  let polls = 0;
  const a = await fakeNode((req) => {
    if (req.url.startsWith('/v1/jobs/7')) {
      polls++;
      return [200, { id: 7, state: polls < 3 ? 'leased' : 'succeeded', payload: 'aGk=' }];
    }
    const u = new URL(req.url, 'http://x');
    const after = Number(u.searchParams.get('after_id') || 0);
    if (after === 0) return [200, { jobs: [{ id: 1 }, { id: 2 }], next_after_id: 2 }];
    if (after === 2) return [200, { jobs: [], next_after_id: 5 }];
    if (after === 5) return [200, { jobs: [{ id: 6 }], next_after_id: 0 }];
    return [500, {}];
  });
  const c = new Client({ addrs: [a.addr], token: 't' });
  try {
    const job = await c.wait(7, { interval: 10 });
    assert.equal(job.state, 'succeeded');
    assert.equal(job.payload.toString(), 'hi');
    const ids = [];
    for await (const j of c.listJobs({ queue: 'q' })) ids.push(j.id);
    assert.deepEqual(ids, [1, 2, 6]);
    polls = -100;
    await assert.rejects(c.wait(7, { timeout: 100, interval: 10 }), (e) => e.status === 'DEADLINE_EXCEEDED');
  } finally {
    c.close();
    await a.close();
  }
});

/** A fake node for the worker: leases job 1 (token 5) once, then answers as `complete` says. */
async function fakeWorkerNode({ completion, attempt }) {
  let leased = false;
  return fakeNode((req, body) => {
    if (req.url === '/v1/worker/complete-and-lease') {
      const out = { completions: [], jobs: [] };
      if (body.completions.length) out.completions.push(completion);
      if (body.lease && body.lease.max > 0 && !leased) {
        leased = true;
        out.jobs.push({ job: { id: 1, queue: 'q', payload: 'aGk=', tags: [] }, token: 5, attempt: 1, expires_ms: 0, ttl_ms: 30000 });
      }
      return [200, out];
    }
    if (req.url === '/v1/jobs/1') return [200, { id: 1, state: 'succeeded', attempts: [attempt] }];
    if (req.url === '/v1/worker/heartbeat') return [200, { leases: [] }];
    return [404, { error: { code: 404, status: 'NOT_FOUND', message: req.url, field: null } }];
  });
}

const { Worker } = require('..');

test('worker: a refused completion whose first try was applied counts as done (same token, our result)', async () => {
  const node = await fakeWorkerNode({
    completion: { job_id: 1, state: '', error_code: 'FailedPrecondition', error: 'stale fencing token 5: job 1 is succeeded, not leased' },
    attempt: { number: 1, token: 5, result: 'succeeded', error_class: '' },
  });
  const c = new Client({ addrs: [node.addr], token: 't' });
  const w = new Worker(c, { queues: ['q'], pollWait: 50, handler: async (job) => job.text() });
  const events = [];
  w.on('completed', (ctx, state) => events.push(['completed', ctx.id, state]));
  w.on('lost', (ctx) => events.push(['lost', ctx.id]));
  w.start();
  try {
    const until = Date.now() + 5000;
    while (!events.length && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  } finally {
    await w.stop();
    c.close();
    await node.close();
  }
  assert.deepEqual(events, [['completed', 1, 'succeeded']]);
  assert.equal(w.stats.recovered, 1);
  assert.equal(w.stats.succeeded, 1);
  const completions = node.seen.filter((s) => s.url === '/v1/worker/complete-and-lease' && s.body.completions.length);
  assert.deepEqual(completions[0].body.completions, [{ job_id: 1, token: 5, success: true, output_tail: 'hi' }]);
});

test('worker: a refused completion of a lease that ended otherwise is dropped as lost, not an error', async () => {
  const node = await fakeWorkerNode({
    completion: { job_id: 1, state: '', error_code: 'FailedPrecondition', error: 'stale fencing token 5: job 1 is leased under token 9' },
    attempt: { number: 1, token: 5, result: 'failed', error_class: 'lost_lease' },
  });
  const c = new Client({ addrs: [node.addr], token: 't' });
  const w = new Worker(c, { queues: ['q'], pollWait: 50, handler: async () => 'late' });
  const events = [];
  w.on('completed', (ctx) => events.push(['completed', ctx.id]));
  w.on('lost', (ctx) => events.push(['lost', ctx.id]));
  w.start();
  try {
    const until = Date.now() + 5000;
    while (!events.length && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  } finally {
    await w.stop();
    c.close();
    await node.close();
  }
  assert.deepEqual(events, [['lost', 1]]);
  assert.equal(w.stats.succeeded, 0);
  assert.equal(w.stats.lost, 1);
});
