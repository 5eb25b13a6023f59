//! Resources, locks and queue protection on a real 3-node cluster: a workflow whose steps need
//! an exclusive slot and a pool of two never exceeds either (checked from the attempt records);
//! a lock holder's node frozen with SIGSTOP loses the lock at its ttl to a client on another
//! node, whose token is larger, and the stale holder's release is refused; a queue whose jobs
//! all fail trips its breaker, stops leasing and probes after the cooldown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use raftline::client::Client;
use raftline::proto::pb;

/// The most attempts running at once among `intervals` weighted by units.
fn max_units(mut edges: Vec<(u64, i64)>) -> i64 {
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most
}

fn step(name: &str, resources: &[&str], deps: &[&str]) -> pb::WorkflowStepSpec {
    let mut job = shell_job("res", &["sleep", "0.2"]);
    job.resources = resources.iter().map(|r| r.to_string()).collect();
    pb::WorkflowStepSpec {
        name: name.into(),
        job: Some(job),
        depends_on: deps
            .iter()
            .map(|d| pb::StepDependency {
                step: d.to_string(),
                condition: String::new(),
            })
            .collect(),
        compensate: None,
    }
}

/// 30 steps needing `deployment_slot` (capacity 1) and `test_redis` (capacity 2), run with
/// `max_parallel` 16 on three nodes: the attempt records never show more holders than capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_steps_never_exceed_resource_capacity() {
    let c = Cluster::start(Settings {
        cluster_extra: "workers_min = 4\nworkers_max = 8\n".into(),
        ..Settings::default()
    })
    .await;
    let out = c.cli(&["resource", "set", "deployment_slot", "--capacity", "1"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = c.cli(&["resource", "set", "test_redis", "--capacity", "2"]);
    assert!(out.status.success(), "{}", show(&out));
    let mut steps = vec![step("start", &[], &[])];
    for i in 0..29 {
        let needs: &[&str] = match i % 3 {
            0 => &["deployment_slot"],
            1 => &["test_redis"],
            _ => &["test_redis", "deployment_slot"],
        };
        steps.push(step(&format!("s{i}"), needs, &["start"]));
    }
    let client = c.client();
    let id = client
        .submit_workflow(pb::SubmitWorkflowRequest {
            name: "resources".into(),
            max_parallel: 16,
            steps,
            ..Default::default()
        })
        .await
        .expect("submit");
    let w = wait_for("the workflow to end", Duration::from_secs(120), || async {
        let w = client.workflow(id, false).await.ok()?;
        (w.state != "running").then_some(w)
    })
    .await;
    assert_eq!(w.state, "succeeded", "{w:?}");
    let mut slot = Vec::new();
    let mut redis = Vec::new();
    for s in &w.steps {
        let job = client.job(s.job_id, false).await.expect("job");
        for a in &job.attempts {
            let end = a.ended_ms.expect("ended");
            if job.resources.iter().any(|r| r == "deployment_slot") {
                slot.push((a.started_ms, 1));
                slot.push((end, -1));
            }
            if job.resources.iter().any(|r| r == "test_redis") {
                redis.push((a.started_ms, 1));
                redis.push((end, -1));
            }
        }
    }
    assert_eq!(max_units(slot), 1, "deployment_slot held by more than one");
    let redis = max_units(redis);
    assert!(redis <= 2, "test_redis held {redis} times at once");
    let list = c.cli(&["resource", "list", "--json"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("\"name\":\"test_redis\""), "{text}");
    // Nothing is held once the workflow ended.
    for r in client.resources("", false).await.unwrap() {
        assert_eq!((r.used_by_jobs, r.locks.len()), (0, 0), "{r:?}");
    }
}

/// A client holding a lock through the leader; the leader is frozen (SIGSTOP). A client on
/// another node waits and gets the lock only once the ttl has run out on state-machine time,
/// with a larger token. After SIGCONT the stale holder's renew and release are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_holder_loses_the_lock_at_its_ttl() {
    let c = Cluster::start(Settings::default()).await;
    let leader = c.wait_leader(None).await;
    let other = c.ids().into_iter().find(|id| *id != leader).unwrap();
    let a = c.client_of(&[leader]);
    let b = c.client_of(&[other]);
    b.set_resource("db_migration", 1).await.expect("resource");
    let grant_a = a
        .acquire_lock(pb::AcquireLockRequest {
            resource: "db_migration".into(),
            owner: "alice".into(),
            ttl_ms: 3_000,
            wait_ms: 0,
        })
        .await
        .expect("alice acquires");
    // Bob cannot have it while alice holds it.
    let busy = b
        .acquire_lock(pb::AcquireLockRequest {
            resource: "db_migration".into(),
            owner: "bob".into(),
            ttl_ms: 3_000,
            wait_ms: 0,
        })
        .await;
    assert!(
        matches!(busy, Err(raftline::Error::FailedPrecondition(_))),
        "{busy:?}"
    );
    c.signal(leader, libc::SIGSTOP);
    let t = Instant::now();
    let grant_b = loop {
        // Each call waits up to 10 s; UNAVAILABLE while a new leader is elected is retried.
        match b
            .acquire_lock(pb::AcquireLockRequest {
                resource: "db_migration".into(),
                owner: "bob".into(),
                ttl_ms: 3_000,
                wait_ms: 10_000,
            })
            .await
        {
            Ok(g) => break g,
            Err(e) => {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "bob never got it: {e}"
                );
            }
        }
    };
    c.signal(leader, libc::SIGCONT);
    assert!(
        grant_b.token > grant_a.token,
        "{grant_b:?} after {grant_a:?}"
    );
    // Bob's grant began after alice's expiry: its expiry is at least alice's plus a ttl.
    assert!(
        grant_b.expires_ms >= grant_a.expires_ms + 3_000,
        "bob {grant_b:?} alice {grant_a:?}"
    );
    let all = c.client();
    let renew = all.renew_lock("db_migration", grant_a.token, 3_000).await;
    assert!(
        matches!(&renew, Err(raftline::Error::FailedPrecondition(m)) if m.contains("stale fencing token")),
        "{renew:?}"
    );
    let release = all.release_lock("db_migration", grant_a.token).await;
    assert!(
        matches!(&release, Err(raftline::Error::FailedPrecondition(_))),
        "{release:?}"
    );
    all.release_lock("db_migration", grant_b.token)
        .await
        .expect("bob releases");
    // The CLI prints the grant as JSON.
    let out = c.cli(&[
        "lock",
        "acquire",
        "db_migration",
        "--owner",
        "carol",
        "--ttl",
        "5s",
        "--json",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["token"].as_u64().unwrap() > grant_b.token);
}

async fn queue_json(c: &Cluster, queue: &str) -> serde_json::Value {
    let out = c.cli(&["queue", "get", queue, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// All jobs of a queue fail: its breaker opens and leasing stops (jobs stay ready); after the
/// cooldown it probes once, the probe fails, and it opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_queue_trips_its_breaker_and_probes() {
    let c = Cluster::start(Settings::default()).await;
    let out = c.cli(&["queue", "set", "flaky", "--breaker", "50%/4/2s"]);
    assert!(out.status.success(), "{}", show(&out));
    let client: Client = c.client();
    for _ in 0..12 {
        let mut job = shell_job("flaky", &["false"]);
        job.max_attempts = 1;
        client.submit(job).await.expect("submit");
    }
    let opened = wait_for("the breaker to open", Duration::from_secs(30), || async {
        let q = queue_json(&c, "flaky").await;
        (q["breaker"]["state"] == "open").then_some(q)
    })
    .await;
    let dead_when_opened = opened["counts"]["dead"].as_u64().unwrap();
    assert!(dead_when_opened >= 4, "{opened}");
    assert!(opened["counts"]["ready"].as_u64().unwrap() > 0, "{opened}");
    let q = wait_for(
        "a probe and a new open",
        Duration::from_secs(30),
        || async {
            let q = queue_json(&c, "flaky").await;
            let states: Vec<String> = q["breaker"]["transitions"]
                .as_array()?
                .iter()
                .map(|t| t["state"].as_str().unwrap_or("").to_string())
                .collect();
            (states.len() >= 3).then_some((q, states))
        },
    )
    .await;
    assert_eq!(q.1[..3], ["open", "half_open", "open"], "{}", q.0);
    // One probe ran between the two opens: one more dead job, no more.
    let dead = q.0["counts"]["dead"].as_u64().unwrap();
    assert!(dead <= dead_when_opened + 2, "{}", q.0);
    assert!(q.0["counts"]["ready"].as_u64().unwrap() > 0, "{}", q.0);
    // Removing the breaker lets the rest run.
    let out = c.cli(&["queue", "set", "flaky", "--breaker", "off"]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for("every job to end", Duration::from_secs(30), || async {
        let q = queue_json(&c, "flaky").await;
        (q["counts"]["dead"].as_u64()? == 12).then_some(())
    })
    .await;
}
