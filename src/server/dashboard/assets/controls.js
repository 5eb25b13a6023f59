// raftline dashboard, the operator's controls: who may use them, confirmations for what can't
// be undone, the queue policy dialog and workflow control. Loaded before app.js, whose helpers
// (api, esc, badge, span, flash, refresh...) these functions call when they run.
"use strict";

// ---- who may operate --------------------------------------------------------------------

// The REST API has no "who am I", but one read tells: GET /v1/webhooks (ListWebhooks) allows
// exactly the roles that PauseQueue, SetQueuePolicy, ControlWorkflow, RetryJob, CancelJob,
// BulkJobs and ControlSchedule allow (a unit test in dashboard/mod.rs keeps it so). A 403
// there hides every action button; any other answer shows them. The server still decides each
// action, so a token limited to some queues sees buttons that it gets a 403 for elsewhere.
let mayOperate = true;
let roleFor = null; // the token the probe was made for
let roleKnown = Promise.resolve();

function probeRole() {
  if (roleFor === token) return roleKnown;
  const mine = token;
  roleFor = mine;
  roleKnown = (async () => {
    let may = true;
    try {
      const r = await fetch("/v1/webhooks?stale=true", { headers: { Authorization: `Bearer ${mine}` } });
      may = r.status !== 403;
    } catch (_) { /* unknown: show them, the server decides */ }
    if (mine === token) {
      mayOperate = may;
      document.body.dataset.operate = may ? "1" : "0";
    }
  })();
  return roleKnown;
}

// `html` for tokens that may operate, nothing for the others.
const op = (html) => (mayOperate ? html : "");

// ---- confirmations ----------------------------------------------------------------------

// An action that can't be undone takes two clicks: the first arms its button for a while
// (kept across re-renders, which happen on every change), the second acts.
let armed = null;
const ARMED_MS = 10000;
const isArmed = (key) => armed !== null && armed.key === key && Date.now() < armed.until;

// A two-click button: `attrs` carries its data-action and arguments.
function confirmButton(key, label, confirmLabel, attrs, danger) {
  const on = isArmed(key);
  return `<button type="button"${on || danger ? ' class="danger"' : ""} ${attrs} data-arm="${esc(key)}" data-confirm="${esc(confirmLabel)}">${esc(on ? confirmLabel : label)}</button>`;
}

// The first click of a two-click button: arms it and says so; true when that is all it does.
function arming(b) {
  const key = b.dataset.arm;
  if (!key) return false;
  if (isArmed(key)) {
    armed = null;
    return false;
  }
  armed = { key, until: Date.now() + ARMED_MS };
  b.textContent = b.dataset.confirm;
  b.classList.add("danger");
  return true;
}

// ---- queue policy -----------------------------------------------------------------------

// The last queue list shown, so the dialog can say what the cluster holds now.
let shownQueues = [];

// A period in its largest whole unit: "1 min", "90 s", "1500 ms".
function period(ms) {
  for (const [unit, n] of [["h", 3600000], ["min", 60000], ["s", 1000]]) if (ms % n === 0) return `${ms / n} ${unit}`;
  return `${ms} ms`;
}

// The parts of a policy that are on: "rate 5 per 1 min", "concurrency 2", "breaker >50% of
// 10", "cooldown 30 s".
function policyParts(q) {
  return [
    q.rate_count ? `rate ${q.rate_count} per ${period(q.rate_per_ms)}` : "",
    q.concurrency ? `concurrency ${q.concurrency}` : "",
    q.breaker_threshold_pct ? `breaker >${q.breaker_threshold_pct}% of ${q.breaker_window}` : "",
    q.breaker_threshold_pct ? `cooldown ${period(q.breaker_cooldown_ms)}` : "",
  ].filter(Boolean);
}

// The policy as one line of text (the exports' and the dialog's), and as a cell, a part a line.
const policyText = (q) => policyParts(q).join(", ");
const policyHtml = (q) => policyParts(q).map((p) => `<span class="part">${esc(p)}</span>`).join("<br>");

