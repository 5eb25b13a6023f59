//! The cluster, end to end: real node processes, real sled data dirs, real gRPC, real kill -9.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use raftline::proto::pb;
use raftline::Error;

/// Submits `n` jobs, spreading them over the given nodes (one client per node, so each
/// submit enters through that node); returns id -> argv.
async fn submit_spread(
    c: &Cluster,
    via: &[u64],
    tag: &str,
    n: usize,
) -> BTreeMap<u64, Vec<String>> {
    let clients: Vec<_> = via.iter().map(|id| c.client_of(&[*id])).collect();
    let mut acked = BTreeMap::new();
    for i in 0..n {
        let argv = vec!["echo".to_string(), format!("{tag}-{i}")];
        let req = shell_job("q", &["echo", &argv[1]]);
        let id = clients[i % clients.len()]
            .submit(req)
            .await
            .unwrap_or_else(|e| panic!("submit {tag}-{i}: {e}"));
        assert!(acked.insert(id, argv).is_none(), "id {id} handed out twice");
    }
    acked
}

/// Reads every acknowledged job through node `id` (linearizable unless `stale`).
async fn assert_readable(c: &Cluster, id: u64, acked: &BTreeMap<u64, Vec<String>>, stale: bool) {
    let client = c.client_of(&[id]);
    for (job_id, argv) in acked {
        let job = client
            .job(*job_id, stale)
            .await
            .unwrap_or_else(|e| panic!("node {id}: job {job_id}: {e}"));
        assert_eq!(&argv_of(&job), argv, "node {id}: job {job_id}");
        assert_eq!(job.queue, "q");
        // Node executors run the echo jobs (and retry them when a node dies mid-run), so any
        // lifecycle state is fine here: this test is about the job being there.
        assert!(
            raftline::machine::JobState::parse(&job.state).is_some(),
            "node {id}: job {job_id} is {:?}",
            job.state
        );
    }
}

/// Three nodes form a cluster with exactly one leader, and every node's view agrees, also as
/// printed by `raftline cluster status --json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forms_with_one_leader() {
    let c = Cluster::start(Settings::default()).await;
    let leader = c.wait_leader(None).await;
    let mut leaders = 0;
    for id in c.ids() {
        let s = c.status(id).await.expect("status");
        assert_eq!(s.leader, Some(leader), "node {id} disagrees on the leader");
        assert_eq!(s.members.len(), 3, "node {id} membership");
        leaders += usize::from(s.state == "leader");
    }
    assert_eq!(leaders, 1);

    let out = c.cli(&["cluster", "status", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["leader"], leader);
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        let expected = if n["id"] == leader {
            "leader"
        } else {
            "follower"
        };
        assert_eq!(n["state"], expected, "{n}");
        assert!(n["last_applied"].as_u64().is_some(), "{n}");
    }
}

