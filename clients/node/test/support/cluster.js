'use strict';
// A real 3-node raftline cluster for tests: a temp dir with a cluster.toml, ports the OS gave,
// one `raftline node` process per node, logs to files. Waits on conditions, never bare sleeps.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const http = require('node:http');
const https = require('node:https');
const { spawn, execFileSync } = require('node:child_process');

const CLIENT_DIR = path.resolve(__dirname, '..', '..');
const REPO = path.resolve(CLIENT_DIR, '..', '..');

function binary() {
  const env = process.env.RAFTLINE_BIN;
  if (!env) return path.resolve(REPO, 'target', 'debug', 'raftline');
  if (path.isAbsolute(env) || fs.existsSync(env)) return path.resolve(env);
  // Relative to the repository root, as CI gives it (RAFTLINE_BIN=target/debug/raftline).
  return path.resolve(REPO, env);
}

/** Resolves once the binary exists and is executable (it may still be building). */
async function waitForBinary(timeoutMs = 600000) {
  const bin = binary();
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      fs.accessSync(bin, fs.constants.X_OK);
      return bin;
    } catch {
      if (Date.now() > end) throw new Error(`raftline binary not found at ${bin} (set RAFTLINE_BIN)`);
      await sleep(1000);
    }
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** `n` distinct free TCP ports on 127.0.0.1: bind port 0 n times, read them, then close all. */
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      srv.unref();
      await new Promise((resolve, reject) => {
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', resolve);
      });
      servers.push(srv);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

async function freePort() {
  return (await freePorts(1))[0];
}

