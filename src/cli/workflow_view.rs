//! Views of a [`pb::Workflow`] for the CLI: text (a Gantt-like table in dependency order),
//! Graphviz DOT, a Mermaid flowchart, and JSON.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::table::{self, Table};
use crate::proto::pb;

/// Steps in an order where each comes after its dependencies (file order among equals).
fn topo(w: &pb::Workflow) -> Vec<usize> {
    let index: HashMap<&str, usize> = w
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut missing: Vec<usize> = w.steps.iter().map(|s| s.depends_on.len()).collect();
    let mut dependents = vec![Vec::new(); w.steps.len()];
    for (i, s) in w.steps.iter().enumerate() {
        for d in &s.depends_on {
            if let Some(&j) = index.get(d.step.as_str()) {
                dependents[j].push(i);
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..w.steps.len()).filter(|&i| missing[i] == 0).collect();
    let mut order = Vec::with_capacity(w.steps.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            missing[d] -= 1;
            if missing[d] == 0 {
                ready.insert(d);
            }
        }
    }
    order
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Run time of a step: first lease to end (or to the view's time while running).
fn run_ms(w: &pb::Workflow, s: &pb::WorkflowStep) -> Option<u64> {
    let start = s.started_ms?;
    Some(s.ended_ms.unwrap_or(w.now_ms).saturating_sub(start))
}

/// A text view: header, then a table of the steps in dependency order with their state,
/// start offset, run time and a bar on a shared time axis; `*` marks the critical path. States
/// are coloured when stdout is (see [`super::color`]).
pub fn text(w: &pb::Workflow) -> String {
    text_in(w, super::color::stdout())
}

/// [`text`] without colour (for JSON's `rendered`).
pub fn text_plain(w: &pb::Workflow) -> String {
    text_in(w, false)
}

fn text_in(w: &pb::Workflow, color: bool) -> String {
    let mut out = String::new();
    let end = w.finished_ms.unwrap_or(w.now_ms);
    let span = end.saturating_sub(w.created_ms).max(1);
    let paused = if w.paused { " (paused)" } else { "" };
    writeln!(
        out,
        "workflow {} {:?}: {}{paused}, {} steps, {} running, wall {}, policy {}, max_parallel {}",
        w.id,
        w.name,
        super::color::paint_state(&w.state, color),
        w.steps.len(),
        w.running,
        secs(span),
        w.failure_policy,
        w.max_parallel
    )
    .unwrap();
    writeln!(
        out,
        "critical path ({}): {}",
        secs(w.critical_path_ms),
        w.critical_path.join(" -> ")
    )
    .unwrap();
    const BAR: u64 = 40;
    let mut t = Table::with_color(
        &["", "STEP", "STATE", "START", "RUN", "TIMELINE", "NOTE"],
        color,
    );
    for i in topo(w) {
        let s = &w.steps[i];
        let mark = if s.on_critical_path { "*" } else { "" };
        let start = s
            .started_ms
            .map(|t| format!("+{}", secs(t.saturating_sub(w.created_ms))))
            .unwrap_or_else(|| "-".into());
        let run = run_ms(w, s).map(secs).unwrap_or_else(|| "-".into());
        let bar = match s.started_ms {
            Some(t) => {
                let from = (t.saturating_sub(w.created_ms) * BAR / span).min(BAR - 1);
                let to = (s.ended_ms.unwrap_or(w.now_ms).saturating_sub(w.created_ms) * BAR / span)
                    .clamp(from + 1, BAR);
                format!(
                    "{}{}",
                    " ".repeat(from as usize),
                    "#".repeat((to - from) as usize)
                )
            }
            None => String::new(),
        };
        let mut note = Vec::new();
        if !s.compensation_state.is_empty() {
            note.push(format!("undo: {}", s.compensation_state));
        }
        if !s.error.is_empty() && !matches!(s.state.as_str(), "succeeded") {
            note.push(s.error.clone());
        }
        let state = t.state(&s.state);
        t.row(vec![
            table::text(mark),
            table::text(&s.name),
            state,
            table::num(start),
            table::num(run),
            table::text(format!("|{bar:<40}|")),
            table::text(note.join("; ")),
        ]);
    }
    writeln!(out, "{}", t.render()).unwrap();
    out
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn color(state: &str) -> &'static str {
    match state {
        "succeeded" => "palegreen",
        "failed" => "salmon",
        "running" => "lightskyblue",
        "ready" => "lightyellow",
        "skipped" | "cancelled" => "lightgrey",
        _ => "white",
    }
}

/// Graphviz DOT: nodes coloured by state, edges labelled with non-default conditions, the
/// critical path in bold.
pub fn dot(w: &pb::Workflow) -> String {
    let mut out = String::new();
    writeln!(out, "digraph {} {{", dot_quote(&w.name)).unwrap();
    writeln!(out, "  rankdir=LR;").unwrap();
    writeln!(out, "  node [shape=box, style=\"rounded,filled\"];").unwrap();
    for s in &w.steps {
        let run = run_ms(w, s)
            .map(|ms| format!(" {}", secs(ms)))
            .unwrap_or_default();
        let pen = if s.on_critical_path {
            ", penwidth=2"
        } else {
            ""
        };
        writeln!(
            out,
            "  {} [label={}, fillcolor={}{pen}];",
            dot_quote(&s.name),
            // DOT's own `\n` escape (a line break in the label), after quoting.
            dot_quote(&format!("{}\u{1}{}{run}", s.name, s.state)).replace('\u{1}', "\\n"),
            color(&s.state)
        )
        .unwrap();
    }
    let on_path = |a: &str, b: &str| w.critical_path.windows(2).any(|p| p[0] == a && p[1] == b);
    for s in &w.steps {
        for d in &s.depends_on {
            let mut attrs = Vec::new();
            if d.condition != "success" && !d.condition.is_empty() {
                attrs.push(format!("label={}, style=dashed", dot_quote(&d.condition)));
            }
            if on_path(&d.step, &s.name) {
                attrs.push("penwidth=2".into());
            }
            let attrs = if attrs.is_empty() {
                String::new()
            } else {
                format!(" [{}]", attrs.join(", "))
            };
            writeln!(
                out,
                "  {} -> {}{attrs};",
                dot_quote(&d.step),
                dot_quote(&s.name)
            )
            .unwrap();
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart: one node per step (ids `s0`, `s1`, ... so any step name is safe), a
/// class per state, dotted edges for non-default conditions.
pub fn mermaid(w: &pb::Workflow) -> String {
    let mut out = String::from("flowchart LR\n");
    let id: HashMap<&str, usize> = w
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for (i, s) in w.steps.iter().enumerate() {
        let label = format!("{}<br/>{}", s.name, s.state).replace('"', "#quot;");
        writeln!(out, "  s{i}[\"{label}\"]:::{}", s.state).unwrap();
    }
    for (i, s) in w.steps.iter().enumerate() {
        for d in &s.depends_on {
            let Some(from) = id.get(d.step.as_str()) else {
                continue;
            };
            if d.condition.is_empty() || d.condition == "success" {
                writeln!(out, "  s{from} --> s{i}").unwrap();
            } else {
                writeln!(out, "  s{from} -. {} .-> s{i}", d.condition).unwrap();
            }
        }
    }
    for state in [
        "waiting",
        "ready",
        "running",
        "succeeded",
        "failed",
        "skipped",
        "cancelled",
    ] {
        writeln!(out, "  classDef {state} fill:{}", css(color(state))).unwrap();
    }
    out
}

fn css(name: &str) -> &'static str {
    match name {
        "palegreen" => "#98fb98",
        "salmon" => "#fa8072",
        "lightskyblue" => "#87cefa",
        "lightyellow" => "#ffffe0",
        "lightgrey" => "#d3d3d3",
        _ => "#ffffff",
    }
}

/// A workflow as JSON.
pub fn json(w: &pb::Workflow) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = w
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "state": s.state,
                "queue": s.queue,
                "depends_on": s.depends_on.iter().map(|d| serde_json::json!({
                    "step": d.step,
                    "condition": d.condition,
                })).collect::<Vec<_>>(),
                "job_id": (s.job_id != 0).then_some(s.job_id),
                "runs": s.runs,
                "attempts": s.attempts,
                "ready_ms": s.ready_ms,
                "started_ms": s.started_ms,
                "ended_ms": s.ended_ms,
                "run_ms": run_ms(w, s),
                "error": s.error,
                "skipped_by_operator": s.skipped_by_operator,
                "has_compensation": s.has_compensation,
                "compensation_state": (!s.compensation_state.is_empty())
                    .then_some(&s.compensation_state),
                "compensation_job_id": (s.compensation_job_id != 0)
                    .then_some(s.compensation_job_id),
                "on_critical_path": s.on_critical_path,
            })
        })
        .collect();
    serde_json::json!({
        "id": w.id,
        "name": w.name,
        "state": w.state,
        "paused": w.paused,
        "failure_policy": w.failure_policy,
        "max_parallel": w.max_parallel,
        "created_ms": w.created_ms,
        "finished_ms": w.finished_ms,
        "running": w.running,
        "now_ms": w.now_ms,
        "critical_path": w.critical_path,
        "critical_path_ms": w.critical_path_ms,
        "steps": steps,
    })
}

/// A workflow file as parsed and checked (`dag validate --json`): its name, policy, and each
/// step with its queue, command and dependencies.
pub fn spec_json(req: &pb::SubmitWorkflowRequest) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = req
        .steps
        .iter()
        .map(|s| {
            let job = s.job.as_ref();
            let argv = job.and_then(|j| match &j.kind {
                Some(pb::submit_request::Kind::Shell(sh)) => Some(sh.argv.clone()),
                _ => None,
            });
            serde_json::json!({
                "name": s.name,
                "queue": job.map(|j| j.queue.as_str()),
                "argv": argv,
                "depends_on": s.depends_on.iter().map(|d| serde_json::json!({
                    "step": d.step,
                    "condition": d.condition,
                })).collect::<Vec<_>>(),
                "has_compensation": s.compensate.is_some(),
            })
        })
        .collect();
    let dependencies: usize = req.steps.iter().map(|s| s.depends_on.len()).sum();
    serde_json::json!({
        "name": req.name,
        "failure_policy": req.failure_policy,
        "max_parallel": req.max_parallel,
        "step_count": req.steps.len(),
        "dependencies": dependencies,
        "steps": steps,
    })
}