/// 200 jobs submitted through followers and the leader are readable from every node, by
/// linearizable and (after catching up) stale reads; the CLI submit/get agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_through_any_node_are_readable_everywhere() {
    let c = Cluster::start(Settings::default()).await;
    let acked = submit_spread(&c, &c.ids(), "any", 200).await;
    assert_eq!(acked.len(), 200);
    for id in c.ids() {
        assert_readable(&c, id, &acked, false).await;
    }
    let leader = c.wait_leader(None).await;
    let index = c.status(leader).await.unwrap().last_applied;
    for id in c.ids() {
        c.wait_applied(id, index).await;
        assert_readable(&c, id, &acked, true).await;
    }

    let out = c.cli(&[
        "submit",
        "--queue",
        "cli",
        "--priority",
        "7",
        "--json",
        "--",
        "ls",
        "-l",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = v["id"].as_u64().expect("id").to_string();
    let out = c.cli(&["job", "get", &id, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(job["queue"], "cli");
    assert_eq!(job["priority"], 7);
    assert_eq!(job["argv"], serde_json::json!(["ls", "-l"]));
    assert!(job["state"].is_string());

    let out = c.cli(&["job", "get", "999999"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        show(&out)
    );
}

/// kill -9 of the leader: a new leader is elected, submits go on through the survivors, and
/// every acknowledged job stays readable. The killed node restarts from its data dir and
/// catches up; after all three restart, every acknowledged job is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill9_failover_and_full_restart_keep_every_ack() {
    let mut c = Cluster::start(Settings::default()).await;
    let mut acked = submit_spread(&c, &c.ids(), "before", 50).await;

    let old = c.wait_leader(None).await;
    c.kill9(old);
    let new = c.wait_leader(Some(old)).await;
    assert_ne!(new, old);
    let survivors = c.running();
    acked.extend(submit_spread(&c, &survivors, "after", 50).await);
    for id in &survivors {
        assert_readable(&c, *id, &acked, false).await;
    }

    c.spawn(old);
    let index = c.status(new).await.unwrap().last_applied;
    c.wait_applied(old, index).await;
    assert_readable(&c, old, &acked, true).await;

    for id in c.ids() {
        let status = c.stop(id).await;
        assert!(status.success(), "node {id} did not exit cleanly: {status}");
        assert!(
            c.log(id).contains("stopped"),
            "node {id} log:\n{}",
            c.log(id)
        );
    }
    for id in c.ids() {
        c.spawn(id);
    }
    c.wait_leader(None).await;
    for id in c.ids() {
        assert_readable(&c, id, &acked, false).await;
    }
    acked.extend(submit_spread(&c, &c.ids(), "restarted", 10).await);
    assert_eq!(acked.len(), 110);
}

/// Every node killed with -9 right after a burst of acknowledged submits, then restarted: a
/// linearizable read through any node, the old leader first, sees every acknowledged job.
///
/// Regression: openraft lets a leader whose vote is on disk resume leadership at startup
/// without an election, taking as read index the larger of its first entry of the term and
/// the commit index it had saved, which can lag what it acknowledged before the crash. Such
/// a read missed the last acknowledged jobs (found by the jepsen reads-kill run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_kill9_then_linearizable_reads_see_every_ack() {
    let mut c = Cluster::start(Settings::default()).await;
    let leader = c.wait_leader(None).await;
    let client = c.client_of(&[leader]);
    // Payload jobs: no node executor leases them, so nothing is written after the burst and
    // the commit index the leader saved last is as stale as it gets.
    let mut acked = 0u64;
    for i in 0..40 {
        let req = pb::SubmitRequest {
            queue: "q".into(),
            kind: Some(pb::submit_request::Kind::Payload(
                format!("p{i}").into_bytes(),
            )),
            ..Default::default()
        };
        client.submit(req).await.expect("submit");
        acked += 1;
    }
    for id in c.ids() {
        c.kill9(id);
    }
    let mut order = vec![leader];
    order.extend(c.ids().into_iter().filter(|id| *id != leader));
    for id in c.ids() {
        c.spawn(id);
    }
    for id in order {
        let client = c.client_of(&[id]);
        let q = wait_for(
            "a linearizable queue read",
            Duration::from_secs(30),
            || async { client.queue("q", false).await.ok() },
        )
        .await;
        let total = q.scheduled + q.ready + q.leased + q.succeeded + q.dead + q.cancelled;
        assert_eq!(
            total, acked,
            "node {id} read a queue count from before its acks"
        );
    }
}

/// A node stopped while the others write enough to snapshot and purge their logs is brought
/// up to date by snapshot install when it restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_by_snapshot_install() {
    let mut c = Cluster::start(Settings {
        snapshot_every_entries: 20,
        snapshot_logs_kept: 0,
        ..Settings::default()
    })
    .await;
    let mut acked = submit_spread(&c, &c.ids(), "early", 5).await;
    let leader = c.wait_leader(None).await;
    let lagging = c.ids().into_iter().find(|id| *id != leader).unwrap();
    let index = c.status(leader).await.unwrap().last_applied;
    c.wait_applied(lagging, index).await;
    let stopped_at = c.status(lagging).await.unwrap().last_applied;
    assert!(c.stop(lagging).await.success());

    let survivors = c.running();
    acked.extend(submit_spread(&c, &survivors, "while-down", 150).await);
    let purged = wait_for(
        "the leader to purge its log",
        Duration::from_secs(20),
        || async {
            let s = c.status(leader).await?;
            (s.purged_index > stopped_at + 1).then_some(s.purged_index)
        },
    )
    .await;
    assert!(
        purged > stopped_at,
        "log purged to {purged}, node stopped at {stopped_at}"
    );

    c.spawn(lagging);
    let index = c.status(leader).await.unwrap().last_applied;
    c.wait_applied(lagging, index).await;
    let s = c.status(lagging).await.unwrap();
    assert!(
        s.snapshot_index > stopped_at,
        "no snapshot installed: {s:?}"
    );
    assert!(
        c.log(lagging).contains("installed snapshot"),
        "{}",
        c.log(lagging)
    );
    assert_readable(&c, lagging, &acked, true).await;
}

/// A follower that falls behind by many batch entries (200 `SubmitBatch` entries of 100 jobs)
/// catches up from the log once it is back. openraft 0.9 gives an AppendEntries the heartbeat
/// interval (50 ms here) and resends the same range after a timeout; before, the leader sent
/// up to 512 entries at once, which could never finish in time, so the follower never caught
/// up (found by the bench's scale section, with 1,000-job entries). Now at most
/// `APPEND_ENTRIES_MAX` (8) entries go in one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_on_large_entries_catches_up() {
    let mut c = Cluster::start(Settings {
        snapshot_every_entries: 100_000,
        ..Settings::default()
    })
    .await;
    let leader = c.wait_leader(None).await;
    let lagging = c.ids().into_iter().find(|id| *id != leader).unwrap();
    assert!(c.stop(lagging).await.success());
    let client = c.client_of(&[leader]);
    for _ in 0..200 {
        let jobs = (0..100)
            .map(|_| pb::SubmitRequest {
                queue: "big".into(),
                kind: Some(pb::submit_request::Kind::Payload(vec![b'x'; 64])),
                ..Default::default()
            })
            .collect();
        client.submit_batch(jobs).await.expect("submit batch");
    }
    c.spawn(lagging);
    let index = c.status(leader).await.unwrap().last_applied;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let applied = c.status(lagging).await.map_or(0, |s| s.last_applied);
        if applied >= index {
            break;
        }
        if std::time::Instant::now() > deadline {
            let tail = |id: u64| {
                let log = c.log(id);
                let lines: Vec<&str> = log.lines().rev().take(15).collect();
                lines.into_iter().rev().collect::<Vec<_>>().join("\n")
            };
            panic!(
                "node {lagging} applied {applied} of {index}\nleader {leader}:\n{}\nlagging:\n{}",
                tail(leader),
                tail(lagging)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let q = c
        .client_of(&[lagging])
        .queue("big", true)
        .await
        .expect("queue");
    assert_eq!(q.ready, 20_000);
}

/// A node restarted on an emptied data dir while the cluster exists refuses to start with a
/// clear message and exit code 2; the cluster goes on unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_data_dir_is_refused_and_cluster_unharmed() {
    let mut c = Cluster::start(Settings::default()).await;
    let mut acked = submit_spread(&c, &c.ids(), "a", 10).await;
    let victim = 3;
    // Wait until the victim's registration is known to every node.
    let leader = c.wait_leader(None).await;
    let index = c.status(leader).await.unwrap().last_applied;
    for id in c.ids() {
        c.wait_applied(id, index).await;
    }
    assert!(c.stop(victim).await.success());
    std::fs::remove_dir_all(c.node_dir(victim)).unwrap();
    std::fs::create_dir_all(c.node_dir(victim)).unwrap();

    c.spawn(victim);
    let status = c.wait_exit(victim, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(2), "log:\n{}", c.log(victim));
    let log = c.log(victim);
    assert!(log.contains("has run in this cluster before"), "{log}");
    assert!(log.contains("vote twice"), "{log}");

    c.wait_leader(None).await;
    acked.extend(submit_spread(&c, &c.running(), "b", 10).await);
    for id in c.running() {
        assert_readable(&c, id, &acked, false).await;
    }
}

/// With one node left, a submit fails UNAVAILABLE within the request bound and is not
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_left_submits_fail_unavailable_within_bound() {
    let mut c = Cluster::start(Settings {
        request_timeout_ms: 2_000,
        ..Settings::default()
    })
    .await;
    submit_spread(&c, &c.ids(), "a", 5).await;
    let leader = c.wait_leader(None).await;
    let out = c.cli(&["cluster", "status"]);
    assert!(out.status.success(), "{}", show(&out));
    let https: BTreeMap<u64, String> = c
        .ids()
        .into_iter()
        .map(|id| (id, c.node(id).http.clone()))
        .collect();
    let ready = |id: u64| {
        let http = https[&id].clone();
        async move { raftline::tls::http_get(&http, "/ready", None).await }
    };
    wait_for("every node ready", Duration::from_secs(10), || async {
        for id in c.ids() {
            ready(id).await.ok()?;
        }
        Some(())
    })
    .await;
    // Keep the leader: the hardest case, a leader that has lost its quorum.
    for id in c.ids().into_iter().filter(|id| *id != leader) {
        c.kill9(id);
    }
    let client = c.client_of(&[leader]);
    let started = Instant::now();
    let result = client.submit(shell_job("q", &["echo", "lonely"])).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{result:?}"
    );
    assert!(took < Duration::from_millis(2_000 + 2_000), "took {took:?}");

    // Same through the CLI: exit code 1 and a one-line error naming the problem.
    let started = Instant::now();
    let out = c.cli(&["submit", "--queue", "q", "--", "echo", "cli"]);
    assert!(
        started.elapsed() < Duration::from_secs(4 * 2 + 2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unavailable"), "{stderr}");
    assert!(out.stdout.is_empty(), "acknowledged: {}", show(&out));

    // The cut-off leader is not ready, and cluster status says there is no quorum (exit 1).
    let refused = wait_for(
        "the lone leader to say it is not ready",
        Duration::from_secs(10),
        || async { ready(leader).await.err() },
    )
    .await;
    assert!(refused.to_string().contains("503"), "{refused}");
    let out = c.cli(&["cluster", "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no quorum") || stderr.contains("no leader"),
        "{stderr}"
    );
}

/// Bad requests get INVALID_ARGUMENT naming the field, the CLI exits 2 with one line, and
/// nothing is written to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_write_nothing() {
    let c = Cluster::start(Settings::default()).await;
    submit_spread(&c, &c.ids(), "a", 4).await;
    let leader = c.wait_leader(None).await;
    // Let start-up registrations settle so the log index is stable.
    let before = wait_for("a stable log", Duration::from_secs(10), || async {
        let a = c.status(leader).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = c.status(leader).await?;
        (a.last_log_index == b.last_log_index).then_some(b)
    })
    .await;
    for (args, field) in bad_cli_cases() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = c.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid argument") && stderr.contains(field),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    // The same through the library client, through a follower.
    let follower = c.ids().into_iter().find(|id| *id != leader).unwrap();
    let e = c
        .client_of(&[follower])
        .submit(shell_job("", &["echo"]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { ref field, .. } if field == "queue"),
        "{e:?}"
    );
    // A request over the API's message limit names the limit (not "h2 protocol error").
    let big = "y".repeat(100 * 1024);
    let argv: Vec<&str> = std::iter::once("echo")
        .chain(std::iter::repeat_n(big.as_str(), 56))
        .collect();
    let e = c
        .client_of(&[follower])
        .submit(shell_job("q", &argv))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { ref field, ref message }
            if field == "request" && message.contains("API_MESSAGE_BYTES_MAX")),
        "{e:?}"
    );

    let after = c.status(leader).await.unwrap();
    // An election appends one blank entry of its own; only then may the index move.
    if after.term == before.term {
        assert_eq!(
            before.last_log_index, after.last_log_index,
            "a refused request wrote"
        );
    }
    let jobs = |s: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix("raftline_jobs_held "))
            .map(String::from)
    };
    let metrics = http_get(&c.node(leader).http, "/metrics").await;
    assert_eq!(jobs(&metrics).as_deref(), Some("4"), "{metrics}");
}