/** GET url without a token; resolves {status, body} or null on a connection error. */
function probe(url, ca) {
  return new Promise((resolve) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { timeout: 2000, ca, agent: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => {
        let body = null;
        try {
          body = JSON.parse(data);
        } catch {
          body = data;
        }
        resolve({ status: res.statusCode, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(null));
  });
}

async function waitFor(what, fn, timeoutMs = 60000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      if (e && e.fatal) throw e;
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
    await sleep(everyMs);
  }
}

class Cluster {
  /**
   * @param {{tls?: boolean, size?: number, name?: string}} opts
   */
  constructor(opts = {}) {
    this.tls = !!opts.tls;
    this.size = opts.size || 3;
    this.name = opts.name || 'nodetest';
    this.dir = null;
    this.nodes = []; // {id, raft, api, http, proc, log}
    this.token = null;
    this.ca = null;
    this.caFile = null;
  }

  get scheme() {
    return this.tls ? 'https' : 'http';
  }

  /** Every node's http address, `127.0.0.1:port` (or an https URL with TLS). */
  get addrs() {
    return this.nodes.map((n) => (this.tls ? `https://127.0.0.1:${n.http}` : `127.0.0.1:${n.http}`));
  }

  /** Starts the cluster; tries again with new ports if a node can't bind one (another process took it). */
  async start() {
    for (let tries = 1; ; tries++) {
      try {
        return await this._start();
      } catch (e) {
        const again = tries < 3 && e.portClash;
        if (!again) e.message += `\n${this.tails(30)}`;
        await this.stop({ keep: !again });
        if (!again) throw e;
        this.nodes = [];
      }
    }
  }

  async _start() {
    const bin = await waitForBinary();
    this.bin = bin;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'raftline-node-'));
    const ports = await freePorts(3 * this.size);
    for (let id = 1; id <= this.size; id++) {
      const [raft, api, http] = ports.slice(3 * (id - 1), 3 * id);
      this.nodes.push({ id, raft, api, http, proc: null });
    }
    let toml = `[cluster]
name = "${this.name}"
data_dir = "data"
heartbeat_ms = 50
election_timeout_min_ms = 200
election_timeout_max_ms = 400
request_timeout_ms = 5000
workers_min = 0
workers_max = 0
`;
    if (this.tls) {
      toml += `
[tls]
ca_file = "certs/ca.pem"
cert_file = "certs/node-{id}.pem"
key_file = "certs/node-{id}-key.pem"
`;
    }
    for (const n of this.nodes) {
      toml += `
[[node]]
id = ${n.id}
raft_addr = "127.0.0.1:${n.raft}"
api_addr = "127.0.0.1:${n.api}"
http_addr = "127.0.0.1:${n.http}"
`;
    }
    this.config = path.join(this.dir, 'cluster.toml');
    fs.writeFileSync(this.config, toml);
    if (this.tls) {
      execFileSync(bin, ['certs', 'init', '--config', this.config, '--dir', path.join(this.dir, 'certs')], {
        cwd: this.dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.caFile = path.join(this.dir, 'certs', 'ca.pem');
      this.ca = fs.readFileSync(this.caFile);
    }
    for (const n of this.nodes) this.startNode(n.id);
    await this.waitReady();
    this.token = fs.readFileSync(path.join(this.dir, 'data', 'node-1', 'bootstrap-token'), 'utf8').trim();
    return this;
  }

  node(id) {
    return this.nodes.find((n) => n.id === id);
  }

  startNode(id) {
    const n = this.node(id);
    n.log = path.join(this.dir, `node-${id}.log`);
    const fd = fs.openSync(n.log, 'a');
    n.proc = spawn(this.bin, ['node', '--config', this.config, '--id', String(id)], {
      cwd: this.dir,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
    });
    fs.closeSync(fd);
    n.exited = new Promise((resolve) => n.proc.on('exit', (code, sig) => resolve({ code, sig })));
  }

  url(n, p) {
    return `${this.scheme}://127.0.0.1:${n.http}${p}`;
  }

  /** Waits until every running node answers /ready with 200. */
  async waitReady(timeoutMs = 60000) {
    for (const n of this.nodes) {
      if (!n.proc || n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
      await waitFor(`node ${n.id} ready`, async () => {
        if (n.proc.exitCode !== null) {
          const log = this.tail(n.id);
          const e = new Error(`node ${n.id} exited ${n.proc.exitCode}\n${log}`);
          e.fatal = true;
          e.portClash = /in use|used twice|bind/i.test(log);
          throw e;
        }
        const r = await probe(this.url(n, '/ready'), this.ca);
        return r && r.status === 200;
      }, timeoutMs);
    }
  }

  /** The leader's id as a running node sees it (from /health, no token needed). */
  async leader(timeoutMs = 30000) {
    return waitFor('a leader', async () => {
      for (const n of this.nodes) {
        if (!n.proc || n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
        const r = await probe(this.url(n, '/health'), this.ca);
        if (r && r.status === 200 && r.body && r.body.state === 'leader') return r.body.id;
      }
      return null;
    }, timeoutMs);
  }

  /** kill -9 a node; resolves once it has exited. */
  async kill(id) {
    const n = this.node(id);
    if (!n.proc || n.proc.exitCode !== null || n.proc.signalCode !== null) return;
    n.proc.kill('SIGKILL');
    await n.exited;
  }

  tail(id, lines = 40) {
    const n = this.node(id);
    try {
      const text = fs.readFileSync(n.log, 'utf8').split('\n');
      return text.slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  tails(lines = 40) {
    return this.nodes.map((n) => `--- node-${n.id}.log (last ${lines} lines) ---\n${this.tail(n.id, lines)}`).join('\n');
  }

  async stop({ keep = false } = {}) {
    await Promise.all(
      this.nodes.map(async (n) => {
        if (n.proc && n.proc.exitCode === null && n.proc.signalCode === null) {
          n.proc.kill('SIGTERM');
          const t = setTimeout(() => n.proc.kill('SIGKILL'), 5000);
          await n.exited;
          clearTimeout(t);
        }
      }),
    );
    if (!keep && this.dir && !process.env.RAFTLINE_KEEP_TEST_DIRS) {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

module.exports = { REPO, Cluster, waitFor, sleep, freePort, binary, waitForBinary, CLIENT_DIR };
