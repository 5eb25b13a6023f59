//! Workflows on a real 3-node cluster: the 86-step example plan runs to success within
//! `max_parallel`, through the CLI; a plan survives `kill -9` of the leader and of a node
//! running one of its steps, with every step succeeding exactly once; bad files and calls are
//! refused with the place named.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use raftline::client::Client;
use raftline::proto::pb;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

async fn wait_workflow(client: &Client, id: u64, timeout: Duration) -> pb::Workflow {
    wait_for(&format!("workflow {id} to end"), timeout, || async {
        let w = client.workflow(id, false).await.ok()?;
        ["succeeded", "failed", "cancelled"]
            .contains(&w.state.as_str())
            .then_some(w)
    })
    .await
}

/// The most step runs that overlap in time (each run is first lease .. end).
fn max_overlap(w: &pb::Workflow) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for s in &w.steps {
        if let (Some(a), Some(b)) = (s.started_ms, s.ended_ms) {
            edges.push((a, 1));
            edges.push((b, -1));
        }
    }
    // Ends before starts at the same instant: a slot freed and refilled in one apply.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Every step succeeded once: one job per step, and that job has exactly one successful
/// attempt. The plan's failure handler (`page-oncall`) is skipped by its condition.
async fn assert_each_step_succeeded_once(client: &Client, w: &pb::Workflow) {
    for s in &w.steps {
        if s.name == "page-oncall" {
            assert_eq!((s.state.as_str(), s.runs), ("skipped", 0), "{s:?}");
            continue;
        }
        assert_eq!(s.state, "succeeded", "step {}: {s:?}", s.name);
        assert_eq!(s.runs, 1, "step {} ran as more than one job", s.name);
        let job = client.job(s.job_id, false).await.expect("step job");
        assert_eq!(job.state, "succeeded", "step {} job", s.name);
        let ok = job
            .attempts
            .iter()
            .filter(|a| a.result == "succeeded")
            .count();
        assert_eq!(ok, 1, "step {}: {} successful attempts", s.name, ok);
    }
}

/// The 86-step release plan, submitted with the CLI, runs to success with at most
/// `max_parallel` (8) steps at once; its wall time is printed against the sum of its steps'
/// run times (what running them one by one would take at least). Views render.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_plan_runs_to_success_within_max_parallel() {
    let c = Cluster::start(Settings::default()).await;
    let plan = example("release-plan.toml");
    let plan = plan.to_str().unwrap();
    let out = c.cli(&["dag", "validate", plan]);
    assert!(out.status.success(), "{}", show(&out));
    let out = c.cli(&["dag", "submit", "--json", plan]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = v["id"].as_u64().expect("id");
    let client = c.client();
    let w = wait_workflow(&client, id, Duration::from_secs(240)).await;
    assert_eq!(w.state, "succeeded", "{w:?}");
    assert_eq!(w.steps.len(), 86);
    assert_each_step_succeeded_once(&client, &w).await;
    let overlap = max_overlap(&w);
    assert!(
        overlap <= 8,
        "{overlap} steps ran at once, max_parallel is 8"
    );
    assert!(overlap > 1, "nothing ran in parallel");
    let wall = w.finished_ms.unwrap() - w.created_ms;
    let serial: u64 = w
        .steps
        .iter()
        .filter_map(|s| Some(s.ended_ms? - s.started_ms?))
        .sum();
    println!(
        "release plan: wall {wall} ms, sum of step run times {serial} ms, \
         critical path {} ms ({} steps), most steps at once {overlap}",
        w.critical_path_ms,
        w.critical_path.len()
    );
    assert!(w.critical_path_ms <= wall && wall < serial);
    assert_eq!(
        w.critical_path.first().map(String::as_str),
        Some("checkout")
    );
    assert_eq!(w.critical_path.last().map(String::as_str), Some("announce"));

    let id_s = id.to_string();
    let text = c.cli(&["dag", "show", &id_s]);
    assert!(text.status.success(), "{}", show(&text));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("critical path") && text.contains("deploy-eu-west"));
    let dot = c.cli(&["dag", "show", &id_s, "--format", "dot"]);
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert!(dot.starts_with("digraph") && dot.contains("\"canary-us-east\" -> \"deploy-us-east\""));
    let mermaid = c.cli(&["dag", "show", &id_s, "--format", "mermaid"]);
    let mermaid = String::from_utf8_lossy(&mermaid.stdout);
    assert!(mermaid.starts_with("flowchart LR") && mermaid.contains("-. failure .->"));
    let get = c.cli(&["dag", "get", &id_s, "--json"]);
    let get: serde_json::Value = serde_json::from_slice(&get.stdout).expect("get json");
    assert_eq!(get["state"], "succeeded");
    assert_eq!(get["steps"].as_array().unwrap().len(), 86);
    let list = c.cli(&["dag", "list", "--state", "succeeded"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("release-plan"));
}