/// CLI calls that must be refused as invalid, with the field the error must name. Each
/// argument list is split on spaces, except that `|` marks a split where a single argument
/// contains spaces.
fn bad_cli_cases() -> Vec<(Vec<String>, &'static str)> {
    let far = u64::MAX.to_string();
    let huge = "x".repeat(70 * 1024);
    let split = |s: &str| -> Vec<String> {
        if s.contains('|') {
            s.split('|').map(str::to_string).collect()
        } else {
            s.split(' ').map(str::to_string).collect()
        }
    };
    let mut cases: Vec<(Vec<String>, &'static str)> = [
        (
            "schedule|create|--name|s2|--cron|0 0 30 2 *|--|echo",
            "cron",
        ),
        (
            "schedule|create|--name|s3|--cron|@every 1000000d|--|echo",
            "cron",
        ),
        ("queue|pause|", "queue"),
        (
            "submit --queue q --permanent-exit-codes=-1 -- echo",
            "permanent_exit_codes",
        ),
        (
            "submit --queue q --permanent-exit-codes 256 -- echo",
            "permanent_exit_codes",
        ),
        ("submit --queue q --lease-ttl 0s -- echo", "lease_ttl"),
        (
            "trigger create --topic t --max-attempts 0 -- echo",
            "max_attempts",
        ),
        ("worker|--worker-id|a b|--|cat", "worker_id"),
        ("worker|--queue|bad q|--|cat", "queue"),
        ("event|emit||--dedup-key|k", "topic"),
        ("resource set x --capacity 10001", "capacity"),
        ("lock acquire x --owner me --ttl 0s", "ttl"),
        ("submit|--queue||--|echo", "queue"),
        ("submit|--queue|a b|--|echo", "queue"),
        ("submit --queue q --priority 11 -- echo", "priority"),
    ]
    .into_iter()
    .map(|(args, field)| (split(args), field))
    .collect();
    // A value too long or too large to write inline goes in place of `{}`.
    for (args, value, field) in [
        (
            "schedule|create|--name|s1|--cron|@every 30s|--start|{}|--|echo",
            &far,
            "start_ms",
        ),
        ("submit|--queue|q|--run-at|{}|--|echo", &far, "run_at_ms"),
        ("submit|--queue|q|--|echo|{}", &huge, "shell.argv"),
    ] {
        let v = split(args)
            .into_iter()
            .map(|a| if a == "{}" { value.clone() } else { a });
        cases.push((v.collect(), field));
    }
    cases
}

