//! Workflow files and views, for the CLI: a definition in TOML or JSON becomes a
//! [`pb::SubmitWorkflowRequest`]; a [`pb::Workflow`] is shown as text (a Gantt-like table),
//! DOT, Mermaid or JSON.
//!
//! ## File format
//!
//! ```toml
//! name = "release"
//! failure_policy = "fail_fast"   # or "continue"; default fail_fast
//! max_parallel = 4               # 1..=64; default 10
//!
//! [[steps]]
//! name = "build"
//! command = ["make", "all"]      # or: shell = "make all" (run by sh -c), or: payload = "..."
//! queue = "default"              # default "default"
//! priority = 5                   # 1..=10
//! retries = 2                    # attempts after the first (or max_attempts = 3)
//! timeout = "10m"                # also lease_ttl = "30s"
//! tags = ["ci"]
//! requires = ["docker"]          # capabilities a worker must offer
//! resources = ["deploy_slot", "test_redis:1"]   # held while it runs (see resources.rs)
//! env = { CI = "1" }
//! cwd = "/srv/app"
//! permanent_exit_codes = [2]
//! depends_on = ["fetch", { step = "lint", condition = "always" }]
//! compensate = { shell = "make clean" }   # same job fields; run on rollback
//! ```
//!
//! Unknown keys are refused, so a typo (`depend_on`) is an error rather than a step that runs
//! too early. The same checks as the server's run offline in `raftline dag validate`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::proto::{self, pb};

/// A step (or, without `name`/`depends_on`/`compensate`, a compensation job) in a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    #[serde(default)]
    name: String,
    command: Option<Vec<String>>,
    shell: Option<String>,
    payload: Option<String>,
    queue: Option<String>,
    priority: Option<u32>,
    retries: Option<u32>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
    lease_ttl: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    #[serde(default)]
    permanent_exit_codes: Vec<i32>,
    #[serde(default)]
    depends_on: Vec<FileDep>,
    compensate: Option<Box<FileStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileDep {
    Name(String),
    Full {
        step: String,
        #[serde(default)]
        condition: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    failure_policy: String,
    #[serde(default)]
    max_parallel: u32,
    steps: Vec<FileStep>,
}

fn invalid(field: String, message: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field,
        message: message.into(),
    }
}

/// The queue a step runs in when its file names none.
pub const DEFAULT_QUEUE: &str = "default";

impl FileStep {
    fn job(&self, at: &str) -> Result<pb::SubmitRequest> {
        let kind = match (&self.command, &self.shell, &self.payload) {
            (Some(argv), None, None) => pb::submit_request::Kind::Shell(pb::ShellCommand {
                argv: argv.clone(),
                env: self.env.clone().into_iter().collect::<HashMap<_, _>>(),
                cwd: self.cwd.clone().unwrap_or_default(),
            }),
            (None, Some(script), None) => pb::submit_request::Kind::Shell(pb::ShellCommand {
                argv: vec!["sh".into(), "-c".into(), script.clone()],
                env: self.env.clone().into_iter().collect::<HashMap<_, _>>(),
                cwd: self.cwd.clone().unwrap_or_default(),
            }),
            (None, None, Some(payload)) => {
                pb::submit_request::Kind::Payload(payload.clone().into_bytes())
            }
            _ => {
                return Err(invalid(
                    format!("{at}command"),
                    "give exactly one of command, shell or payload",
                ))
            }
        };
        let max_attempts = match (self.retries, self.max_attempts) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    format!("{at}retries"),
                    "give retries or max_attempts, not both",
                ))
            }
            (Some(r), None) => r.saturating_add(1),
            (None, Some(0)) => {
                return Err(invalid(
                    format!("{at}max_attempts"),
                    "is 0, must be 1..=100",
                ))
            }
            (None, Some(m)) => m,
            (None, None) => 0,
        };
        if self.priority == Some(0) {
            return Err(invalid(format!("{at}priority"), "is 0, must be 1..=10"));
        }
        let duration = |field: &str, text: &Option<String>| -> Result<Option<u64>> {
            text.as_deref()
                .map(|t| crate::cli::parse_duration(&format!("{at}{field}"), t))
                .transpose()
        };
        Ok(pb::SubmitRequest {
            queue: self
                .queue
                .clone()
                .unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
            priority: self.priority.unwrap_or(0),
            kind: Some(kind),
            max_attempts,
            timeout_ms: duration("timeout", &self.timeout)?,
            lease_ttl_ms: duration("lease_ttl", &self.lease_ttl)?.unwrap_or(0),
            tags: self.tags.clone(),
            required_capabilities: self.requires.clone(),
            resources: self.resources.clone(),
            permanent_exit_codes: self.permanent_exit_codes.clone(),
            ..Default::default()
        })
    }
}

/// Parses a workflow file (`.json` as JSON, anything else as TOML) into a submit request.
/// Syntax errors and unknown keys name the file and the place; field checks are left to
/// [`check`] (the server runs the same ones).
pub fn parse(path: &Path, text: &str) -> Result<pb::SubmitWorkflowRequest> {
    let shown = path.display();
    let file: File = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| invalid("file".into(), format!("{shown}: {e}")))?
    } else {
        toml::from_str(text).map_err(|e| invalid("file".into(), format!("{shown}: {e}")))?
    };
    let mut steps = Vec::with_capacity(file.steps.len());
    for (i, step) in file.steps.iter().enumerate() {
        let label = if step.name.is_empty() {
            i.to_string()
        } else {
            step.name.clone()
        };
        let at = format!("steps[{label}].");
        let compensate = match &step.compensate {
            None => None,
            Some(c) => {
                let at = format!("{at}compensate.");
                if !c.name.is_empty() || !c.depends_on.is_empty() || c.compensate.is_some() {
                    return Err(invalid(
                        format!("{at}name"),
                        "a compensation is a job: no name, depends_on or compensate",
                    ));
                }
                Some(c.job(&at)?)
            }
        };
        steps.push(pb::WorkflowStepSpec {
            name: step.name.clone(),
            job: Some(step.job(&at)?),
            depends_on: step
                .depends_on
                .iter()
                .map(|d| match d {
                    FileDep::Name(step) => pb::StepDependency {
                        step: step.clone(),
                        condition: String::new(),
                    },
                    FileDep::Full { step, condition } => pb::StepDependency {
                        step: step.clone(),
                        condition: condition.clone(),
                    },
                })
                .collect(),
            compensate,
        });
    }
    Ok(pb::SubmitWorkflowRequest {
        name: file.name,
        failure_policy: file.failure_policy,
        max_parallel: file.max_parallel,
        steps,
    })
}

