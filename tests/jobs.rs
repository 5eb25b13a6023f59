//! Jobs that run: lifecycle, retries, dead letters, cancel/pause/requeue, failover of a running
//! job, and an external worker over the gRPC worker API. Real node processes throughout.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use raftline::proto::pb;
use raftline::Error;

/// Fast retries for tests: 100 ms base, no jitter.
fn fast_backoff() -> Option<pb::Backoff> {
    Some(pb::Backoff {
        base_ms: 100,
        factor: 2,
        cap_ms: 400,
        no_jitter: true,
    })
}

async fn wait_terminal(c: &Cluster, id: u64, timeout: Duration) -> pb::Job {
    let client = c.client();
    wait_for(&format!("job {id} to finish"), timeout, || async {
        // Linearizable: a lagging node could still show a terminal state from before a retry.
        let job = client.job(id, false).await.ok()?;
        ["succeeded", "dead", "cancelled"]
            .contains(&job.state.as_str())
            .then_some(job)
    })
    .await
}

/// 1,000 shell jobs (`true`, `false`, and `exit 3` with 3 permanent) end in the right terminal
/// state with the right attempt counts, and each reached its terminal state exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_shell_jobs_end_in_the_right_state() {
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let kinds = [
        ("true", vec!["true"]),
        ("false", vec!["false"]),
        ("exit3", vec!["sh", "-c", "exit 3"]),
    ];
    let mut expected = BTreeMap::new();
    let mut submits = Vec::new();
    for i in 0..1000usize {
        let (name, argv) = &kinds[i % 3];
        let mut req = shell_job("mix", argv);
        req.backoff = fast_backoff();
        req.permanent_exit_codes = vec![3];
        req.tags = vec![name.to_string()];
        submits.push(req);
    }
    let clients: Vec<_> = c.ids().iter().map(|id| c.client_of(&[*id])).collect();
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(submits.into_iter().enumerate())
        .map(|(i, req)| {
            let client = &clients[i % clients.len()];
            async move { (req.tags[0].clone(), client.submit(req).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (name, id) in results {
        expected.insert(id.expect("submit"), name);
    }
    assert_eq!(expected.len(), 1000);

    wait_for("every job to finish", Duration::from_secs(120), || async {
        let q = client.queue("mix", false).await.ok()?;
        (q.succeeded + q.dead == 1000).then_some(())
    })
    .await;
    let q = client.queue("mix", false).await.unwrap();
    assert_eq!(
        (q.succeeded, q.dead, q.scheduled, q.ready, q.leased),
        (334, 666, 0, 0, 0)
    );

    for (id, name) in &expected {
        let job = client.job(*id, false).await.unwrap();
        let ends: Vec<&str> = job.attempts.iter().map(|a| a.result.as_str()).collect();
        let classes: Vec<&str> = job
            .attempts
            .iter()
            .map(|a| a.error_class.as_str())
            .collect();
        assert!(job.finished_ms.is_some(), "job {id} has no finish time");
        match name.as_str() {
            "true" => {
                assert_eq!(job.state, "succeeded", "job {id}");
                assert_eq!(
                    ends,
                    ["succeeded"],
                    "job {id}: exactly one successful attempt"
                );
            }
            "false" => {
                assert_eq!(job.state, "dead", "job {id}");
                assert_eq!(ends, ["failed"; 3], "job {id}");
                assert_eq!(classes, ["transient"; 3], "job {id}");
                assert!(
                    job.attempts.iter().all(|a| a.exit_code == Some(1)),
                    "job {id}"
                );
            }
            _ => {
                assert_eq!(job.state, "dead", "job {id}");
                assert_eq!(
                    classes,
                    ["permanent"],
                    "job {id}: no retry of a permanent exit"
                );
                assert_eq!(job.attempts[0].exit_code, Some(3));
            }
        }
        assert_eq!(job.attempts_used as usize, job.attempts.len(), "job {id}");
    }
    // Every node ran some of them: the work spreads over the cluster's executors.
    let mut nodes = std::collections::BTreeSet::new();
    for id in expected.keys().take(300) {
        let job = client.job(*id, true).await.unwrap();
        nodes.extend(job.attempts.iter().filter_map(|a| a.node));
    }
    assert!(!nodes.is_empty());
}

/// kill -9 of the node running a long job: its lease expires, the job runs again on another
/// node and succeeds once; a completion under the old lease's token is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_running_node_reruns_the_job_elsewhere_once() {
    let mut c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let mut req = shell_job("long", &["sh", "-c", "sleep 2; echo done"]);
    req.lease_ttl_ms = 1_500;
    req.backoff = fast_backoff();
    let id = client.submit(req).await.unwrap();
    let first = wait_for("the job to start", Duration::from_secs(20), || async {
        let job = client.job(id, false).await.ok()?;
        let a = job.attempts.first()?;
        (job.state == "leased").then(|| (a.node.expect("node-local attempt"), a.token))
    })
    .await;
    let (node, old_token) = first;
    c.kill9(node);
    c.wait_leader(Some(node)).await;

    let client = c.client();
    let job = wait_terminal(&c, id, Duration::from_secs(60)).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let successes: Vec<_> = job
        .attempts
        .iter()
        .filter(|a| a.result == "succeeded")
        .collect();
    assert_eq!(successes.len(), 1, "{:?}", job.attempts);
    assert_ne!(
        successes[0].node,
        Some(node),
        "ran again on the killed node"
    );
    assert_eq!(
        job.attempts[0].error_class, "lost_lease",
        "{:?}",
        job.attempts
    );
    assert!(successes[0].output_tail.contains("done"));

    let late = raftline::machine::Report {
        error_class: None,
        exit_code: Some(0),
        error: String::new(),
        output_tail: String::new(),
    };
    let e = client.complete(id, old_token, &late).await.unwrap_err();
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
    let again = client.job(id, false).await.unwrap();
    assert_eq!(
        again.attempts, job.attempts,
        "a stale completion changed the job"
    );
}

/// Cancel kills a running job's process; a paused queue is not leased while another queue
/// runs; a dead job requeued with a new command runs the new command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_pause_and_dlq_requeue() {
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let pid_file = c.dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let id = client
        .submit(shell_job("slow", &["sh", "-c", &script]))
        .await
        .unwrap();
    let pid: i32 = wait_for(
        "the job to write its pid",
        Duration::from_secs(20),
        || async { std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok() },
    )
    .await;
    let out = c.cli(&["job", "cancel", &id.to_string(), "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for(
        "the cancelled process to die",
        Duration::from_secs(10),
        || async {
            // SAFETY: signal 0 only checks whether the process exists.
            (unsafe { libc::kill(pid, 0) } != 0).then_some(())
        },
    )
    .await;
    assert_eq!(client.job(id, false).await.unwrap().state, "cancelled");

    let out = c.cli(&["queue", "pause", "held", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let held = client.submit(shell_job("held", &["true"])).await.unwrap();
    let other = client.submit(shell_job("other", &["true"])).await.unwrap();
    assert_eq!(
        wait_terminal(&c, other, Duration::from_secs(20))
            .await
            .state,
        "succeeded"
    );
    assert_eq!(
        client.job(held, false).await.unwrap().state,
        "ready",
        "a paused queue was leased"
    );
    let out = c.cli(&["queue", "get", "held", "--json"]);
    let q: serde_json::Value = serde_json::from_slice(&out.stdout).expect("queue json");
    assert_eq!(
        (q["paused"].as_bool(), q["counts"]["ready"].as_u64()),
        (Some(true), Some(1))
    );
    c.cli(&["queue", "resume", "held"]);
    assert_eq!(
        wait_terminal(&c, held, Duration::from_secs(20)).await.state,
        "succeeded"
    );

    let mut req = shell_job("dlq", &["sh", "-c", "exit 9"]);
    req.max_attempts = 1;
    let dead = client.submit(req).await.unwrap();
    assert_eq!(
        wait_terminal(&c, dead, Duration::from_secs(20)).await.state,
        "dead"
    );
    let out = c.cli(&["dlq", "list", "--queue", "dlq", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dlq json");
    assert_eq!(list[0]["id"], dead);
    let marker = c.dir.path().join("fixed");
    let fixed = format!("echo fixed > {}", marker.display());
    let out = c.cli(&[
        "dlq",
        "requeue",
        &dead.to_string(),
        "--max-attempts",
        "2",
        "--",
        "sh",
        "-c",
        &fixed,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let job = wait_terminal(&c, dead, Duration::from_secs(20)).await;
    assert_eq!(job.state, "succeeded");
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "fixed");
    assert_eq!(job.max_attempts, 2);

    let out = c.cli(&["job", "cancel", &dead.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already succeeded"),
        "{}",
        show(&out)
    );
    let out = c.cli(&["job", "get", "987654"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let out = c.cli(&["submit", "--queue", "q", "--delay", "-5s", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("delay"),
        "{}",
        show(&out)
    );
    let out = c.cli(&["submit", "--queue", "q", "--timeout", "0s", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

/// An external worker written against the gRPC API leases, heartbeats, checkpoints and
/// crashes; the next attempt gets the checkpoint back, and the crashed worker's late
/// completion is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_worker_gets_the_checkpoint_after_a_crash() {
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let submit = pb::SubmitRequest {
        queue: "ext".into(),
        kind: Some(pb::submit_request::Kind::Payload(
            b"resize image 42".to_vec(),
        )),
        lease_ttl_ms: 1_000,
        backoff: fast_backoff(),
        ..Default::default()
    };
    let id = client.submit(submit).await.unwrap();
    let lease = |worker: &str| pb::LeaseRequest {
        worker_id: worker.into(),
        queues: vec!["ext".into()],
        max: 4,
        wait_ms: 10_000,
        ..Default::default()
    };
    let first = client.lease(lease("crashy")).await.unwrap();
    assert_eq!(first.jobs.len(), 1, "{first:?}");
    let grant = &first.jobs[0];
    assert_eq!(grant.job.as_ref().unwrap().id, id);
    assert_eq!(grant.checkpoint, None);
    match &grant.job.as_ref().unwrap().kind {
        Some(pb::job::Kind::Payload(p)) => assert_eq!(p, b"resize image 42"),
        other => panic!("{other:?}"),
    }
    let beat = client.heartbeat("crashy").await.unwrap();
    assert_eq!(beat.leases.len(), 1);
    assert_eq!(
        (beat.leases[0].job_id, beat.leases[0].token),
        (id, grant.token)
    );
    client
        .checkpoint(id, grant.token, b"step-1".to_vec())
        .await
        .unwrap();
    // The worker crashes: no more heartbeats. Its lease expires and the job is retried.
    let second = wait_for("a second lease", Duration::from_secs(30), || async {
        let r = client
            .lease(pb::LeaseRequest {
                wait_ms: 500,
                ..lease("steady")
            })
            .await
            .ok()?;
        r.jobs.into_iter().next()
    })
    .await;
    assert_eq!(second.job.as_ref().unwrap().id, id);
    assert!(second.token > grant.token, "fencing tokens must increase");
    assert_eq!(second.attempt, 2);
    assert_eq!(second.checkpoint.as_deref(), Some(&b"step-1"[..]));

    let ok = raftline::machine::Report {
        error_class: None,
        exit_code: None,
        error: String::new(),
        output_tail: "resized".into(),
    };
    let e = client.complete(id, grant.token, &ok).await.unwrap_err();
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
    let e = client
        .checkpoint(id, grant.token, b"late".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
    assert_eq!(
        client.complete(id, second.token, &ok).await.unwrap(),
        "succeeded"
    );
    let job = client.job(id, false).await.unwrap();
    assert_eq!(job.attempts[0].error_class, "lost_lease");
    assert_eq!(job.attempts[1].result, "succeeded");

    // `raftline worker` runs an external job's payload through its handler command.
    let out_file = c.dir.path().join("payload");
    let submit = pb::SubmitRequest {
        queue: "ext2".into(),
        kind: Some(pb::submit_request::Kind::Payload(b"hello worker".to_vec())),
        ..Default::default()
    };
    let id = client.submit(submit).await.unwrap();
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.api.clone()).collect();
    let handler = format!("cat > {}", out_file.display());
    let mut worker = std::process::Command::new(BIN)
        .args([
            "--addr",
            &addrs.join(","),
            "worker",
            "--queue",
            "ext2",
            "--",
            "sh",
            "-c",
            &handler,
        ])
        .env("RAFTLINE_TOKEN", c.access.token.as_deref().expect("token"))
        .spawn()
        .expect("start raftline worker");
    let job = wait_terminal(&c, id, Duration::from_secs(30)).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "hello worker");
}

/// Submit options end to end: a timeout kills the process group and counts as a transient
/// failure; env and cwd reach the process and the output tail is kept; an idempotency key
/// returns the first job; a node restarted while running a job with a long lease gives the job
/// back at once (its new incarnation ends the old run's leases), well before the ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_env_idempotency_and_restart_release() {
    let mut c = Cluster::start(Settings::default()).await;
    let client = c.client();

    let out = c.cli(&[
        "submit",
        "--queue",
        "opts",
        "--timeout",
        "1s",
        "--max-attempts",
        "1",
        "--json",
        "--",
        "sh",
        "-c",
        "sleep 30",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let timed = v["id"].as_u64().unwrap();
    let job = wait_terminal(&c, timed, Duration::from_secs(30)).await;
    assert_eq!(job.state, "dead");
    assert_eq!(job.attempts[0].error_class, "timeout", "{:?}", job.attempts);

    let out = c.cli(&[
        "submit",
        "--queue",
        "opts",
        "--env",
        "GREETING=hi there",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd",
    ]);
    let id: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("id");
    let job = wait_terminal(&c, id, Duration::from_secs(30)).await;
    assert_eq!(job.state, "succeeded");
    assert_eq!(job.attempts[0].output_tail, "hi there\n/tmp\n");

    let key = [
        "submit",
        "--queue",
        "opts",
        "--idempotency-key",
        "deploy-42",
        "--json",
        "--",
        "true",
    ];
    let first: serde_json::Value = serde_json::from_slice(&c.cli(&key).stdout).unwrap();
    let again: serde_json::Value = serde_json::from_slice(&c.cli(&key).stdout).unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(
        (first["duplicate"].as_bool(), again["duplicate"].as_bool()),
        (Some(false), Some(true))
    );

    let mut req = shell_job("restart", &["sh", "-c", "sleep 3; echo finished"]);
    req.lease_ttl_ms = 120_000;
    let id = client.submit(req).await.unwrap();
    let node = wait_for("the job to start", Duration::from_secs(20), || async {
        let job = client.job(id, false).await.ok()?;
        (job.state == "leased").then(|| job.attempts[0].node.unwrap())
    })
    .await;
    c.kill9(node);
    c.spawn(node);
    let client = c.client();
    let job = wait_terminal(&c, id, Duration::from_secs(60)).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(
        job.attempts[0].error_class, "lost_lease",
        "{:?}",
        job.attempts
    );
    assert!(
        job.attempts[0].error.contains("restarted"),
        "{:?}",
        job.attempts[0]
    );
    let released_after = job.attempts[0].ended_ms.unwrap() - job.attempts[0].started_ms;
    assert!(
        released_after < 60_000,
        "released after {released_after} ms, not at once"
    );
    drop(client);
}

/// `SubmitBatch` adds many jobs in one call, or none when one is invalid (the error names
/// `jobs[i].field`); `CompleteAndLease` ends attempts and leases the next jobs in one call,
/// each completion judged on its own (a stale token is refused, the others succeed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_batch_and_complete_and_lease() {
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let job = |i: usize| pb::SubmitRequest {
        queue: "bulk".into(),
        kind: Some(pb::submit_request::Kind::Payload(
            format!("p{i}").into_bytes(),
        )),
        ..Default::default()
    };
    let ids: Vec<u64> = client
        .submit_batch((0..300).map(job).collect())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 300);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids in order");

    let mut bad = (0..5).map(job).collect::<Vec<_>>();
    bad[3].priority = 11;
    let e = client.submit_batch(bad).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "jobs[3].priority"),
        "{e:?}"
    );
    let too_many = (0..1001).map(job).collect::<Vec<_>>();
    let e = client.submit_batch(too_many).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "jobs"),
        "{e:?}"
    );
    let q = client.queue("bulk", false).await.unwrap();
    assert_eq!(q.ready, 300, "a refused batch adds nothing: {q:?}");
    // A page limit of 0 means the default; above the maximum it is refused, never cut.
    let list = |limit: u32| pb::ListJobsRequest {
        queue: "bulk".into(),
        limit,
        ..Default::default()
    };
    assert_eq!(client.list_jobs(list(0)).await.unwrap().len(), 100);
    assert_eq!(client.list_jobs(list(1000)).await.unwrap().len(), 300);
    let e = client.list_jobs(list(1001)).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "limit"),
        "{e:?}"
    );

    let lease = |max: u32| pb::LeaseRequest {
        worker_id: "bulk-worker".into(),
        queues: vec!["bulk".into()],
        max,
        ..Default::default()
    };
    let first = client.lease(lease(3)).await.unwrap().jobs;
    assert_eq!(first.len(), 3);
    let done = |l: &pb::LeasedJob, token: u64| pb::CompleteRequest {
        job_id: l.job.as_ref().unwrap().id,
        token,
        success: true,
        ..Default::default()
    };
    let reply = client
        .complete_and_lease(pb::CompleteAndLeaseRequest {
            completions: vec![
                done(&first[0], first[0].token),
                done(&first[1], first[1].token + 1000),
                done(&first[2], first[2].token),
            ],
            lease: Some(lease(5)),
        })
        .await
        .unwrap();
    let states: Vec<(&str, &str)> = reply
        .completions
        .iter()
        .map(|r| (r.state.as_str(), r.error_code.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("succeeded", ""),
            ("", "FAILED_PRECONDITION"),
            ("succeeded", "")
        ],
        "{reply:?}"
    );
    assert_eq!(reply.jobs.len(), 5);
    let q = client.queue("bulk", false).await.unwrap();
    assert_eq!((q.succeeded, q.leased, q.ready), (2, 6, 292), "{q:?}");

    // `jobs list --limit` above the server's page size (1,000) reads page after page: never
    // cut short, never past the limit, ids in order.
    let paged = |i: usize| pb::SubmitRequest {
        queue: "paged".into(),
        ..job(i)
    };
    let mut all = ids.clone();
    all.extend(
        client
            .submit_batch((0..1000).map(paged).collect())
            .await
            .unwrap()
            .iter()
            .map(|r| r.id),
    );
    let out = c.cli(&["jobs", "list", "--limit", "1250", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<u64> = list.iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(listed, all[..1250]);
    let out = c.cli(&["jobs", "list", "--limit", "5000"]);
    assert!(out.status.success(), "{}", show(&out));
    // A table: its header, then a row per job.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1 + 1300
    );

    // A worker concurrency out of range is refused (exit 2, the flag and range named), not
    // clamped.
    for bad in ["0", "257"] {
        let out = c.cli(&["worker", "--concurrency", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert!(
            err.contains("--concurrency") && err.contains("1..=256"),
            "{err}"
        );
    }
}

/// Waiting workers that race for one job keep watching after they lose: a job that becomes
/// ready while a losing worker's lease is in flight is leased at once, not when that
/// worker's long-poll ends. Four workers wait up to 20 s each on the leader, on a fresh queue;
/// two jobs are submitted back to back; two workers must get one each within 5 s. Repeated
/// with a gap between the jobs swept over the rounds, since the second one lands inside the
/// losers' round trip only some of the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_workers_miss_no_job_that_arrives_while_they_race() {
    let c = Cluster::start(Settings::default()).await;
    let leader = c.wait_leader(None).await;
    let client = c.client_of(&[leader]);
    for round in 0..60u64 {
        let queue = format!("race-{round}");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for w in 0..4 {
            let (worker, queue, tx) = (c.client_of(&[leader]), queue.clone(), tx.clone());
            waiters.push(tokio::spawn(async move {
                let lease = pb::LeaseRequest {
                    worker_id: format!("racer-{w}"),
                    queues: vec![queue],
                    max: 1,
                    wait_ms: 20_000,
                    ..Default::default()
                };
                let got = worker.lease(lease).await.map(|r| r.jobs.len());
                let _ = tx.send(got);
            }));
        }
        // Pacing, not a wait for a condition: the outcome must hold whether or not the workers
        // are parked yet; parked ones make the race this test is about likelier.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        for i in 0..2u8 {
            let job = pb::SubmitRequest {
                queue: queue.clone(),
                kind: Some(pb::submit_request::Kind::Payload(vec![i])),
                ..Default::default()
            };
            client.submit(job).await.expect("submit");
            tokio::time::sleep(Duration::from_micros(50 * round)).await;
        }
        let mut leased = 0;
        while leased < 2 {
            let left = Duration::from_secs(5).saturating_sub(started.elapsed());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(Ok(n))) => leased += n,
                Ok(other) => panic!("round {round}: a waiting worker failed: {other:?}"),
                Err(_) => panic!(
                    "round {round}: {leased} of 2 jobs leased after 5 s with four workers \
                     waiting: a job that arrived during a lost race was not seen"
                ),
            }
        }
        for w in waiters {
            w.abort();
        }
    }
}
