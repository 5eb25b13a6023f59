'use strict';
// The cross-language acceptance test: a Python script (clients/python) submits 1,000 jobs; this
// package's Worker processes them while the leader is kill -9'd; every job succeeds exactly once.
//
// The Python interpreter: env RAFTLINE_PYTHON, else `python3`, with clients/python/src (and
// clients/python) on PYTHONPATH. Skipped, saying why, when `import raftline` fails there.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { Client, Worker } = require('..');
const { Cluster, waitFor, REPO } = require('./support/cluster');

const JOBS = Number(process.env.RAFTLINE_XLANG_JOBS || 1000);
const QUEUE = 'xlang';
const PY_DIR = path.join(REPO, 'clients', 'python');

function pythonEnv(extra = {}) {
  const paths = [path.join(PY_DIR, 'src'), PY_DIR];
  if (process.env.PYTHONPATH) paths.push(process.env.PYTHONPATH);
  return { ...process.env, PYTHONPATH: paths.join(path.delimiter), ...extra };
}

const PYTHON = process.env.RAFTLINE_PYTHON || 'python3';

function pythonClientMissing() {
  const r = spawnSync(PYTHON, ['-c', 'import raftline; raftline.Client'], { env: pythonEnv(), encoding: 'utf8' });
  if (r.error) return `${PYTHON}: ${r.error.message}`;
  if (r.status !== 0) return `${PYTHON} can't import raftline from ${PY_DIR}: ${(r.stderr || '').trim().split('\n').pop()}`;
  return null;
}

test(`cross-language: ${JOBS} jobs from the Python client, run by the Node worker while the leader is killed`, async (t) => {
  const missing = pythonClientMissing();
  if (missing) {
    t.skip(`Python client not available (${missing})`);
    return;
  }
  const t0 = Date.now();
  const cluster = await new Cluster({ name: 'nodexlang' }).start();
  const client = new Client({ addrs: cluster.addrs, token: cluster.token });
  const runs = []; // [job id, attempt] for every handler run
  const successes = new Map(); // job id -> completions the cluster acknowledged as succeeded
  let worker;
  let ok = false;
  try {
    worker = new Worker(client, {
      queues: [QUEUE],
      concurrency: 8,
      pollWait: 2000,
      handler: async (job) => {
        runs.push([job.id, job.attempt]);
        assert.match(job.text(), /^job-\d+$/);
        await new Promise((r) => setTimeout(r, 2));
        return job.text();
      },
    });
    const warnings = [];
    worker.on('warning', (e) => warnings.push(e.message));
    worker.on('completed', (ctx, state) => {
      assert.equal(state, 'succeeded');
      successes.set(ctx.id, (successes.get(ctx.id) || 0) + 1);
    });
    worker.start();

    // The Python submitter, in the background.
    const py = spawn(PYTHON, [path.join(__dirname, 'support', 'py_submit.py'), QUEUE, String(JOBS)], {
      env: pythonEnv({ RAFTLINE_ADDRS: cluster.addrs.join(','), RAFTLINE_TOKEN: cluster.token }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    py.stdout.on('data', (c) => (out += c));
    py.stderr.on('data', (c) => (err += c));
    const pyDone = new Promise((resolve) => py.on('exit', (code) => resolve(code)));

    // Kill the leader once some jobs are done and more are pending.
    await waitFor('200 jobs done', () => successes.size >= 200, 60000, 20);
    const leader = await cluster.leader();
    const doneAtKill = successes.size;
    const killedAt = Date.now();
    await cluster.kill(leader);
    assert.ok(doneAtKill < JOBS, 'jobs were pending at the kill');

    const code = await pyDone;
    const submittedAt = Date.now();
    assert.equal(code, 0, `python submitter failed:\n${err}`);
    const ids = JSON.parse(out.trim().split('\n').pop()).ids.map(Number);
    assert.equal(ids.length, JOBS);
    assert.equal(new Set(ids).size, JOBS, 'every submit made its own job');

    await waitFor(`all ${JOBS} jobs succeeded`, async () => (await client.getQueue(QUEUE)).succeeded >= JOBS, 120000, 200);
    const allDoneAt = Date.now();
    const newLeader = await cluster.leader();
    await worker.stop();

    // The cluster's record: exactly the submitted jobs, each succeeded with one successful attempt.
    const jobs = [];
    for await (const j of client.listJobs({ queue: QUEUE, limit: 1000 })) jobs.push(j);
    assert.equal(jobs.length, JOBS, 'no retried submit made a second job');
    assert.deepEqual(jobs.map((j) => j.id).sort((a, b) => a - b), [...ids].sort((a, b) => a - b));
    for (const j of jobs) {
      assert.equal(j.state, 'succeeded', `job ${j.id}`);
      assert.equal(j.attempts.filter((a) => a.result === 'succeeded').length, 1, `job ${j.id}: one successful attempt`);
    }
    // The worker's record: every job reported succeeded exactly once.
    assert.equal(successes.size, JOBS);
    const twice = [...successes].filter(([, n]) => n !== 1);
    assert.deepEqual(twice, [], 'no job completed successfully twice');
    const perJob = new Map();
    for (const [id] of runs) perJob.set(id, (perJob.get(id) || 0) + 1);
    const reruns = [...perJob].filter(([, n]) => n > 1);
    const failedAttempts = jobs.reduce((n, j) => n + j.attempts.filter((a) => a.result !== 'succeeded').length, 0);
    console.log(
      `cross-language: ${JOBS} jobs submitted by Python, run by Node in ${Date.now() - t0} ms; ` +
        `leader ${leader} killed after ${doneAtKill} done (new leader ${newLeader}); ` +
        `handler runs ${runs.length}, jobs run more than once ${reruns.length}` +
        `${reruns.length ? ` (${reruns.slice(0, 10).map(([id, n]) => `${id}x${n}`).join(', ')})` : ''}, ` +
        `attempts not succeeded ${failedAttempts}; worker stats ${JSON.stringify(worker.stats)}; ` +
        `warnings ${warnings.length}; after the kill: Python done in ${submittedAt - killedAt} ms, all succeeded in ${allDoneAt - killedAt} ms`,
    );
    ok = true;
  } finally {
    if (worker) await worker.stop();
    client.close();
    if (!ok) console.error(cluster.tails(40));
    await cluster.stop({ keep: !ok });
  }
});
