'use strict';
// Integration tests against a real 3-node cluster started from $RAFTLINE_BIN.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client, Worker, RaftlineError, PermanentError } = require('..');
const { Cluster, waitFor, freePort } = require('./support/cluster');

let cluster;
let client;
let failed = false;

test.before(async () => {
  cluster = new Cluster({ name: 'nodeint' });
  await cluster.start();
  client = new Client({ addrs: cluster.addrs, token: cluster.token });
});

test.after(async () => {
  if (client) client.close();
  if (cluster) {
    if (failed) console.error(cluster.tails(60));
    await cluster.stop({ keep: failed });
  }
});

/** Runs a test body, printing the nodes' logs when it fails. */
function check(fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      failed = true;
      throw e;
    }
  };
}

function worker(opts) {
  const w = new Worker(client, { pollWait: 1000, ...opts });
  w.on('warning', () => {});
  return w;
}

test('submit, get, idempotency, payload bytes', check(async () => {
  const id = await client.submit({ queue: 'int-a', payload: Buffer.from([0, 1, 2, 250]), tags: ['t1'], priority: 9 });
  const job = await client.getJob(id);
  assert.equal(job.id, id);
  assert.equal(job.queue, 'int-a');
  assert.equal(job.state, 'ready');
  assert.deepEqual([...job.payload], [0, 1, 2, 250]);
  assert.deepEqual(job.tags, ['t1']);
  assert.equal(job.priority, 9);
  assert.match(job.idempotency_key, /^[0-9a-f-]{36}$/);

  const a = await client.submitResult({ queue: 'int-a', payload: 'x', idempotencyKey: 'same-key' });
  const b = await client.submitResult({ queue: 'int-a', payload: 'y', idempotencyKey: 'same-key' });
  assert.equal(a.duplicate, false);
  assert.equal(b.duplicate, true);
  assert.equal(a.id, b.id);
  // A stale read is served by the node itself, which may not have applied the submit yet.
  const stale = await waitFor('a stale read', () => client.getJob(a.id, { stale: true }), 5000);
  assert.equal(stale.payload.toString(), 'x');
}));

test('errors carry status, http status and field', check(async () => {
  await assert.rejects(client.getJob(987654321), (e) => {
    assert.ok(e instanceof RaftlineError);
    assert.equal(e.status, 'NOT_FOUND');
    assert.equal(e.httpStatus, 404);
    return true;
  });
  await assert.rejects(client.submit({ queue: 'int-a', priority: 42 }), (e) => {
    assert.equal(e.status, 'INVALID_ARGUMENT');
    assert.equal(e.httpStatus, 400);
    assert.equal(e.field, 'priority');
    return true;
  });
  await assert.rejects(client.submit({ queue: 'bad queue!' }), (e) => e.status === 'INVALID_ARGUMENT' && e.field === 'queue');
  const nobody = new Client({ addrs: cluster.addrs, token: 'rl_wrong' });
  try {
    await assert.rejects(nobody.getJob(1), (e) => e.status === 'UNAUTHENTICATED' && e.httpStatus === 401);
  } finally {
    nobody.close();
  }
}));

test('submitBatch, listJobs with paging, cancel, retry, wait', check(async () => {
  const ids = await client.submitBatch(Array.from({ length: 7 }, (_, i) => ({ queue: 'int-list', payload: `p${i}`, tags: i % 2 ? ['odd'] : [] })));
  assert.equal(ids.length, 7);
  assert.equal(new Set(ids).size, 7);
  const seen = [];
  for await (const j of client.listJobs({ queue: 'int-list', limit: 2 })) seen.push(j.id);
  assert.deepEqual(seen, ids);
  const odd = [];
  for await (const j of client.listJobs({ queue: 'int-list', tag: 'odd' })) odd.push(j.payload.toString());
  assert.deepEqual(odd, ['p1', 'p3', 'p5']);
  const page = await client.listJobsPage({ queue: 'int-list', limit: 3 });
  assert.equal(page.jobs.length, 3);
  assert.equal(page.nextAfterId, ids[2]);

  assert.equal(await client.cancel(ids[0]), 'cancelled');
  const done = await client.wait(ids[0], { timeout: 5000 });
  assert.equal(done.state, 'cancelled');
  await assert.rejects(client.cancel(ids[0]), (e) => e.status === 'FAILED_PRECONDITION');
  assert.equal(await client.retry(ids[0], { priority: 10 }), 'ready');
  assert.equal((await client.getJob(ids[0])).state, 'ready');
  await assert.rejects(client.wait(ids[1], { timeout: 300 }), (e) => e.status === 'DEADLINE_EXCEEDED');
  const q = await client.getQueue('int-list');
  assert.equal(q.queue, 'int-list');
}));