/// `kill -9` of the leader, then of a node running a step, in the middle of the plan: it still
/// finishes, and every step succeeded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_survives_kill9_of_leader_and_of_a_worker_node() {
    let mut c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let req = raftline::cli::workflow_file::load(&example("release-plan.toml")).unwrap();
    let id = client.submit_workflow(req).await.expect("submit");
    let progress = |n: usize| {
        let client = &client;
        async move {
            wait_for(
                &format!("{n} steps to succeed"),
                Duration::from_secs(120),
                || async {
                    let w = client.workflow(id, false).await.ok()?;
                    let done = w.steps.iter().filter(|s| s.state == "succeeded").count();
                    (done >= n).then_some(w)
                },
            )
            .await
        }
    };
    progress(10).await;
    let leader = c.wait_leader(None).await;
    c.kill9(leader);
    let new_leader = c.wait_leader(Some(leader)).await;
    c.spawn(leader);
    println!("killed leader {leader}; node {new_leader} leads");
    let client = c.client_of(&[new_leader]);
    // A node running a step right now, other than the new leader.
    let victim = wait_for(
        "a step running on a follower",
        Duration::from_secs(60),
        || async {
            let w = client.workflow(id, false).await.ok()?;
            for s in w.steps.iter().filter(|s| s.state == "running") {
                let job = client.job(s.job_id, false).await.ok()?;
                let node = job
                    .attempts
                    .last()
                    .and_then(|a| (a.result == "running").then_some(a.node).flatten());
                if let Some(node) = node.filter(|n| *n != new_leader) {
                    return Some(node);
                }
            }
            None
        },
    )
    .await;
    c.kill9(victim);
    println!("killed node {victim} while it ran a step");
    c.spawn(victim);
    let client = c.client();
    let w = wait_workflow(&client, id, Duration::from_secs(240)).await;
    assert_eq!(w.state, "succeeded", "{w:?}");
    assert_each_step_succeeded_once(&client, &w).await;
    let retried: Vec<&str> = w
        .steps
        .iter()
        .filter(|s| s.attempts > 1)
        .map(|s| s.name.as_str())
        .collect();
    println!("steps that needed a second attempt: {retried:?}");
}

/// Bad workflow input writes nothing: the CLI exits 2 naming the place, the API answers
/// INVALID_ARGUMENT naming the step; operations on unknown workflows or steps are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_workflows_are_refused_with_the_place_named() {
    let c = Cluster::start(Settings::default()).await;
    let dir = c.dir.path();
    let cycle = dir.join("cycle.toml");
    std::fs::write(
        &cycle,
        "name = \"c\"\n[[steps]]\nname = \"a\"\nshell = \"true\"\ndepends_on = [\"c\"]\n\
         [[steps]]\nname = \"b\"\nshell = \"true\"\ndepends_on = [\"a\"]\n\
         [[steps]]\nname = \"c\"\nshell = \"true\"\ndepends_on = [\"b\"]\n",
    )
    .unwrap();
    for cmd in ["validate", "submit"] {
        let out = c.cli(&["dag", cmd, cycle.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cycle: a -> b -> c -> a"), "{err}");
    }
    // Straight to the API, past the CLI's own check.
    let client = c.client();
    let step = |name: &str, deps: &[&str]| pb::WorkflowStepSpec {
        name: name.into(),
        job: Some(shell_job("default", &["true"])),
        depends_on: deps
            .iter()
            .map(|d| pb::StepDependency {
                step: d.to_string(),
                condition: String::new(),
            })
            .collect(),
        compensate: None,
    };
    let bad = pb::SubmitWorkflowRequest {
        name: "w".into(),
        steps: vec![step("a", &[]), step("b", &["nope"])],
        ..Default::default()
    };
    match client.submit_workflow(bad).await {
        Err(raftline::Error::InvalidArgument { field, message }) => {
            assert_eq!(field, "steps[b].depends_on[0]");
            assert!(message.contains("unknown step"), "{message}");
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    assert!(client
        .list_workflows(pb::ListWorkflowsRequest::default())
        .await
        .unwrap()
        .is_empty());
    match client.control_workflow(999, "cancel", "").await {
        Err(raftline::Error::NotFound(m)) => assert!(m.contains("workflow 999"), "{m}"),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    let ok = pb::SubmitWorkflowRequest {
        name: "w".into(),
        steps: vec![step("a", &[]), step("b", &["a"])],
        ..Default::default()
    };
    let id = client.submit_workflow(ok).await.unwrap();
    match client.control_workflow(id, "retry", "zz").await {
        Err(raftline::Error::InvalidArgument { field, .. }) => assert_eq!(field, "step"),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    let w = wait_workflow(&client, id, Duration::from_secs(60)).await;
    assert_eq!(w.state, "succeeded");
}