// The row's attributes that say its policy (for tests and scripts).
function policyAttrs(q) {
  return `data-rate="${q.rate_count}/${q.rate_per_ms}" data-concurrency="${q.concurrency}" data-breaker="${q.breaker_threshold_pct}/${q.breaker_window}/${q.breaker_cooldown_ms}"`;
}

function policyButton(q) {
  return op(`<button type="button" data-action="policy" data-queue="${esc(q.queue)}" aria-label="Edit the policy of queue ${esc(q.queue)}">Policy…</button>`);
}

const seconds = (ms) => (ms ? String(ms / 1000) : "");

function openPolicy(queue) {
  const q = shownQueues.find((x) => x.queue === queue);
  if (!q) return;
  const f = $("#policy-form");
  f.dataset.queue = queue;
  $("#policy-queue").textContent = queue;
  f.elements.rate_count.value = q.rate_count;
  f.elements.rate_per_s.value = q.rate_count ? seconds(q.rate_per_ms) : "1";
  f.elements.concurrency.value = q.concurrency;
  // With the breaker off, its window and cooldown show the cluster's defaults.
  f.elements.breaker_threshold_pct.value = q.breaker_threshold_pct;
  f.elements.breaker_window.value = q.breaker_threshold_pct ? q.breaker_window : 10;
  f.elements.breaker_cooldown_s.value = q.breaker_threshold_pct ? seconds(q.breaker_cooldown_ms) : "30";
  policyError(null);
  policyNow();
  $("#policy-save").disabled = false;
  $("#policy-dialog").showModal();
}

// What the cluster holds for the queue in the dialog, as of the last render (live).
function policyNow() {
  const dialog = $("#policy-dialog");
  const q = shownQueues.find((x) => x.queue === $("#policy-form").dataset.queue);
  if (!q) return;
  const outcomes = q.recent_outcomes ? `${q.recent_failures} of the last ${q.recent_outcomes} outcomes failed` : "no outcomes yet";
  const breaker = q.breaker_state
    ? ` Breaker ${q.breaker_state}${q.breaker_open_until_ms ? ` until ${new Date(q.breaker_open_until_ms).toLocaleTimeString()}` : ""}, ${outcomes}.`
    : "";
  $("#policy-now").textContent = `Now: ${policyText(q) || "no limits"}.${breaker}`;
  dialog.dataset.now = JSON.stringify([q.rate_count, q.rate_per_ms, q.concurrency, q.breaker_threshold_pct, q.breaker_window, q.breaker_cooldown_ms]);
}

function policyError(text, source) {
  const box = $("#policy-error");
  box.textContent = text || "";
  box.hidden = !text;
  box.dataset.source = source || "";
}

// The form as a SetQueuePolicy body, or the first thing wrong with it (named by the API's
// field). Only shapes are checked here; ranges are the server's (its limits.rs), and its
// refusal is shown as it says it.
function policyBody(f) {
  const v = (name) => f.elements[name].value.trim();
  const whole = (name, field) => {
    const s = v(name) || "0";
    if (!/^[0-9]+$/.test(s)) throw new Error(`${field}: ${JSON.stringify(v(name))} is not a whole number (0 or more)`);
    return Number(s);
  };
  const ms = (name, field) => {
    const s = v(name) || "0";
    if (!/^[0-9]+(\.[0-9]{1,3})?$/.test(s)) throw new Error(`${field}: ${JSON.stringify(v(name))} is not a number of seconds (0 or more, to the millisecond)`);
    return Math.round(Number(s) * 1000);
  };
  const body = {
    rate_count: whole("rate_count", "rate_count"),
    rate_per_ms: ms("rate_per_s", "rate_per_ms"),
    concurrency: whole("concurrency", "concurrency"),
    breaker_threshold_pct: whole("breaker_threshold_pct", "breaker_threshold_pct"),
    breaker_window: whole("breaker_window", "breaker_window"),
    breaker_cooldown_ms: ms("breaker_cooldown_s", "breaker_cooldown_ms"),
  };
  if (body.rate_count && !body.rate_per_ms) throw new Error("rate_per_ms: a rate limit needs a period");
  if (body.breaker_threshold_pct > 100) throw new Error("breaker_threshold_pct: a percentage is at most 100");
  if (body.breaker_threshold_pct && !body.breaker_window) throw new Error("breaker_window: a breaker needs a window of outcomes");
  // A part that is off is sent as all zeros, as the API shows it.
  if (!body.rate_count) body.rate_per_ms = 0;
  if (!body.breaker_threshold_pct) { body.breaker_window = 0; body.breaker_cooldown_ms = 0; }
  return body;
}

