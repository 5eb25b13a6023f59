// raftline dashboard: a single page that reads the REST API under /v1/ with the viewer's token
// and re-reads its current view whenever /ui/changes says this node applied new entries.
// No framework and no build step: the node embeds this file as it is.
"use strict";

const TOKEN_KEY = "raftline.token";
const PAGE = 50;
const STATES = ["scheduled", "ready", "leased", "succeeded", "dead", "cancelled"];
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

let token = sessionStorage.getItem(TOKEN_KEY);
let route = { view: "cluster", arg: "", params: {} };
let tables = []; // the tables on screen, for export: {name, columns, rows}
let loading = false;
let pending = false;
let streamAbort = null;
let cursors = []; // job paging: the after_id of each earlier page
let renders = 0;

const $ = (sel) => document.querySelector(sel);

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ---- time -------------------------------------------------------------------------------

function ago(ms) {
  const s = Math.round((ms - Date.now()) / 1000);
  const a = Math.abs(s);
  if (a < 60) return rtf.format(s, "second");
  if (a < 3600) return rtf.format(Math.round(s / 60), "minute");
  if (a < 86400) return rtf.format(Math.round(s / 3600), "hour");
  return rtf.format(Math.round(s / 86400), "day");
}

// A time in the viewer's zone with a relative part, or a dash.
function when(ms, tz) {
  if (!ms) return '<span class="muted">—</span>';
  const d = new Date(ms);
  const local = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  const other = tz && tz !== zone
    ? ` <span class="muted">${esc(d.toLocaleString(undefined, { timeZone: tz, timeStyle: "short", dateStyle: "short" }))} ${esc(tz)}</span>`
    : "";
  return `<time data-ms="${ms}" title="${esc(d.toISOString())}">${esc(local)} <span class="rel muted">(${esc(ago(ms))})</span></time>${other}`;
}

function iso(ms) {
  return ms ? new Date(ms).toISOString() : "";
}

function span(ms) {
  if (ms == null) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(ms / 3600000)} h ${Math.round((ms % 3600000) / 60000)} min`;
}

function badge(state) {
  return state ? `<span class="state ${esc(state)}">${esc(state)}</span>` : "";
}

// ---- API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body, what) {
    const e = (body && body.error) || {};
    super(`${what}: ${status} ${e.status || ""} ${e.message || (body && body.raw) || ""}`.trim());
    this.status = status;
    this.body = body;
  }
}

// Reads made for a change event are served from this node's own state (`stale=true`, no Raft
// round): the event said this node has applied the change, so its state already shows it. The
// first read of a view and the one after an action go through the leader's read barrier.
let staleReads = false;

async function api(method, path, body) {
  if (staleReads && method === "GET" && !path.startsWith("/v1/cluster/")) {
    path += (path.includes("?") ? "&" : "?") + "stale=true";
  }
  const headers = { Authorization: `Bearer ${token}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data;
  try { data = JSON.parse(text); } catch (_) { data = { raw: text }; }
  if (!r.ok) throw new ApiError(r.status, data, `${method} ${path.split("?")[0]}`);
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "" && v !== null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ---- rates from /metrics ----------------------------------------------------------------

// Samples of this node's Prometheus counters (no token needed, same origin), the last minute
// of them; a rate is the change from the oldest sample to the newest over their time apart.
const samples = [];
const SAMPLE_MS = 2000;
const SAMPLE_WINDOW_MS = 60000;

async function sampleMetrics() {
  try {
    const r = await fetch("/metrics");
    if (!r.ok) return;
    const m = new Map();
    for (const line of (await r.text()).split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const at = line.lastIndexOf(" ");
      m.set(line.slice(0, at), Number(line.slice(at + 1)));
    }
    samples.push({ t: Date.now(), m });
    while (samples.length > 2 && samples[0].t < Date.now() - SAMPLE_WINDOW_MS) samples.shift();
  } catch (_) { /* no rates this time */ }
}

// Per second, over the samples held; null until they span a few seconds.
function rate(series) {
  if (samples.length < 2) return null;
  const a = samples[0];
  const b = samples[samples.length - 1];
  const dt = (b.t - a.t) / 1000;
  const now = b.m.get(series);
  if (dt < 3 || now === undefined) return null;
  return Math.max(0, (now - (a.m.get(series) ?? 0)) / dt);
}

function perSecond(series) {
  const r = rate(series);
  return r === null ? "—" : r < 10 ? r.toFixed(1) : String(Math.round(r));
}

function rateSpan() {
  return samples.length < 2 ? "" : `per second over the last ${Math.round((samples[samples.length - 1].t - samples[0].t) / 1000)} s`;
}

// ---- tables and export ------------------------------------------------------------------

// cols: [{key, label, num, html(row), raw(row)}]; every table on screen can be exported.
function table(name, cols, rows, rowAttrs) {
  const i = tables.length;
  tables.push({
    name,
    columns: cols.map((c) => c.label),
    rows: rows.map((r) => cols.map((c) => (c.raw ? c.raw(r) : r[c.key]))),
  });
  const head = cols.map((c) => `<th${c.num ? ' class="num"' : ""}>${esc(c.label)}</th>`).join("");
  const body = rows.map((r) => {
    const cells = cols.map((c) => {
      const v = c.html ? c.html(r) : esc(c.raw ? c.raw(r) : r[c.key]);
      return `<td data-col="${esc(c.key)}"${c.num ? ' class="num"' : ""}>${v}</td>`;
    }).join("");
    return `<tr ${rowAttrs ? rowAttrs(r) : ""}>${cells}</tr>`;
  }).join("");
  const empty = rows.length ? "" : `<tr><td colspan="${cols.length}" class="muted">none</td></tr>`;
  return `<div class="tools"><strong>${esc(name)}</strong> <span class="muted" data-count="${esc(name)}">${rows.length} rows</span>
    <button type="button" data-action="export" data-table="${i}" data-format="csv">CSV</button>
    <button type="button" data-action="export" data-table="${i}" data-format="json">JSON</button></div>
    <table data-table="${esc(name)}"><thead><tr>${head}</tr></thead><tbody>${body}${empty}</tbody></table>`;
}

