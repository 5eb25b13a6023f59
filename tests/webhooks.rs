//! Webhooks on a real 3-node cluster with a local receiver: events pending when the leader is
//! killed with `kill -9` are delivered by the next leader (at least once, a repeat carrying the
//! same delivery id and body), every signature verifies, a failed attempt is retried, and bad
//! input is refused naming the field with nothing written.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_for, Cluster, Settings};
use raftline::proto::pb;
use serde_json::Value;

const SECRET: &str = "whsec_test_0123456789";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    delivery: u64,
    attempt: u32,
    body: String,
    signed: bool,
    at: Instant,
}

/// A webhook receiver: records every POST; while `hold` is set it answers none (the
/// deliveries stay in flight on the leader); answers 500 to a first attempt of webhook.test.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    hold: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(handle))
            .with_state(me);
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn handle(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let sig = header("x-raftline-signature");
    let t: u64 = sig
        .strip_prefix("t=")
        .and_then(|s| s.split(',').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let signed = sig == raftline::node::webhooks::signature(SECRET, t, body.as_bytes());
    let got = Received {
        delivery: header("x-raftline-delivery").parse().unwrap_or(0),
        attempt: header("x-raftline-attempt").parse().unwrap_or(0),
        body,
        signed,
        at: Instant::now(),
    };
    let test_first = header("x-raftline-topic") == "webhook.test" && got.attempt == 1;
    r.got.lock().unwrap().push(got);
    while r.hold.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if test_first {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    } else {
        axum::http::StatusCode::NO_CONTENT
    }
}

/// Job ids named by the bodies received.
fn jobs_in(got: &[Received]) -> BTreeSet<u64> {
    got.iter()
        .filter_map(|g| serde_json::from_str::<Value>(&g.body).ok())
        .filter_map(|v| v["data"]["job_id"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_events_survive_a_leader_kill_signed_and_deduplicable() {
    let mut c = Cluster::start(Settings::default()).await;
    let receiver = Receiver::default();
    let url = receiver.start().await;

    // Bad input: refused naming the field, nothing created.
    let out = c.cli(&[
        "webhook", "create", "--url", "ftp://x/", "--topics", "job.dead",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", common::show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("url"));
    let out = c.cli(&["webhook", "create", "--url", &url, "--topics", "job.nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::show(&out));
    assert!(c.client().list_webhooks().await.unwrap().is_empty());

    let out = c.cli(&[
        "webhook",
        "create",
        "--url",
        &url,
        "--topics",
        "job.succeeded,job.dead,webhook.test",
        "--secret",
        SECRET,
        "--max-attempts",
        "5",
        "--json",
    ]);
    assert!(out.status.success(), "{}", common::show(&out));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hook = created["id"].as_u64().unwrap();
    assert_eq!(created["secret"], SECRET);

    // The receiver holds every POST: deliveries stay in flight on the leader.
    receiver.hold.store(true, Ordering::SeqCst);
    let client = c.client();
    let mut ids = BTreeSet::new();
    for i in 0..30 {
        let argv: &[&str] = if i % 3 == 0 {
            &["sh", "-c", "exit 3"]
        } else {
            &["true"]
        };
        let mut req = common::shell_job("hooks", argv);
        req.max_attempts = 1;
        ids.insert(client.submit(req).await.unwrap());
    }
    let all: Vec<u64> = ids.iter().copied().collect();
    common::wait_finished(&client, &all, Duration::from_secs(60)).await;
    wait_for("a delivery in flight", Duration::from_secs(20), || async {
        (!receiver.got().is_empty()).then_some(())
    })
    .await;
    let leader = c.wait_leader(None).await;
    let held = receiver.got().len();
    c.kill9(leader);
    receiver.hold.store(false, Ordering::SeqCst);
    c.wait_leader(Some(leader)).await;

    let client = c.client();
    wait_for(
        "every job's event delivered",
        Duration::from_secs(60),
        || async { (jobs_in(&receiver.got()) == ids).then_some(()) },
    )
    .await;
    wait_for("nothing pending", Duration::from_secs(30), || async {
        let w = client.list_webhooks().await.ok()?;
        (w[0].pending == 0 && w[0].delivered >= ids.len() as u64).then_some(())
    })
    .await;

    let got = receiver.got();
    assert!(got.iter().all(|g| g.signed), "a signature did not verify");
    let mut bodies: BTreeMap<u64, &str> = BTreeMap::new();
    let mut repeats = 0;
    for g in &got {
        if let Some(first) = bodies.insert(g.delivery, &g.body) {
            assert_eq!(
                first, g.body,
                "delivery {} came with two bodies",
                g.delivery
            );
            repeats += 1;
        }
    }
    // The POSTs held when the leader died were never answered, so the next leader sent them
    // again: the same ids.
    assert!(
        repeats >= 1,
        "{held} held, {} received, no repeat",
        got.len()
    );
    println!(
        "webhooks: {} jobs, {} POSTs ({held} held at the kill), {repeats} repeats by delivery id",
        ids.len(),
        got.len()
    );

    receiver_up(&c, &receiver, hook).await;
}

/// With the receiver up: a new event's latency, and a test delivery whose first attempt fails
/// and is retried; then the webhook is deleted.
async fn receiver_up(c: &Cluster, receiver: &Receiver, hook: u64) {
    let client = c.client();
    let before = receiver.got().len();
    let start = Instant::now();
    let id = client
        .submit(common::shell_job("hooks", &["true"]))
        .await
        .unwrap();
    wait_for("the new job's event", Duration::from_secs(30), || async {
        jobs_in(&receiver.got()[before..])
            .contains(&id)
            .then_some(())
    })
    .await;
    let at = receiver.got()[before..].iter().map(|g| g.at).max().unwrap();
    println!("webhooks: submit to delivery {:?}", at - start);

    let out = c.cli(&["webhook", "test", &hook.to_string()]);
    assert!(out.status.success(), "{}", common::show(&out));
    let deliveries = wait_for(
        "the test delivery retried",
        Duration::from_secs(30),
        || async {
            let d: Vec<pb::WebhookDelivery> = client.webhook_deliveries(hook, 5).await.ok()?;
            d.into_iter()
                .find(|d| d.topic == "webhook.test" && d.state == "delivered")
        },
    )
    .await;
    assert_eq!(deliveries.attempts, 2, "{deliveries:?}");
    assert_eq!(deliveries.last_status, 204);
    let out = c.cli(&["webhook", "deliveries", &hook.to_string()]);
    assert!(out.status.success(), "{}", common::show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("webhook.test"));

    let out = c.cli(&["webhook", "delete", &hook.to_string()]);
    assert!(out.status.success(), "{}", common::show(&out));
    assert!(client.list_webhooks().await.unwrap().is_empty());
}

/// Alerts are events: a killed follower raises `node.down` for webhooks and triggers (a job
/// started with the event as payload), its return raises `node.up`, and callers can't emit
/// those topics themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_down_and_up_are_alerts_for_webhooks_and_triggers() {
    let mut c = Cluster::start(Settings::default()).await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let out = c.cli(&[
        "webhook",
        "create",
        "--url",
        &url,
        "--topics",
        "node.down,node.up",
        "--secret",
        SECRET,
    ]);
    assert!(out.status.success(), "{}", common::show(&out));
    let out = c.cli(&[
        "trigger",
        "create",
        "--topic",
        "node.down",
        "--queue",
        "alerts",
        "--",
        "sh",
        "-c",
        "echo \"$RAFTLINE_EVENT_PAYLOAD\"",
    ]);
    assert!(out.status.success(), "{}", common::show(&out));
    let out = c.cli(&["event", "emit", "node.down", "--dedup-key", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::show(&out));

    let leader = c.wait_leader(None).await;
    let victim = *c.ids().iter().find(|&&i| i != leader).expect("a follower");
    c.kill9(victim);
    let topics = |r: &Receiver| -> Vec<(String, u64)> {
        r.got()
            .iter()
            .filter_map(|g| serde_json::from_str::<Value>(&g.body).ok())
            .map(|v| {
                let topic = v["topic"].as_str().unwrap_or("").to_string();
                (topic, v["data"]["node_id"].as_u64().unwrap_or(0))
            })
            .collect()
    };
    wait_for("node.down delivered", Duration::from_secs(30), || async {
        topics(&receiver)
            .contains(&("node.down".to_string(), victim))
            .then_some(())
    })
    .await;
    let client = c.client();
    let job = wait_for("the trigger's job ran", Duration::from_secs(30), || async {
        let req = pb::ListJobsRequest {
            queue: "alerts".into(),
            ..Default::default()
        };
        let jobs = client.list_jobs(req).await.ok()?;
        jobs.into_iter().find(|j| j.state == "succeeded")
    })
    .await;
    let output: String = job
        .attempts
        .iter()
        .map(|a| a.output_tail.as_str())
        .collect();
    assert!(
        output.contains(&format!("\"node_id\":{victim}")),
        "{output}"
    );

    c.spawn(victim);
    wait_for("node.up delivered", Duration::from_secs(30), || async {
        topics(&receiver)
            .contains(&("node.up".to_string(), victim))
            .then_some(())
    })
    .await;
    let downs = topics(&receiver)
        .iter()
        .filter(|t| t.0 == "node.down")
        .count();
    assert_eq!(downs, 1, "one outage, one node.down");
}