/// `raftline up` starts every node of a config, they form a cluster, and SIGINT stops them all
/// gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_all_nodes_and_stops_them_on_ctrl_c() {
    let c = Cluster::new(Settings::default());
    let mut up = std::process::Command::new(BIN)
        .args(["up", "--config"])
        .arg(&c.config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn up");
    let all = c.ids();
    wait_for("a leader under up", Duration::from_secs(20), || async {
        for id in &all {
            c.status(*id).await?.leader?;
        }
        Some(())
    })
    .await;
    let id = c
        .client_of(&all)
        .submit(shell_job("q", &["echo", "up"]))
        .await
        .expect("submit");
    assert!(id >= 1);
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(up.id() as libc::pid_t, libc::SIGINT);
    }
    let status = wait_for("up to exit", Duration::from_secs(20), || {
        let s = up.try_wait().expect("try_wait");
        async move { s }
    })
    .await;
    assert!(status.success(), "{status}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(up.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    for n in &c.nodes {
        assert!(stdout.contains(&n.api), "{stdout}");
        assert!(
            stdout.contains(&format!("node {} stopped (exit status: 0)", n.id)),
            "{stdout}"
        );
    }
    for id in &all {
        assert!(
            c.status(*id).await.is_none(),
            "node {id} still answers after up stopped"
        );
    }
}

