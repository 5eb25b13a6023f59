'use strict';
// TLS: a cluster with [tls] on; the client checks the nodes against the cluster's CA.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client, Worker, RaftlineError } = require('..');
const { Cluster } = require('./support/cluster');

test('TLS: submit, get and a worker over HTTPS with the cluster CA; no CA, no connection', async () => {
  const cluster = await new Cluster({ tls: true, name: 'nodetls' }).start();
  let ok = false;
  try {
    // Bare host:port addresses with a CA file given: https.
    const bare = cluster.addrs.map((a) => a.replace('https://', ''));
    const client = new Client({ addrs: bare, token: cluster.token, ca: cluster.caFile });
    assert.ok(client.addrs.every((a) => a.protocol === 'https:'));
    const id = await client.submit({ queue: 'tls', payload: 'secret' });
    const w = new Worker(client, { queues: ['tls'], pollWait: 1000, handler: async (job) => job.text().toUpperCase() });
    w.start();
    try {
      const job = await client.wait(id, { timeout: 20000 });
      assert.equal(job.state, 'succeeded');
      assert.equal(job.attempts[0].output_tail, 'SECRET');
    } finally {
      await w.stop();
      client.close();
    }

    // The CA as PEM contents works too; RAFTLINE_CA_FILE is the default.
    const env = new Client({ addrs: cluster.addrs, token: cluster.token, ca: cluster.ca });
    assert.equal((await env.getJob(id)).state, 'succeeded');
    env.close();

    // Without the CA the node's certificate is not trusted: refused at once, not retried for
    // the whole deadline.
    const untrusting = new Client({ addrs: cluster.addrs, token: cluster.token });
    const t0 = Date.now();
    await assert.rejects(untrusting.getJob(id), (e) => {
      assert.ok(e instanceof RaftlineError);
      assert.equal(e.status, 'UNAVAILABLE');
      assert.match(e.message, /certificate/i);
      return true;
    });
    assert.ok(Date.now() - t0 < 5000);
    untrusting.close();
    ok = true;
  } finally {
    if (!ok) console.error(cluster.tails(40));
    await cluster.stop({ keep: !ok });
  }
});