/// Reads and parses a workflow file.
pub fn load(path: &Path) -> Result<pb::SubmitWorkflowRequest> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            "file".into(),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    parse(path, &text)
}

/// Runs every check the server runs (shape, names, limits, job templates), offline.
pub fn check(req: &pb::SubmitWorkflowRequest) -> Result<()> {
    proto::from_wire::workflow_spec(req.clone()).map(|_| ())
}

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

/// A text view: header, then one line per step in dependency order with its state, start
/// offset, run time and a bar on a shared time axis; `*` marks the critical path.
pub fn text(w: &pb::Workflow) -> String {
    let mut out = String::new();
    let end = w.finished_ms.unwrap_or(w.now_ms);
    let span = end.saturating_sub(w.created_ms).max(1);
    let paused = if w.paused { " (paused)" } else { "" };
    writeln!(
        out,
        "workflow {} {:?}: {}{paused}, {} steps, {} running, wall {}, policy {}, max_parallel {}",
        w.id,
        w.name,
        w.state,
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
    let width = w
        .steps
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    const BAR: u64 = 40;
    writeln!(
        out,
        "  {:width$}  {:10} {:>8} {:>8}  TIMELINE",
        "STEP", "STATE", "START", "RUN"
    )
    .unwrap();
    for i in topo(w) {
        let s = &w.steps[i];
        let mark = if s.on_critical_path { '*' } else { ' ' };
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
        let undo = if s.compensation_state.is_empty() {
            String::new()
        } else {
            format!(" undo: {}", s.compensation_state)
        };
        writeln!(
            out,
            "{mark} {:width$}  {:10} {:>8} {:>8}  |{bar:<40}|{undo}",
            s.name, s.state, start, run
        )
        .unwrap();
        if !s.error.is_empty() && !matches!(s.state.as_str(), "succeeded") {
            writeln!(out, "  {:width$}  ^ {}", "", s.error).unwrap();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &str, text: &str) -> String {
        let e = parse(Path::new(path), text).and_then(|r| check(&r));
        match e {
            Err(e) => e.to_string(),
            Ok(()) => panic!("accepted: {text}"),
        }
    }

    /// TOML and JSON give the same request; a typo'd key, a cycle and a bad template are
    /// refused with the place named.
    #[test]
    fn files_parse_and_errors_name_the_place() {
        let toml = r#"
            name = "w"
            max_parallel = 2
            [[steps]]
            name = "a"
            shell = "true"
            [[steps]]
            name = "b"
            command = ["echo", "hi"]
            retries = 2
            timeout = "5s"
            depends_on = ["a", { step = "a2", condition = "always" }]
            compensate = { shell = "echo undo" }
            [[steps]]
            name = "a2"
            payload = "x"
            queue = "ext"
        "#;
        let t = parse(Path::new("w.toml"), toml).unwrap();
        check(&t).unwrap();
        let json = r#"{"name":"w","max_parallel":2,"steps":[
            {"name":"a","shell":"true"},
            {"name":"b","command":["echo","hi"],"retries":2,"timeout":"5s",
             "depends_on":["a",{"step":"a2","condition":"always"}],
             "compensate":{"shell":"echo undo"}},
            {"name":"a2","payload":"x","queue":"ext"}]}"#;
        assert_eq!(parse(Path::new("w.json"), json).unwrap(), t);
        let b = &t.steps[1];
        assert_eq!(b.job.as_ref().unwrap().max_attempts, 3);
        assert_eq!(b.job.as_ref().unwrap().timeout_ms, Some(5_000));

        let typo = "name = \"w\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\ndepend_on = []\n";
        assert!(
            err("w.toml", typo).contains("depend_on"),
            "{}",
            err("w.toml", typo)
        );
        let cycle = r#"
            name = "w"
            [[steps]]
            name = "a"
            shell = "true"
            depends_on = ["b"]
            [[steps]]
            name = "b"
            shell = "true"
            depends_on = ["a"]
        "#;
        assert_eq!(
            err("w.toml", cycle),
            "invalid argument: steps[a].depends_on: cycle: a -> b -> a"
        );
        let no_cmd = "name = \"w\"\n[[steps]]\nname = \"a\"\n";
        assert!(err("w.toml", no_cmd).contains("steps[a].command"));
        let bad_cond = "name = \"w\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\n[[steps]]\nname = \"b\"\nshell = \"true\"\ndepends_on = [{ step = \"a\", condition = \"sometimes\" }]\n";
        assert!(
            err("w.toml", bad_cond).contains("steps[b].depends_on[0].condition"),
            "{}",
            err("w.toml", bad_cond)
        );
        let bad_queue =
            "name = \"w\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\nqueue = \"no spaces\"\n";
        assert!(err("w.toml", bad_queue).contains("steps[a].queue"));
    }
}