async function savePolicy(ev) {
  ev.preventDefault();
  const f = ev.target;
  const queue = f.dataset.queue;
  let body;
  try {
    body = policyBody(f);
  } catch (e) {
    policyError(`${e.message} (checked in the page; nothing was sent)`, "page");
    return;
  }
  policyError(null);
  $("#policy-save").disabled = true;
  try {
    await api("PUT", `/v1/queues/${encodeURIComponent(queue)}/policy`, body);
    $("#policy-dialog").close();
    flash(`policy of queue ${queue} set`);
    fresh = true;
    refresh();
  } catch (e) {
    const err = (e.body && e.body.error) || {};
    policyError(err.message ? `${e.status} ${err.status || ""}: ${err.message}` : e.message, "server");
    $("#policy-error").dataset.status = e.status || "";
    $("#policy-error").dataset.field = err.field || "";
  } finally {
    $("#policy-save").disabled = false;
  }
}

// ---- workflow control -------------------------------------------------------------------

// The buttons of a workflow as it is: pause or resume, and cancel (two clicks) while it runs.
function workflowButtons(w) {
  if (!mayOperate || ["succeeded", "failed", "cancelled"].includes(w.state)) return "";
  const attrs = (o) => `data-action="wf" data-op="${o}" data-id="${w.id}"`;
  return (w.paused
    ? `<button type="button" ${attrs("resume")}>Resume</button> `
    : `<button type="button" ${attrs("pause")}>Pause</button> `)
    + confirmButton(`wf-cancel:${w.id}`, "Cancel workflow", `Click again to cancel workflow ${w.id}`, attrs("cancel"), true);
}

// A step's buttons: retry a failed or cancelled step, skip one that has not succeeded (two
// clicks: its dependents then run without it), while the workflow runs or failed and was not
// rolled back (the server's rule; it decides).
function stepButtons(w, s) {
  const open = ["running", "failed"].includes(w.state) && !w.steps.some((x) => x.compensation_state);
  if (!mayOperate || !open) return "";
  const attrs = (o) => `data-action="wf" data-op="${o}" data-id="${w.id}" data-step="${esc(s.name)}"`;
  const retry = ["failed", "cancelled"].includes(s.state) ? `<button type="button" ${attrs("retry")}>Retry</button> ` : "";
  const skip = ["waiting", "ready", "failed", "cancelled"].includes(s.state)
    ? confirmButton(`wf-skip:${w.id}:${s.name}`, "Skip", `Click again to skip ${s.name}`, attrs("skip"))
    : "";
  return retry + skip;
}

// ---- actions ----------------------------------------------------------------------------

// Actions of this file, by data-action: each makes its call and returns the note to show.
const controlActions = {
  async wf(b) {
    const { id, op: o, step } = b.dataset;
    const r = await api("POST", `/v1/workflows/${id}/control`, { op: o, step: step || "" });
    return `workflow ${id}: ${o}${step ? ` ${step}` : ""} done, now ${r.state}`;
  },
};

function startControls() {
  $("#policy-form").addEventListener("submit", savePolicy);
  $("#policy-cancel").addEventListener("click", () => $("#policy-dialog").close());
}