test('worker: runs every job once at concurrency 4, reports output and succeeds', check(async () => {
  const ids = await client.submitBatch(Array.from({ length: 20 }, (_, i) => ({ queue: 'int-w', payload: JSON.stringify({ n: i }) })));
  const ran = new Map();
  let inflight = 0;
  let maxInflight = 0;
  const w = worker({
    queues: ['int-w'],
    concurrency: 4,
    handler: async (job) => {
      inflight++;
      maxInflight = Math.max(maxInflight, inflight);
      ran.set(job.id, (ran.get(job.id) || 0) + 1);
      await new Promise((r) => setTimeout(r, 20));
      inflight--;
      return `n=${job.json().n}`;
    },
  });
  w.start();
  try {
    for (const id of ids) {
      const job = await client.wait(id, { timeout: 20000 });
      assert.equal(job.state, 'succeeded');
    }
  } finally {
    await w.stop();
  }
  assert.equal(ran.size, 20);
  assert.ok([...ran.values()].every((n) => n === 1));
  assert.ok(maxInflight > 1 && maxInflight <= 4, `max in flight ${maxInflight}`);
  assert.equal(w.stats.succeeded, 20);
  const job = await client.getJob(ids[3]);
  assert.equal(job.attempts[0].output_tail, 'n=3');
  assert.equal(job.attempts[0].worker, w.workerId);
}));

test('worker: a thrown error is a failed attempt retried by the server; PermanentError goes to dead letters', check(async () => {
  const flaky = await client.submit({ queue: 'int-f', payload: 'flaky', maxAttempts: 3, backoff: { baseMs: 10, capMs: 20 } });
  const perm = await client.submit({ queue: 'int-f', payload: 'perm', maxAttempts: 3 });
  const attempts = [];
  const failures = [];
  const w = worker({
    queues: ['int-f'],
    concurrency: 2,
    handler: async (job) => {
      attempts.push([job.text(), job.attempt]);
      if (job.text() === 'perm') throw new PermanentError('never works');
      if (job.attempt < 3) throw new Error(`boom ${job.attempt}`);
      return 'third time';
    },
  });
  w.on('failed', (ctx, err) => failures.push([ctx.id, err.message]));
  w.start();
  try {
    assert.equal((await client.wait(flaky, { timeout: 20000 })).state, 'succeeded');
    const dead = await client.wait(perm, { timeout: 20000 });
    assert.equal(dead.state, 'dead');
    assert.equal(dead.attempts.length, 1);
    assert.equal(dead.attempts[0].error_class, 'permanent');
    assert.match(dead.attempts[0].error, /never works/);
  } finally {
    await w.stop();
  }
  const job = await client.getJob(flaky);
  assert.deepEqual(job.attempts.map((a) => a.result), ['failed', 'failed', 'succeeded']);
  assert.match(job.attempts[0].error, /boom 1/);
  assert.equal(failures.length, 3);
}));

test("worker: a job's timeout aborts its handler and fails the attempt as timeout", check(async () => {
  const id = await client.submit({ queue: 'int-t', payload: 'slow', timeout: 300, maxAttempts: 1 });
  let aborted = null;
  const w = worker({
    queues: ['int-t'],
    handler: (job) => new Promise((resolve) => {
      job.signal.addEventListener('abort', () => {
        aborted = job.signal.reason;
        resolve('too late');
      });
    }),
  });
  w.start();
  try {
    const job = await client.wait(id, { timeout: 20000 });
    assert.equal(job.state, 'dead');
    assert.equal(job.attempts[0].error_class, 'timeout');
    assert.match(job.attempts[0].error, /timed out after 300 ms/);
  } finally {
    await w.stop();
  }
  assert.ok(aborted && aborted.timeout);
}));

test('worker: checkpoint is stored and the next attempt sees it', check(async () => {
  const id = await client.submit({ queue: 'int-c', payload: 'cp', backoff: { baseMs: 10, capMs: 10 } });
  const seen = [];
  const w = worker({
    queues: ['int-c'],
    handler: async (job) => {
      seen.push(job.lastCheckpoint && job.lastCheckpoint.toString());
      if (job.attempt === 1) {
        await job.checkpoint('step-1 done');
        throw new Error('crash after step 1');
      }
      return 'resumed';
    },
  });
  w.start();
  try {
    assert.equal((await client.wait(id, { timeout: 20000 })).state, 'succeeded');
  } finally {
    await w.stop();
  }
  assert.deepEqual(seen, [null, 'step-1 done']);
  assert.equal((await client.getJob(id)).has_checkpoint, true);
}));