function csvCell(v) {
  const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function exportTable(i, format) {
  const t = tables[i];
  if (!t) return;
  let text;
  let type;
  if (format === "csv") {
    text = [t.columns, ...t.rows].map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
    type = "text/csv";
  } else {
    text = JSON.stringify(t.rows.map((r) => Object.fromEntries(t.columns.map((c, j) => [c, r[j]]))), null, 2);
    type = "application/json";
  }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = `raftline-${t.name.toLowerCase().replace(/[^a-z0-9]+/g, "-")}-${new Date().toISOString().slice(0, 19).replace(/:/g, "")}.${format}`;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// ---- views ------------------------------------------------------------------------------

function cards(items) {
  return `<div class="cards">${items.map(([k, v, id]) =>
    `<div class="card"${id ? ` data-card="${esc(id)}"` : ""}><div class="k">${esc(k)}</div><div class="v">${v}</div></div>`).join("")}</div>`;
}

function argv(job) {
  if (job.shell) return job.shell.argv.join(" ");
  return job.payload !== undefined ? `payload (${Math.floor((job.payload || "").length * 3 / 4)} bytes)` : "";
}

const jobCols = [
  { key: "id", label: "ID", num: true, html: (j) => `<a href="#/job/${j.id}">${j.id}</a>` },
  { key: "queue", label: "Queue" },
  { key: "state", label: "State", html: (j) => badge(j.state) },
  { key: "attempts", label: "Attempts", num: true, raw: (j) => `${j.attempts_used}/${j.max_attempts}` },
  { key: "command", label: "Command", raw: argv },
  { key: "tags", label: "Tags", raw: (j) => j.tags.join(" ") },
  { key: "created", label: "Created", html: (j) => when(j.created_ms), raw: (j) => iso(j.created_ms) },
  { key: "finished", label: "Finished", html: (j) => when(j.finished_ms), raw: (j) => iso(j.finished_ms) },
  { key: "error", label: "Error" },
];

const jobRow = (j) => `data-id="${j.id}" data-state="${esc(j.state)}"`;

const views = {
  cluster: {
    title: "Cluster",
    // Replication progress comes from the leader through the membership call's read-only
    // `progress` action (admin tokens); NodeStatus carries no per-member progress.
    async load() {
      const status = await api("GET", "/v1/cluster/status");
      let progress = null;
      let why = "";
      try {
        progress = await api("POST", "/v1/cluster/membership", { action: "progress" });
      } catch (e) {
        why = e.status === 403 ? "replication progress needs an admin token" : `replication progress: ${e.message}`;
      }
      return { s: status, p: progress, why };
    },
    render({ s, p, why }) {
      const matched = new Map(((p && p.members) || []).map((m) => [m.id, m.matched_index]));
      const role = (m) => (m.id === s.leader ? "leader" : m.id === s.id ? s.state : "follower");
      const lag = (m) => {
        const at = matched.get(m.id);
        if (p && at != null) return p.leader_last_log_index - at;
        return m.id === s.id ? s.last_log_index - s.last_applied : null;
      };
      const members = table("Members", [
        { key: "id", label: "Node", num: true },
        { key: "role", label: "Role", html: (m) => badge(role(m)) + (m.id === s.id ? ' <span class="muted">(this node)</span>' : ""), raw: role },
        { key: "voter", label: "Voter", raw: (m) => (m.voter ? "yes" : "learner") },
        { key: "raft_addr", label: "Raft address" },
        { key: "api_addr", label: "API address" },
        { key: "matched", label: "Matched index", num: true, raw: (m) => matched.get(m.id) ?? "" },
        { key: "lag", label: "Lag (entries)", num: true, raw: (m) => lag(m) ?? "", html: (m) => (lag(m) == null ? `<span class="muted" title="${esc(why)}">—</span>` : esc(lag(m))) },
      ], s.members, (m) => `data-node="${m.id}"`);
      return `<h1>Cluster <span class="muted">${esc(s.cluster)}</span></h1>` + cards([
        ["This node", esc(s.id), "id"], ["State", badge(s.state), "state"], ["Leader", esc(s.leader ?? "none"), "leader"],
        ["Term", esc(s.term), "term"], ["Applied index", esc(s.last_applied), "applied"], ["Last log index", esc(s.last_log_index), "last_log"],
        ["Leader's last index", esc(p ? p.leader_last_log_index : "—"), "leader_last"],
        ["Snapshot index", esc(s.snapshot_index), "snapshot"], ["Members", esc(s.members.length), "members"],
        ["Log fsyncs/s", perSecond("raftline_log_fsyncs"), "fsync_rate"],
        ["Submits/s", perSecond('raftline_applied_commands_total{command="Submit"}'), "submit_rate"],
        ["Completions/s", perSecond('raftline_applied_commands_total{command="Complete"}'), "complete_rate"],
      ]) + `<p class="muted">Rates: this node's counters, ${esc(rateSpan() || "once a few seconds are sampled")}.</p>` + members + (why ? `<p class="muted">Lag of other members unknown: ${esc(why)}.</p>` : "");
    },
  },

  queues: {
    title: "Queues",
    load: () => api("GET", "/v1/queues"),
    render(d) {
      const n = (k) => ({ key: k, label: k[0].toUpperCase() + k.slice(1).replace("_", " "), num: true });
      shownQueues = d.queues;
      const total = (k) => d.queues.reduce((a, q) => a + q[k], 0);
      return "<h1>Queues</h1>" + cards(STATES.map((s) => [s, esc(total(s)), `total-${s}`])) + table("Queues", [
        { key: "queue", label: "Queue", html: (q) => `<a href="#/jobs?queue=${encodeURIComponent(q.queue)}">${esc(q.queue)}</a>` },
        { key: "paused", label: "Paused", raw: (q) => (q.paused ? "paused" : ""), html: (q) => (q.paused ? badge("paused") : "") },
        n("scheduled"), n("ready"), n("leased"), n("succeeded"), n("dead"), n("cancelled"), n("deadline_missed"),
        { key: "leased_rate", label: "First leases/s", num: true, raw: (q) => perSecond(`raftline_job_wait_seconds_count{queue="${q.queue}"}`) },
        { key: "ended_rate", label: "Ended/s", num: true, raw: (q) => perSecond(`raftline_job_run_seconds_count{queue="${q.queue}"}`) },
        { key: "policy", label: "Policy", raw: policyText, html: policyHtml },
        { key: "breaker", label: "Breaker", raw: (q) => q.breaker_state, html: (q) => badge(q.breaker_state) + (q.recent_outcomes ? ` <span class="muted">${q.recent_failures}/${q.recent_outcomes} failed</span>` : "") },
        { key: "actions", label: "", raw: () => "", html: (q) => op(`<button type="button" data-action="${q.paused ? "resume" : "pause"}" data-queue="${esc(q.queue)}">${q.paused ? "Resume" : "Pause"}</button> `) + policyButton(q) },
      ], d.queues, (q) => `data-queue="${esc(q.queue)}" data-paused="${q.paused}" ${policyAttrs(q)}`);
    },
  },

  jobs: {
    title: "Jobs",
    head(p) {
      const opt = (s) => `<option value="${s}"${p.state === s ? " selected" : ""}>${s || "any state"}</option>`;
      return `<h1>Jobs</h1><form class="filters" id="job-filters">
        <input name="queue" placeholder="queue" value="${esc(p.queue)}">
        <select name="state">${["", ...STATES].map(opt).join("")}</select>
        <input name="tag" placeholder="tag" value="${esc(p.tag)}">
        <input name="text" placeholder="text in command or error" value="${esc(p.text)}" size="28">
        <button type="submit">Search</button></form>`;
    },
    load: (p) => api("GET", "/v1/jobs" + query({ queue: p.queue, state: p.state, tag: p.tag, text: p.text, after_id: p.after, limit: PAGE })),
    render(d, p) {
      const pager = `<div class="tools">
        <button type="button" data-action="page-prev"${cursors.length ? "" : " disabled"}>Previous</button>
        <button type="button" data-action="page-next" data-after="${d.next_after_id}"${d.next_after_id ? "" : " disabled"}>Next</button>
        <span class="muted">${p.after ? `after job ${esc(p.after)}` : "from the first job"}</span></div>`;
      return table("Jobs", jobCols, d.jobs, jobRow) + pager;
    },
  },

  job: {
    title: "Job",
    load: (p, id) => api("GET", `/v1/jobs/${encodeURIComponent(id)}`),
    render(j) {
      const finished = ["succeeded", "dead", "cancelled"].includes(j.state);
      const buttons = op((finished || j.state === "scheduled" ? `<button type="button" data-action="retry" data-id="${j.id}">Retry</button> ` : "")
        + (finished ? "" : `<button type="button" class="danger" data-action="cancel" data-id="${j.id}">Cancel</button>`));
      const kv = [
        ["State", badge(j.state)], ["Queue", `<a href="#/jobs?queue=${encodeURIComponent(j.queue)}">${esc(j.queue)}</a>`],
        ["Command", `<code>${esc(argv(j))}</code>`], ["Priority", esc(j.priority)],
        ["Attempts", `${j.attempts_used} of ${j.max_attempts} (${j.attempts_total} in all)`],
        ["Created", when(j.created_ms)], ["Run at", when(j.run_at_ms)], ["Finished", when(j.finished_ms)],
        ["Deadline", when(j.deadline_ms) + (j.deadline_missed ? " " + badge("missed") : "")],
        ["Lease", j.lease_token != null ? `token ${j.lease_token} by ${esc(j.lease_worker)}, expires ${when(j.lease_expires_ms)}` : "—"],
        ["Tags", esc(j.tags.join(", ") || "—")], ["Resources", esc(j.resources.join(", ") || "—")],
        ["Submitted by", esc(j.submitted_by_name || "—")], ["Error", esc(j.error || "—")],
      ];
      const attempts = table("Attempts", [
        { key: "number", label: "#", num: true },
        { key: "node", label: "Node", num: true, raw: (a) => a.node ?? "" },
        { key: "worker", label: "Worker" },
        { key: "result", label: "Result", html: (a) => badge(a.result) + (a.error_class ? ` <span class="muted">${esc(a.error_class)}</span>` : ""), raw: (a) => a.result },
        { key: "exit_code", label: "Exit code", num: true, raw: (a) => a.exit_code ?? "" },
        { key: "started", label: "Started", html: (a) => when(a.started_ms), raw: (a) => iso(a.started_ms) },
        { key: "ended", label: "Ended", html: (a) => when(a.ended_ms), raw: (a) => iso(a.ended_ms) },
        { key: "duration", label: "Ran for", raw: (a) => (a.ended_ms ? span(a.ended_ms - a.started_ms) : "") },
        { key: "error", label: "Error" },
        { key: "output_tail", label: "Output (tail)", html: (a) => (a.output_tail ? `<pre>${esc(a.output_tail)}</pre>` : "") },
      ], j.attempts, (a) => `data-attempt="${a.number}" data-result="${esc(a.result)}"`);
      const events = [[j.created_ms, `submitted to ${j.queue}`]];
      if (j.run_at_ms > j.created_ms) events.push([j.run_at_ms, "due"]);
      for (const a of j.attempts) {
        events.push([a.started_ms, `attempt ${a.number} started on node ${a.node ?? "?"} by ${a.worker}`]);
        if (a.ended_ms) events.push([a.ended_ms, `attempt ${a.number} ${a.result}${a.exit_code != null ? ` (exit ${a.exit_code})` : ""}${a.error ? `: ${a.error}` : ""}`]);
      }
      if (j.finished_ms) events.push([j.finished_ms, `finished: ${j.state}`]);
      events.sort((a, b) => a[0] - b[0]);
      const timeline = `<h2>Timeline</h2><ul class="timeline">${events.map(([t, what]) =>
        `<li><span class="t">${when(t)}</span> ${esc(what)}</li>`).join("")}</ul>`;
      return `<h1>Job ${j.id} ${badge(j.state)}</h1><p>${buttons}</p>
        <dl class="kv" data-job="${j.id}" data-state="${esc(j.state)}">${kv.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>
        <h2>Attempts</h2>${attempts}${timeline}`;
    },
  },

  dead: {
    title: "Dead letters",
    head(p) {
      return `<h1>Dead letters</h1><form class="filters" id="dead-filters">
        <input name="queue" placeholder="queue (all when empty)" value="${esc(p.queue)}">
        <button type="submit">Show</button></form>`;
    },
    async load(p) {
      const [queues, jobs] = await Promise.all([
        api("GET", "/v1/queues"),
        api("GET", "/v1/jobs" + query({ state: "dead", queue: p.queue, after_id: p.after, limit: PAGE })),
      ]);
      return { queues: queues.queues.filter((q) => q.dead > 0 && (!p.queue || q.queue === p.queue)), jobs };
    },
    render(d) {
      const byQueue = table("Dead by queue", [
        { key: "queue", label: "Queue" },
        { key: "dead", label: "Dead", num: true },
        { key: "actions", label: "", raw: () => "", html: (q) => op(confirmButton(`requeue-all:${q.queue}`, `Requeue all ${q.dead}`,
          `Click again to requeue ${q.dead} dead jobs of ${q.queue}`, `data-action="requeue-all" data-queue="${esc(q.queue)}"`)) },
      ], d.queues, (q) => `data-queue="${esc(q.queue)}" data-dead="${q.dead}"`);
      const cols = [...jobCols.filter((c) => c.key !== "finished"),
        { key: "died", label: "Died", html: (j) => when(j.finished_ms), raw: (j) => iso(j.finished_ms) },
        { key: "actions", label: "", raw: () => "", html: (j) => op(`<button type="button" data-action="retry" data-id="${j.id}">Requeue</button>`) }];
      const more = d.jobs.next_after_id ? `<p><button type="button" data-action="page-next" data-after="${d.jobs.next_after_id}">More</button></p>` : "";
      return byQueue + "<h2>Dead jobs</h2>" + table("Dead jobs", cols, d.jobs.jobs, jobRow) + more;
    },
  },

  workflows: {
    title: "Workflows",
    head(p) {
      const opt = (s) => `<option value="${s}"${p.state === s ? " selected" : ""}>${s || "any state"}</option>`;
      return `<h1>Workflows</h1><form class="filters" id="wf-filters"><select name="state">${["", "running", "compensating", "succeeded", "failed", "cancelled"].map(opt).join("")}</select><button type="submit">Show</button></form>`;
    },
    load: (p) => api("GET", "/v1/workflows" + query({ state: p.state, limit: 1000 })),
    render(d) {
      return table("Workflows", [
        { key: "id", label: "ID", num: true, html: (w) => `<a href="#/workflow/${w.id}">${w.id}</a>` },
        { key: "name", label: "Name" },
        { key: "state", label: "State", html: (w) => badge(w.state) + (w.paused ? " " + badge("paused") : "") },
        { key: "running", label: "Running", num: true },
        { key: "policy", label: "Failure policy", raw: (w) => w.failure_policy },
        { key: "created", label: "Created", html: (w) => when(w.created_ms), raw: (w) => iso(w.created_ms) },
        { key: "finished", label: "Finished", html: (w) => when(w.finished_ms), raw: (w) => iso(w.finished_ms) },
      ], d.workflows, (w) => `data-id="${w.id}" data-state="${esc(w.state)}"`);
    },
  },

  workflow: {
    title: "Workflow",
    load: (p, id) => api("GET", `/v1/workflows/${encodeURIComponent(id)}`),
    render(w) {
      const steps = table("Steps", [
        { key: "name", label: "Step" },
        { key: "state", label: "State", html: (s) => badge(s.state) + (s.on_critical_path ? ' <span class="muted">critical</span>' : "") },
        { key: "queue", label: "Queue" },
        { key: "job", label: "Job", num: true, raw: (s) => s.job_id || "", html: (s) => (s.job_id ? `<a href="#/job/${s.job_id}">${s.job_id}</a>` : "") },
        { key: "depends_on", label: "Depends on", raw: (s) => s.depends_on.map((d) => d.step + (d.condition && d.condition !== "success" ? ` (${d.condition})` : "")).join(", ") },
        { key: "attempts", label: "Runs / attempts", raw: (s) => `${s.runs} / ${s.attempts}` },
        { key: "started", label: "Started", html: (s) => when(s.started_ms), raw: (s) => iso(s.started_ms) },
        { key: "ended", label: "Ended", html: (s) => when(s.ended_ms), raw: (s) => iso(s.ended_ms) },
        { key: "duration", label: "Ran for", raw: (s) => (s.started_ms ? span((s.ended_ms || w.now_ms) - s.started_ms) : "") },
        { key: "error", label: "Error" },
        { key: "actions", label: "", raw: () => "", html: (s) => stepButtons(w, s) },
      ], w.steps, (s) => `data-step="${esc(s.name)}" data-state="${esc(s.state)}"`);
      return `<h1>Workflow ${w.id} <span class="muted">${esc(w.name)}</span> ${badge(w.state)}${w.paused ? " " + badge("paused") : ""}</h1>`
        + `<p class="tools" data-workflow="${w.id}" data-state="${esc(w.state)}" data-paused="${w.paused}">${workflowButtons(w)}</p>` + cards([
        ["Steps", esc(w.steps.length)], ["Running", esc(w.running)], ["Critical path", esc(span(w.critical_path_ms))],
        ["Created", when(w.created_ms)], ["Finished", when(w.finished_ms)],
      ]) + `<p class="muted">Critical path: ${esc(w.critical_path.join(" → ") || "—")}</p>`
        + "<h2>Graph</h2>" + graph(w) + "<h2>Gantt</h2>" + gantt(w) + "<h2>Steps</h2>" + steps;
    },
  },

  schedules: {
    title: "Schedules",
    load: () => api("GET", "/v1/schedules"),
    render(d) {
      const last = (s) => s.history[s.history.length - 1];
      return `<h1>Schedules</h1><p class="muted">Next fire times in your zone (${esc(zone)}) and in the schedule's own.</p>` + table("Schedules", [
        { key: "id", label: "ID", num: true, html: (s) => `<a href="#/schedule/${s.id}">${s.id}</a>` },
        { key: "name", label: "Name", html: (s) => `<a href="#/schedule/${s.id}">${esc(s.name)}</a>` },
        { key: "cron", label: "Cron" },
        { key: "tz", label: "Zone", raw: (s) => s.tz || "UTC" },
        { key: "target", label: "Runs" },
        { key: "paused", label: "Paused", raw: (s) => (s.paused ? "paused" : "") },
        { key: "next", label: "Next fire", html: (s) => when(s.next_fire_ms, s.tz || "UTC"), raw: (s) => iso(s.next_fire_ms) },
        { key: "runs_started", label: "Runs started", num: true },
        { key: "last", label: "Last run", raw: (s) => (last(s) ? `${last(s).outcome} ${last(s).state}`.trim() : ""), html: (s) => (last(s) ? `${when(last(s).at_ms)} ${esc(last(s).outcome)} ${badge(last(s).state)}` : "") },
        { key: "actions", label: "", raw: () => "", html: (s) => op(`<button type="button" data-action="trigger" data-id="${s.id}">Trigger now</button>`) },
      ], d.schedules, (s) => `data-id="${s.id}" data-name="${esc(s.name)}"`);
    },
  },

  schedule: {
    title: "Schedule",
    load: (p, id) => api("GET", `/v1/schedules/${encodeURIComponent(id)}`),
    render(s) {
      const runs = [...s.history].reverse();
      return `<h1>Schedule ${esc(s.name)} ${op(`<button type="button" data-action="trigger" data-id="${s.id}">Trigger now</button>`)}</h1>` + cards([
        ["Cron", esc(s.cron)], ["Zone", esc(s.tz || "UTC")], ["Next fire", when(s.next_fire_ms, s.tz || "UTC")],
        ["Runs started", esc(s.runs_started)], ["Catch-up", esc(s.catch_up)], ["Overlap", esc(s.overlap)],
      ]) + `<p>Runs: <code>${esc(s.target)}</code></p>` + table("History", [
        { key: "tick", label: "Tick", html: (r) => when(r.tick_ms, s.tz || "UTC"), raw: (r) => iso(r.tick_ms) },
        { key: "at", label: "Started", html: (r) => when(r.at_ms), raw: (r) => iso(r.at_ms) },
        { key: "manual", label: "Manual", raw: (r) => (r.manual ? "manual" : "") },
        { key: "outcome", label: "Outcome" },
        { key: "target", label: "Job / workflow", raw: (r) => r.job_id || r.workflow_id || "", html: (r) => (r.job_id ? `<a href="#/job/${r.job_id}">job ${r.job_id}</a>` : r.workflow_id ? `<a href="#/workflow/${r.workflow_id}">workflow ${r.workflow_id}</a>` : "") },
        { key: "state", label: "State", html: (r) => badge(r.state) },
        { key: "reason", label: "Reason" },
      ], runs);
    },
  },

  resources: {
    title: "Resources & locks",
    load: () => api("GET", "/v1/resources"),
    render(d) {
      const locks = d.resources.flatMap((r) => r.locks.map((l) => ({ resource: r.name, ...l })));
      const uses = (list) => list.map((u) => `job ${u.job_id}×${u.units}`).join(", ");
      return "<h1>Resources &amp; locks</h1>" + table("Resources", [
        { key: "name", label: "Resource" },
        { key: "capacity", label: "Capacity", num: true },
        { key: "used_by_jobs", label: "Used by jobs", num: true },
        { key: "locks", label: "Locks held", num: true, raw: (r) => r.locks.length },
        { key: "holders", label: "Held by", raw: (r) => uses(r.job_holders), html: (r) => r.job_holders.map((u) => `<a href="#/job/${u.job_id}">job ${u.job_id}</a>×${u.units}`).join(", ") },
        { key: "waiters", label: "Waiting", raw: (r) => uses(r.waiters), html: (r) => r.waiters.map((u) => `<a href="#/job/${u.job_id}">job ${u.job_id}</a>×${u.units}`).join(", ") },
      ], d.resources, (r) => `data-name="${esc(r.name)}"`) + "<h2>Locks</h2>" + table("Locks", [
        { key: "resource", label: "Resource" },
        { key: "owner", label: "Owner" },
        { key: "token", label: "Fencing token", num: true },
        { key: "acquired", label: "Acquired", html: (l) => when(l.acquired_ms), raw: (l) => iso(l.acquired_ms) },
        { key: "expires", label: "Expires", html: (l) => when(l.expires_ms), raw: (l) => iso(l.expires_ms) },
      ], locks, (l) => `data-resource="${esc(l.resource)}" data-owner="${esc(l.owner)}"`);
    },
  },

  events: {
    title: "Triggers & timers",
    async load() {
      const [t, m] = await Promise.all([api("GET", "/v1/triggers"), api("GET", "/v1/timers")]);
      return { triggers: t.triggers, timers: m.timers };
    },
    render(d) {
      return "<h1>Triggers &amp; timers</h1>" + table("Triggers", [
        { key: "id", label: "ID", num: true },
        { key: "topic", label: "Topic" },
        { key: "target", label: "Starts" },
        { key: "fired", label: "Fired", num: true },
        { key: "created", label: "Created", html: (t) => when(t.created_ms), raw: (t) => iso(t.created_ms) },
      ], d.triggers, (t) => `data-id="${t.id}"`) + "<h2>Timers</h2>" + table("Timers", [
        { key: "id", label: "ID", num: true },
        { key: "topic", label: "Topic" },
        { key: "due", label: "Due", html: (t) => when(t.due_ms), raw: (t) => iso(t.due_ms) },
        { key: "dedup_key", label: "Dedup key" },
        { key: "created", label: "Created", html: (t) => when(t.created_ms), raw: (t) => iso(t.created_ms) },
      ], d.timers, (t) => `data-id="${t.id}"`);
    },
  },

  webhooks: {
    title: "Webhooks",
    load: () => api("GET", "/v1/webhooks"),
    render(d) {
      return "<h1>Webhooks</h1>" + table("Webhooks", [
        { key: "id", label: "ID", num: true, html: (w) => `<a href="#/webhook/${w.id}">${w.id}</a>` },
        { key: "url", label: "URL" },
        { key: "topics", label: "Topics", raw: (w) => w.topics.join(", ") },
        { key: "delivered", label: "Delivered", num: true },
        { key: "failed", label: "Failed", num: true },
        { key: "pending", label: "Pending", num: true },
        { key: "dropped", label: "Dropped", num: true },
        { key: "max_attempts", label: "Max attempts", num: true },
        { key: "created", label: "Created", html: (w) => when(w.created_ms), raw: (w) => iso(w.created_ms) },
      ], d.webhooks, (w) => `data-id="${w.id}"`);
    },
  },

  webhook: {
    title: "Webhook deliveries",
    load: (p, id) => api("GET", `/v1/webhooks/${encodeURIComponent(id)}/deliveries`),
    render(d) {
      return `<h1>Deliveries of webhook ${esc(route.arg)}</h1>` + table("Deliveries", [
        { key: "id", label: "ID", num: true },
        { key: "topic", label: "Topic" },
        { key: "state", label: "State", html: (x) => badge(x.state) },
        { key: "attempts", label: "Attempts", num: true },
        { key: "created", label: "Created", html: (x) => when(x.created_ms), raw: (x) => iso(x.created_ms) },
        { key: "next", label: "Next / ended", html: (x) => when(x.next_ms), raw: (x) => iso(x.next_ms) },
        { key: "last_status", label: "Last status", num: true },
        { key: "last_error", label: "Last error" },
      ], d.deliveries, (x) => `data-id="${x.id}" data-state="${esc(x.state)}"`);
    },
  },
};

// The steps of a workflow as bars on one time axis, from when each became ready (light) and
// started to when it ended (or now); steps on the critical path are outlined.
function gantt(w) {
  const t0 = w.created_ms;
  const ends = w.steps.map((s) => s.ended_ms || (s.started_ms ? w.now_ms : 0));
  const t1 = Math.max(w.finished_ms || 0, ...ends, t0 + 1);
  const pct = (t) => (((t - t0) / (t1 - t0)) * 100).toFixed(2);
  const rows = w.steps.map((s) => {
    let bar = "";
    if (s.started_ms) {
      const end = s.ended_ms || w.now_ms;
      bar = `<div class="bar ${esc(s.state)}${s.on_critical_path ? " critical" : ""}" style="left:${pct(s.started_ms)}%;width:${(pct(end) - pct(s.started_ms)).toFixed(2)}%" title="${esc(s.name)}: ${esc(span(end - s.started_ms))}"></div>`;
    }
    return `<div class="row" data-step="${esc(s.name)}"><div class="name">${esc(s.name)}</div><div class="track">${bar}</div></div>`;
  }).join("");
  return `<div class="gantt">${rows}<div class="axis"><span>${esc(new Date(t0).toLocaleTimeString())}</span><span>${esc(span(t1 - t0))}</span><span>${esc(new Date(t1).toLocaleTimeString())}</span></div></div>`;
}

// The steps as a layered graph: a step's column is one more than its deepest dependency's.
function graph(w) {
  const byName = new Map(w.steps.map((s) => [s.name, s]));
  const depth = new Map();
  const level = (s, seen = 0) => {
    if (depth.has(s.name)) return depth.get(s.name);
    const d = seen > w.steps.length ? 0 : Math.max(-1, ...s.depends_on.map((x) => (byName.has(x.step) ? level(byName.get(x.step), seen + 1) : -1))) + 1;
    depth.set(s.name, d);
    return d;
  };
  w.steps.forEach((s) => level(s));
  const rowOf = new Map();
  const perColumn = [];
  for (const s of w.steps) {
    const c = depth.get(s.name);
    perColumn[c] = (perColumn[c] || 0) + 1;
    rowOf.set(s.name, perColumn[c] - 1);
  }
  const W = 150, H = 44, bw = 120, bh = 28;
  const pos = (s) => [depth.get(s.name) * W + 10, rowOf.get(s.name) * H + 10];
  const colour = { succeeded: "#1f9d55", failed: "#d64545", running: "#2f6fde", ready: "#c98a00", skipped: "#9aa3b5", cancelled: "#9aa3b5", waiting: "#c9ced8" };
  let edges = "";
  let boxes = "";
  for (const s of w.steps) {
    const [x, y] = pos(s);
    for (const d of s.depends_on) {
      const from = byName.get(d.step);
      if (!from) continue;
      const [fx, fy] = pos(from);
      const crit = s.on_critical_path && from.on_critical_path;
      edges += `<line x1="${fx + bw}" y1="${fy + bh / 2}" x2="${x}" y2="${y + bh / 2}" stroke="${crit ? "#f0a800" : "#9aa3b5"}" stroke-width="${crit ? 2.5 : 1.2}"${d.condition && d.condition !== "success" ? ' stroke-dasharray="4 3"' : ""}/>`;
    }
    boxes += `<g data-node="${esc(s.name)}"><rect x="${x}" y="${y}" width="${bw}" height="${bh}" rx="5" fill="${colour[s.state] || "#c9ced8"}"${s.on_critical_path ? ' stroke="#f0a800" stroke-width="2.5"' : ""}/><text x="${x + 8}" y="${y + 18}" fill="#fff" font-size="12">${esc(s.name.slice(0, 16))}</text></g>`;
  }
  const width = (Math.max(0, ...depth.values()) + 1) * W + 20;
  const height = Math.max(1, ...perColumn.filter(Boolean)) * H + 20;
  return `<svg class="graph" width="${width}" height="${height}" role="img" aria-label="workflow graph">${edges}${boxes}</svg>`;
}

// ---- routing, rendering, actions --------------------------------------------------------

function parseRoute() {
  const h = location.hash.replace(/^#\/?/, "");
  const [path, q] = h.split("?");
  const [view, arg] = (path || "cluster").split("/");
  return { view: views[view] ? view : "cluster", arg: arg || "", params: Object.fromEntries(new URLSearchParams(q || "")) };
}

function go(view, params, arg) {
  location.hash = `#/${view}${arg ? "/" + arg : ""}${query(params || {})}`;
}

// An error of an action stays until the next action; one of a load until a load succeeds.
function showError(e, source = "load") {
  const box = $("#error");
  if (!e) {
    if (source === "action" || box.dataset.source !== "action") { box.hidden = true; box.textContent = ""; }
    return;
  }
  box.dataset.source = source;
  let text = e.message || String(e);
  if (e.status === 401) text = `401 Unauthenticated: the token was refused. Sign in again. (${text})`;
  else if (e.status === 403) text = `403 Permission denied: your token's role or queues do not allow this. (${text})`;
  box.textContent = text;
  box.className = "error";
  box.dataset.status = e.status || "";
  box.hidden = false;
  if (e.status === 401) showLogin(true);
}

function showLogin(on) {
  $("#login").hidden = !on;
  $("#view").hidden = on;
  $("#logout").hidden = on;
}

// Re-reads the current view. One load at a time; a refresh asked for meanwhile runs once after
// it. A route change starts over: loads of an older route (or an older `seq`) render nothing.
let seq = 0;
let fresh = true; // the next load reads through the leader (a new view, or after an action)
async function refresh() {
  if (!token) return;
  if (loading) { pending = true; return; }
  loading = true;
  const mine = ++seq;
  const r = route;
  const view = views[r.view];
  try {
    // Set only while the view's reads are made (synchronously, before their first await).
    staleReads = !fresh;
    fresh = false;
    const loaded = view.load(r.params, r.arg);
    staleReads = false;
    const role = probeRole();
    const data = await loaded;
    await role;
    if (mine !== seq) return;
    tables = [];
    $("#body").innerHTML = view.render(data, r.params);
    if ($("#policy-dialog").open) policyNow();
    renders += 1;
    document.body.dataset.renders = renders;
    document.body.dataset.view = r.view;
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()} · times in ${zone}`;
    showError(null);
  } catch (e) {
    if (mine === seq) {
      showError(e);
      // A view that never loaded says so rather than "loading…" (one that did keeps its data).
      if ($("#body").textContent.includes("loading…")) $("#body").innerHTML = '<p class="muted">not loaded</p>';
    }
  } finally {
    staleReads = false;
    if (mine === seq) {
      loading = false;
      if (pending) { pending = false; refresh(); }
    }
  }
}

function onRoute() {
  takeToken();
  const prev = route;
  route = parseRoute();
  if (route.view !== "jobs" && route.view !== "dead") cursors = [];
  if (prev.view !== route.view) cursors = [];
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === route.view));
  const view = views[route.view];
  document.title = `${view.title} · raftline`;
  $("#head").innerHTML = view.head ? view.head(route.params) : "";
  $("#body").innerHTML = '<p class="muted">loading…</p>';
  tables = [];
  seq += 1; // what is in flight belongs to the old route
  fresh = true;
  pending = false;
  loading = false;
  refresh();
}

async function act(b) {
  const a = b.dataset.action;
  if (a === "export") return exportTable(Number(b.dataset.table), b.dataset.format);
  if (a === "page-next") { cursors.push(route.params.after || ""); return go(route.view, { ...route.params, after: b.dataset.after }); }
  if (a === "page-prev") return go(route.view, { ...route.params, after: cursors.pop() || undefined });
  if (a === "policy") return openPolicy(b.dataset.queue);
  if (arming(b)) return;
  b.disabled = true;
  showError(null, "action");
  try {
    let note;
    if (a === "pause" || a === "resume") {
      await api("POST", `/v1/queues/${encodeURIComponent(b.dataset.queue)}/${a}`, {});
      note = `queue ${b.dataset.queue} ${a}d`;
    } else if (a === "retry") {
      const r = await api("POST", `/v1/jobs/${b.dataset.id}/retry`, {});
      note = `job ${b.dataset.id} requeued: ${r.state}`;
    } else if (a === "cancel") {
      const r = await api("POST", `/v1/jobs/${b.dataset.id}/cancel`, {});
      note = `job ${b.dataset.id}: ${r.state}`;
    } else if (a === "requeue-all") {
      let changed = 0;
      for (let round = 0; round < 100; round++) {
        const r = await api("POST", "/v1/jobs/bulk", { filter: { queue: b.dataset.queue, state: "dead" }, action: "retry" });
        changed += r.changed;
        if (!r.more) break;
      }
      note = `${changed} dead jobs of ${b.dataset.queue} requeued`;
    } else if (a === "trigger") {
      const r = await api("POST", `/v1/schedules/${b.dataset.id}/control`, { op: "trigger" });
      note = `schedule ${b.dataset.id} triggered: ${r.started} run(s) started`;
    } else if (controlActions[a]) {
      note = await controlActions[a](b);
    }
    flash(note);
    fresh = true;
    refresh();
  } catch (e) {
    showError(e, "action");
    b.disabled = false;
  }
}

function flash(text) {
  const box = $("#error");
  box.textContent = text;
  box.className = "notice";
  box.dataset.status = "";
  box.dataset.source = "load";
  box.hidden = false;
  setTimeout(() => { if (box.textContent === text) { box.hidden = true; box.className = "error"; } }, 4000);
}

// ---- live updates -----------------------------------------------------------------------

function setLive(on, why) {
  const el = $("#live");
  el.className = `live ${on ? "on" : "off"}`;
  el.textContent = on ? "live" : "offline";
  el.title = why || (on ? "updates as this node applies the log" : "no change stream");
  document.body.dataset.live = on ? "1" : "0";
}

// Reads /ui/changes with fetch (so the token goes in a header) and re-reads the view on each
// event; reconnects after a second when the stream ends or fails.
async function stream() {
  for (;;) {
    if (!token) { await new Promise((r) => setTimeout(r, 500)); continue; }
    streamAbort = new AbortController();
    try {
      const r = await fetch("/ui/changes", { headers: { Authorization: `Bearer ${token}` }, signal: streamAbort.signal });
      if (!r.ok) {
        setLive(false, `change stream refused: ${r.status}`);
        // A refused token is not tried again until another one is given.
        const refused = r.status === 401 || r.status === 403 ? token : null;
        do {
          await new Promise((res) => setTimeout(res, r.status === 503 ? 5000 : 2000));
        } while (refused !== null && token === refused);
        continue;
      }
      setLive(true);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true }).replace(/\r\n/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").find((l) => l.startsWith("data:"));
          if (data) {
            document.body.dataset.applied = data.slice(5).trim();
            refresh();
          }
        }
      }
    } catch (_) { /* aborted or dropped: reconnect */ }
    setLive(false);
    // A stream aborted for a new token reconnects at once; a dropped one after a second.
    if (!streamAbort.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
  }
}

// ---- start ------------------------------------------------------------------------------

// `#token=SECRET[&view=/jobs]` signs in once (for links and tests) and leaves the URL.
function takeToken() {
  const m = location.hash.match(/^#token=([^&]+)(?:&view=(.*))?$/);
  if (!m) return;
  token = decodeURIComponent(m[1]);
  sessionStorage.setItem(TOKEN_KEY, token);
  history.replaceState(null, "", location.pathname + (m[2] ? `#${decodeURIComponent(m[2])}` : "#/cluster"));
  showLogin(false);
  showError(null, "action");
  if (streamAbort) streamAbort.abort();
}

function start() {
  takeToken();
  startControls();
  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("#token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token").value = "";
    showLogin(false);
    showError(null, "action");
    if (streamAbort) streamAbort.abort();
    onRoute();
  });
  $("#logout").addEventListener("click", () => {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (streamAbort) streamAbort.abort();
    showError(null, "action");
    showLogin(true);
  });
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (b) act(b);
  });
  document.addEventListener("submit", (ev) => {
    if (ev.target.id === "login-form" || ev.target.id === "policy-form") return;
    ev.preventDefault();
    const params = Object.fromEntries([...new FormData(ev.target)].filter(([, v]) => v !== ""));
    cursors = [];
    go(route.view, params);
  });
  window.addEventListener("hashchange", onRoute);
  // Relative times ("3 min ago") age without a reload.
  setInterval(() => document.querySelectorAll("time[data-ms] .rel").forEach((el) => {
    el.textContent = `(${ago(Number(el.parentElement.dataset.ms))})`;
  }), 15000);
  // Rates need samples; the views that show them re-read with each one.
  setInterval(async () => {
    await sampleMetrics();
    if (route.view === "cluster" || route.view === "queues") refresh();
  }, SAMPLE_MS);
  sampleMetrics();
  setLive(false);
  showLogin(!token);
  onRoute();
  stream();
  if (!token) probeOpen();
}

// A cluster with `[auth] enabled = false` answers without a token: no sign-in then.
async function probeOpen() {
  try {
    const r = await fetch("/v1/cluster/status");
    if (r.ok && !token) {
      token = "auth-off";
      showLogin(false);
      onRoute();
    }
  } catch (_) { /* stay on the sign-in form */ }
}

start();
