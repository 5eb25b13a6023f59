//! `/metrics` on a real 3-node cluster after a scripted run, read with a Prometheus text-format
//! parser: every metric family is there with its labels, and the job counts by queue and state
//! are the API's.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{http_get, Cluster, Settings};
use raftline::proto::pb;

/// The samples of one scrape: (name, labels) to value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse(text: &str) -> Samples {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ((s.metric, labels), value)
        })
        .collect()
}

fn get(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples.get(&(name.to_string(), labels)).copied()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_match_the_api_after_a_scripted_run() {
    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let mut ids = Vec::new();
    for i in 0..12 {
        let argv: &[&str] = if i % 4 == 0 { &["false"] } else { &["true"] };
        let mut req = common::shell_job("metered", argv);
        req.max_attempts = 1;
        ids.push(client.submit(req).await.unwrap());
    }
    common::wait_finished(&client, &ids, Duration::from_secs(60)).await;
    let out = c.cli(&["queue", "pause", "metered"]);
    assert!(out.status.success(), "{}", common::show(&out));
    let leader = c.wait_leader(None).await;
    let index = c.status(leader).await.unwrap().last_applied;
    c.wait_applied(leader, index).await;

    let samples = parse(&http_get(&c.node(leader).http, "/metrics").await);
    let count = |state: &str| {
        get(
            &samples,
            "raftline_jobs",
            &[("queue", "metered"), ("state", state)],
        )
    };
    assert_eq!(count("succeeded"), Some(9.0));
    assert_eq!(count("dead"), Some(3.0));
    assert_eq!(count("ready"), Some(0.0));
    assert_eq!(
        get(&samples, "raftline_queue_paused", &[("queue", "metered")]),
        Some(1.0)
    );
    assert_eq!(get(&samples, "raftline_raft_is_leader", &[]), Some(1.0));
    assert_eq!(
        get(
            &samples,
            "raftline_sla_missed_jobs",
            &[("queue", "metered")]
        ),
        Some(0.0)
    );
    let applied = get(&samples, "raftline_raft_last_applied", &[]).unwrap();
    assert!(applied >= index as f64, "{applied} < {index}");
    let committed = get(&samples, "raftline_raft_committed_index", &[]).unwrap();
    assert!(
        committed >= index as f64,
        "committed {committed} < applied {index}"
    );
    let submits = get(
        &samples,
        "raftline_applied_commands_total",
        &[("command", "Submit")],
    );
    assert!(submits.is_some_and(|n| n >= 12.0), "{submits:?}");

    let names: std::collections::BTreeSet<&str> = samples.keys().map(|(n, _)| n.as_str()).collect();
    for family in [
        "raftline_api_calls_total",
        "raftline_api_call_seconds_count",
        "raftline_log_fsync_seconds_count",
        "raftline_batch_commands_count",
        "raftline_job_run_seconds_count",
        "raftline_job_wait_seconds_count",
        "raftline_raft_term",
        "raftline_raft_last_log_index",
        "raftline_raft_snapshot_index",
        "raftline_replication_lag_entries",
        "raftline_log_bytes",
        "raftline_snapshot_bytes",
        "raftline_log_fsyncs",
        "raftline_jobs_held",
    ] {
        assert!(names.contains(family), "no {family} in {names:?}");
    }
    for peer in c.ids().into_iter().filter(|id| *id != leader) {
        let lag = get(
            &samples,
            "raftline_replication_lag_entries",
            &[("peer", &peer.to_string())],
        );
        assert!(lag.is_some(), "no lag for node {peer}");
    }
    let runs = get(
        &samples,
        "raftline_job_run_seconds_count",
        &[("queue", "metered")],
    );
    assert_eq!(runs, Some(12.0), "12 attempts ended");
    // API calls are counted where they arrive: over every node, the submits made above.
    let mut submit_ok = 0.0;
    for id in c.ids() {
        let node = parse(&http_get(&c.node(id).http, "/metrics").await);
        let rpc = [("rpc", "Submit"), ("code", "Ok")];
        submit_ok += get(&node, "raftline_api_calls_total", &rpc).unwrap_or(0.0);
    }
    assert!(submit_ok >= 12.0, "{submit_ok} submits counted");
}

/// Refusals are counted: a lease held back by a queue's rate limit (by queue and reason) and
/// API calls refused for a token over its calls-per-second limit (by token).
#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_refusals_are_counted() {
    let c = Cluster::start(Settings {
        auth_extra: "rate_per_sec = 50\nburst = 50\n".into(),
        ..Settings::default()
    })
    .await;
    let client = c.client_of(&[1]);
    client
        .set_queue_policy(raftline::proto::pb::SetQueuePolicyRequest {
            queue: "limited".into(),
            rate_count: 1,
            rate_per_ms: 3_600_000,
            ..Default::default()
        })
        .await
        .expect("policy");
    for _ in 0..3 {
        let req = raftline::proto::pb::SubmitRequest {
            queue: "limited".into(),
            kind: Some(raftline::proto::pb::submit_request::Kind::Payload(
                b"x".to_vec(),
            )),
            ..Default::default()
        };
        client.submit(req).await.expect("submit");
    }
    let lease = |n: u32, wait_ms: u64| raftline::proto::pb::LeaseRequest {
        worker_id: "metrics-test".into(),
        queues: vec!["limited".into()],
        max: n,
        wait_ms,
        ..Default::default()
    };
    // The wait covers this node applying the submits.
    let first = client.lease(lease(3, 10_000)).await.expect("lease");
    assert_eq!(first.jobs.len(), 1, "one token: one job of three");
    let second = client.lease(lease(1, 0)).await.expect("lease");
    assert!(second.jobs.is_empty(), "no token left for an hour");

    // Past the token's burst: at least one call is refused (the cluster's own admin token).
    let mut refused = 0;
    for _ in 0..200 {
        if let Err(raftline::error::Error::ResourceExhausted(_)) = client.queues(true).await {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "200 calls in a row past a burst of 50 were all served"
    );

    // Leases and calls are counted where they arrive: node 1.
    let samples = common::wait_for(
        "refusals on node 1's /metrics",
        Duration::from_secs(10),
        || async {
            let s = parse(&http_get(&c.node(1).http, "/metrics").await);
            let rate = get(
                &s,
                "raftline_lease_refusals_total",
                &[("queue", "limited"), ("reason", "rate")],
            );
            rate.is_some_and(|n| n >= 2.0).then_some(s)
        },
    )
    .await;
    let limited: f64 = samples
        .iter()
        .filter(|((name, _), _)| name == "raftline_api_rate_limited_total")
        .map(|(_, v)| *v)
        .sum();
    assert!(
        limited >= refused as f64,
        "{limited} counted, {refused} refused"
    );
}

/// At one client, openraft's notice of each new commit index rides on the next write's entry
/// instead of being a peer call of its own (`raftline_peer_appends_total{kind="ridden"}` on
/// the leader), and followers still apply every write, the last one too, with nothing after
/// it to carry its commit.
#[tokio::test(flavor = "multi_thread")]
async fn commit_notices_ride_on_the_next_entry() {
    const WRITES: usize = 200;
    let c = Cluster::start(Settings::default()).await;
    let leader = c.wait_leader(None).await;
    let client = c.client_of(&[leader]);
    let appends = |s: &Samples, kind: &str| {
        get(s, "raftline_peer_appends_total", &[("kind", kind)]).unwrap_or(0.0)
    };
    let before = parse(&http_get(&c.node(leader).http, "/metrics").await);
    for _ in 0..WRITES {
        let req = pb::SubmitRequest {
            queue: "ride".into(),
            kind: Some(pb::submit_request::Kind::Payload(vec![b'x'; 64])),
            ..Default::default()
        };
        client.submit(req).await.unwrap();
    }
    let after = parse(&http_get(&c.node(leader).http, "/metrics").await);
    let sent = |kind: &str| appends(&after, kind) - appends(&before, kind);
    assert!(
        sent("entries") >= WRITES as f64,
        "{} appends with entries for {WRITES} writes",
        sent("entries")
    );
    assert!(
        sent("ridden") >= 1.0,
        "no commit notice rode on an entry over {WRITES} writes at one client \
         (entries {}, empty {})",
        sent("entries"),
        sent("empty")
    );
    let index = c.status(leader).await.unwrap().last_applied;
    for id in c.ids() {
        c.wait_applied(id, index).await;
    }
}