test('worker: a job cancelled while it runs is abandoned (signal aborted, not completed)', check(async () => {
  const id = await client.submit({ queue: 'int-l', payload: 'long' });
  let started;
  const startedP = new Promise((r) => (started = r));
  const lost = [];
  const w = worker({
    queues: ['int-l'],
    ttl: 1500, // heartbeat every 500 ms
    handler: async (job) => {
      started();
      await new Promise((resolve) => {
        const t = setTimeout(resolve, 15000);
        job.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
      assert.ok(job.leaseLost);
      return 'should not be reported';
    },
  });
  w.on('lost', (ctx, reason) => lost.push([ctx.id, reason]));
  w.start();
  try {
    await startedP;
    await client.cancel(id);
    await waitFor('the lease loss', () => lost.length === 1, 10000);
  } finally {
    await w.stop();
  }
  assert.equal(lost[0][0], id);
  const job = await client.getJob(id);
  assert.equal(job.state, 'cancelled');
  assert.equal(job.attempts[0].error_class, 'cancelled');
  assert.equal(w.stats.succeeded, 0);
}));

test('worker: stop() lets in-flight handlers finish and complete, leases nothing new', check(async () => {
  const ids = await client.submitBatch(Array.from({ length: 5 }, (_, i) => ({ queue: 'int-s', payload: `s${i}` })));
  let startedCount = 0;
  let twoStarted;
  const twoStartedP = new Promise((r) => (twoStarted = r));
  const w = worker({
    queues: ['int-s'],
    concurrency: 2,
    pollWait: 5000,
    handler: async () => {
      if (++startedCount === 2) twoStarted();
      await new Promise((r) => setTimeout(r, 400));
    },
  });
  w.start();
  await twoStartedP;
  const t0 = Date.now();
  await w.stop();
  assert.ok(Date.now() - t0 < 4000, 'stop does not wait for a long-poll');
  assert.equal(startedCount, 2);
  const states = await Promise.all(ids.map(async (id) => (await client.getJob(id)).state));
  assert.equal(states.filter((s) => s === 'succeeded').length, 2, states.join());
  assert.equal(states.filter((s) => s === 'ready').length, 3, states.join());
  // Nothing is left leased to the stopped worker.
  assert.deepEqual(await client.heartbeat(w.workerId), []);
}));

test('worker: a lease whose answer was lost is found by heartbeats and handed back', check(async () => {
  const id = await client.submit({ queue: 'int-o', payload: 'orphan' });
  const w = worker({ queues: ['int-nothing'], heartbeatInterval: 200, handler: async () => {} });
  // Lease under the worker's id behind its back: the worker holds a lease it never saw.
  // A long-poll: a lease without wait served by a follower that has not applied the submit yet
  // comes back empty (lease_wait checks the local state first).
  const [lj] = await client.lease({ workerId: w.workerId, queues: ['int-o'], max: 1, waitMs: 5000 });
  assert.equal(lj.job.id, id);
  const released = [];
  w.on('released', (jobId) => released.push(jobId));
  w.start();
  try {
    await waitFor('the orphan released', () => released.includes(id), 10000);
  } finally {
    await w.stop();
  }
  const job = await client.getJob(id);
  assert.equal(job.state, 'ready');
  assert.equal(job.attempts[0].error_class, 'released');
}));

test('worker: a lease the cluster refuses (bad queue name) stops the worker; run() rejects', check(async () => {
  const w = worker({ queues: ['no spaces allowed'], handler: async () => {} });
  await assert.rejects(w.run(), (e) => e instanceof RaftlineError && e.status === 'INVALID_ARGUMENT' && e.field === 'lease.queues[0]');
  assert.equal(w.error.status, 'INVALID_ARGUMENT');
}));

test('client: a dead address in the list is skipped', check(async () => {
  const dead = `127.0.0.1:${await freePort()}`;
  const c = new Client({ addrs: [dead, ...cluster.addrs], token: cluster.token });
  try {
    const id = await c.submit({ queue: 'int-d', payload: 'x' });
    assert.equal((await c.getJob(id)).id, id);
  } finally {
    c.close();
  }
}));

// Last: it kills the leader.
test('failover: submits and a worker go on while the leader is killed; no duplicate jobs', check(async () => {
  const leader = await cluster.leader();
  const c = new Client({ addrs: cluster.addrs, token: cluster.token });
  const ran = new Map();
  const w = new Worker(c, {
    queues: ['int-k'],
    concurrency: 4,
    pollWait: 1000,
    handler: async (job) => {
      ran.set(job.id, (ran.get(job.id) || 0) + 1);
    },
  });
  w.on('warning', () => {});
  w.start();
  const ids = [];
  try {
    let killed = null;
    for (let i = 0; i < 60; i++) {
      if (i === 20) killed = cluster.kill(leader);
      ids.push(await c.submit({ queue: 'int-k', payload: `k${i}` }));
    }
    await killed;
    for (const id of ids) assert.equal((await c.wait(id, { timeout: 30000 })).state, 'succeeded');
  } finally {
    await w.stop();
    c.close();
  }
  assert.equal(new Set(ids).size, 60);
  let count = 0;
  for await (const j of client.listJobs({ queue: 'int-k' })) {
    count++;
    assert.equal(j.attempts.filter((a) => a.result === 'succeeded').length, 1);
  }
  assert.equal(count, 60, 'a retried submit made no second job');
  assert.notEqual(await cluster.leader(), leader);
}));