/// A node whose snapshot file was damaged on disk (one flipped byte) refuses to start, naming
/// the file and the checksum, instead of loading a wrong state; the others go on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_snapshot_is_refused_at_start() {
    let mut c = Cluster::start(Settings {
        snapshot_every_entries: 20,
        ..Settings::default()
    })
    .await;
    let mut acked = submit_spread(&c, &c.ids(), "before", 40).await;
    let victim = 2;
    let file = c.node_dir(victim).join("raft-snapshot");
    wait_for("a snapshot file", Duration::from_secs(20), || async {
        file.exists().then_some(())
    })
    .await;
    assert!(c.stop(victim).await.success());
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    c.spawn(victim);
    let status = c.wait_exit(victim, Duration::from_secs(20)).await;
    assert!(!status.success(), "log:\n{}", c.log(victim));
    let log = c.log(victim);
    assert!(log.contains("raft-snapshot"), "{log}");
    assert!(log.contains("checksum"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    c.wait_leader(None).await;
    acked.extend(submit_spread(&c, &c.running(), "after", 10).await);
    for id in c.running() {
        assert_readable(&c, id, &acked, false).await;
    }
}

/// Snapshots follow log bytes as well as entry counts: with the entry bound out of reach, 128
/// submits of 16 KiB payloads (2 MiB of log) pass a 1 MiB `snapshot_every_log_bytes` (up to
/// 1.25 MiB on node 3, staggered) and every node takes a snapshot. (Entries stay small: with
/// 64 KiB entries and four such clusters on two cores, a follower was seen to stay behind for
/// over 30 s, so it never reached the bound; see the session notes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_taken_by_log_bytes() {
    let c = Cluster::start(Settings {
        snapshot_every_entries: 10_000_000,
        cluster_extra: "snapshot_every_log_bytes = 1048576".into(),
        ..Settings::default()
    })
    .await;
    let client = c.client();
    for i in 0..128u8 {
        client
            .submit(pb::SubmitRequest {
                queue: "big".into(),
                kind: Some(pb::submit_request::Kind::Payload(vec![i; 16 * 1024])),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("submit {i}: {e}"));
    }
    for id in c.ids() {
        wait_for(
            &format!("node {id} to take a snapshot"),
            Duration::from_secs(30),
            || async { (c.status(id).await?.snapshot_index > 0).then_some(()) },
        )
        .await;
    }
}

/// A follower brought up by snapshot install while writes go on, and then a node restarted
/// from its own snapshot file plus the log after it, both end with the leader's state digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_install_under_writes_and_restart_from_snapshot_keep_the_same_state() {
    let mut c = Cluster::start(Settings {
        snapshot_every_entries: 20,
        snapshot_logs_kept: 0,
        ..Settings::default()
    })
    .await;
    let leader = c.wait_leader(None).await;
    let lagging = c.ids().into_iter().find(|id| *id != leader).unwrap();
    assert!(c.stop(lagging).await.success());
    let survivors = c.running();
    let mut acked = submit_spread(&c, &survivors, "while-down", 100).await;
    wait_for(
        "the leader to purge its log",
        Duration::from_secs(20),
        || async { (c.status(leader).await?.purged_index > 20).then_some(()) },
    )
    .await;

    // Writes go on while the lagging node starts and installs the leader's snapshot.
    let writer = {
        let client = c.client_of(&survivors);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..150 {
                let id = client
                    .submit(shell_job("q", &["echo", &format!("w{i}")]))
                    .await
                    .unwrap_or_else(|e| panic!("submit during install {i}: {e}"));
                ids.push((id, vec!["echo".to_string(), format!("w{i}")]));
            }
            ids
        })
    };
    c.spawn(lagging);
    acked.extend(writer.await.unwrap());
    wait_for("a snapshot install", Duration::from_secs(20), || async {
        c.log(lagging).contains("installed snapshot").then_some(())
    })
    .await;
    let index = c.wait_same_digest().await;
    assert!(index > 100, "digests compared at index {index}");
    assert_readable(&c, lagging, &acked, true).await;

    // A node restarted from its snapshot file and the log after it.
    let restarted = c.ids().into_iter().find(|id| *id != lagging).unwrap();
    assert!(c.stop(restarted).await.success());
    acked.extend(submit_spread(&c, &c.running(), "after", 10).await);
    c.spawn(restarted);
    let leader = c.wait_leader(None).await;
    let index = c.status(leader).await.unwrap().last_applied;
    c.wait_applied(restarted, index).await;
    c.wait_same_digest().await;
    assert_readable(&c, restarted, &acked, true).await;
}

/// The CLI takes its endpoints from RAFTLINE_ADDR (and its token from RAFTLINE_TOKEN) when
/// run where there is no cluster.toml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_takes_its_endpoints_from_raftline_addr() {
    let c = Cluster::start(Settings::default()).await;
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.api.clone()).collect();
    let out = std::process::Command::new(BIN)
        .args(["cluster", "status", "--json"])
        .current_dir(elsewhere.path())
        .env("RAFTLINE_ADDR", addrs.join(","))
        .env("RAFTLINE_TOKEN", c.access.token.as_deref().expect("token"))
        .output()
        .expect("run raftline");
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3), "{v}");
    let members = v["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{v}");
    assert!(members.iter().all(|m| m["voter"] == true), "{v}");
    let leaders = members.iter().filter(|m| m["state"] == "leader").count();
    assert_eq!(leaders, 1, "{v}");
    for n in &c.nodes {
        assert!(
            members.iter().any(|m| m["api_addr"] == n.api.as_str()),
            "{v}"
        );
    }
}
