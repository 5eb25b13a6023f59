//! Golden-script tests for the state machine.
//!
//! Each `testscripts/*.script` file is a list of commands, one per line; the runner applies them
//! to a fresh [`Machine`] and writes every command, its response and (on `state`) a dump of the
//! state into the output, which must equal the `.golden` file beside the script. Run with
//! `RAFTLINE_GOLDEN_UPDATE=1` to rewrite the golden files, then review the diff.
//!
//! Commands (`@T` sets the proposal's `now_ms`, default the previous one):
//! - `submit QUEUE PRIORITY ARGV...` / `submit-payload QUEUE PRIORITY BYTES`
//! - `register NODE INCARNATION`
//! - `state`

use std::fmt::Write as _;
use std::path::Path;

use super::*;

fn run_script(script: &str) -> String {
    let mut m = Machine::new();
    let mut out = String::new();
    let mut now_ms = 0;
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            writeln!(out, "{line}").unwrap();
            continue;
        }
        writeln!(out, "> {line}").unwrap();
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if let Some(t) = words.last().and_then(|w| w.strip_prefix('@')) {
            now_ms = t.parse().expect("@T must be a number");
            words.pop();
        }
        let command = match words.as_slice() {
            ["state"] => {
                dump(&m, &mut out);
                continue;
            }
            ["submit", queue, priority, argv @ ..] => Command::Submit(JobSpec {
                queue: queue.trim_matches('"').to_string(),
                priority: priority.parse().unwrap(),
                kind: JobKind::Shell {
                    argv: argv.iter().map(|s| s.to_string()).collect(),
                },
            }),
            ["submit-payload", queue, priority, bytes] => Command::Submit(JobSpec {
                queue: queue.to_string(),
                priority: priority.parse().unwrap(),
                kind: JobKind::External {
                    payload: vec![b'x'; bytes.parse().unwrap()],
                },
            }),
            ["register", node, incarnation] => Command::RegisterNode {
                node_id: node.parse().unwrap(),
                incarnation: incarnation.parse().unwrap(),
            },
            other => panic!("unknown script command {other:?}"),
        };
        let response = m.apply(&Proposal { now_ms, command });
        m.check_invariants();
        writeln!(out, "{response:?}").unwrap();
    }
    out
}

fn dump(m: &Machine, out: &mut String) {
    writeln!(out, "now_ms={} next_job_id={}", m.now_ms, m.next_job_id).unwrap();
    for job in m.jobs.values() {
        let kind = match &job.spec.kind {
            JobKind::Shell { argv } => format!("shell {argv:?}"),
            JobKind::External { payload } => format!("external {} bytes", payload.len()),
        };
        writeln!(
            out,
            "job {} queue={} priority={} state={} created_ms={} {kind}",
            job.id,
            job.spec.queue,
            job.spec.priority,
            job.state.name(),
            job.created_ms
        )
        .unwrap();
    }
    for queue in m.ready.keys() {
        writeln!(
            out,
            "ready {queue}: {:?}",
            m.ready_in(queue).collect::<Vec<_>>()
        )
        .unwrap();
    }
    for (id, n) in &m.nodes {
        writeln!(
            out,
            "node {id} incarnation={} first_registered_ms={} registered_ms={}",
            n.incarnation, n.first_registered_ms, n.registered_ms
        )
        .unwrap();
    }
}

/// Every script's output matches its golden file.
#[test]
fn golden_scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/machine/testscripts");
    let update = std::env::var_os("RAFTLINE_GOLDEN_UPDATE").is_some();
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "script"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no scripts in {}", dir.display());
    for script in scripts {
        let output = run_script(&std::fs::read_to_string(&script).unwrap());
        let golden = script.with_extension("golden");
        if update {
            std::fs::write(&golden, &output).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "{} missing: run with RAFTLINE_GOLDEN_UPDATE=1",
                golden.display()
            )
        });
        assert_eq!(
            output,
            expected,
            "{} differs from its golden file (RAFTLINE_GOLDEN_UPDATE=1 rewrites it)",
            script.display()
        );
    }
}
