//! The rolling restart the README gives for upgrades, on real node processes under four
//! submitting clients: followers one at a time (SIGTERM, start again, wait for `/ready`), then
//! leadership handed to a restarted node and the old leader restarted. Every acknowledged job
//! is on every node afterwards, and the term grew by at most one per restart: no restart
//! cost more than one election. (The binary is the same build: two builds can't be had here;
//! the data-dir side of an upgrade is `tests/upgrade.rs`.)

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{shell_job, show, wait_for, Cluster, Settings};
use raftline::client::Client;
use raftline::proto::pb;

async fn ready(c: &Cluster, id: u64) {
    let http = c.node(id).http.clone();
    wait_for(
        &format!("node {id} /ready"),
        Duration::from_secs(30),
        || async {
            let body = raftline::tls::http_get(&http, "/ready", None).await.ok()?;
            body.contains("\"ready\":true").then_some(())
        },
    )
    .await;
}

async fn restart(c: &mut Cluster, id: u64) {
    let status = c.stop(id).await;
    assert!(status.success(), "node {id} stopped with {status}");
    c.spawn(id);
    ready(c, id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_restart_under_load_loses_nothing() {
    let mut c = Cluster::start(Settings::default()).await;
    for id in c.ids() {
        ready(&c, id).await;
    }
    let leader = c.wait_leader(None).await;
    let term_before = c.status(leader).await.expect("status").term;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.api.clone()).collect();
    let load: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop) = (acked.clone(), stop.clone());
            let client = Client::with_access(&addrs, &c.access).expect("client");
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let job = shell_job("held", &["true", &format!("{w}-{n}")]);
                    match client.submit(job).await {
                        Ok(id) => acked.lock().unwrap().push(id),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect();

    let followers: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
    for id in &followers {
        restart(&mut c, *id).await;
    }
    let to = followers[0].to_string();
    let out = c.cli(&["cluster", "transfer-leader", "--to", &to]);
    assert!(out.status.success(), "transfer-leader: {}", show(&out));
    restart(&mut c, leader).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }

    let now = c.wait_leader(None).await;
    let term_after = c.status(now).await.expect("status").term;
    assert!(
        term_after - term_before <= 3,
        "3 restarts took the term from {term_before} to {term_after}: more than one election each"
    );
    let ids = acked.lock().unwrap().clone();
    let index = c.status(now).await.expect("status").last_log_index;
    for id in c.ids() {
        c.wait_applied(id, index).await;
        let client = c.client_of(&[id]);
        let mut held = std::collections::BTreeSet::new();
        loop {
            let page = client
                .list_jobs(pb::ListJobsRequest {
                    after_id: held.last().copied().unwrap_or(0),
                    limit: 1000,
                    stale: true,
                    ..Default::default()
                })
                .await
                .expect("list");
            if page.is_empty() {
                break;
            }
            held.extend(page.iter().map(|j| j.id));
        }
        let missing: Vec<&u64> = ids.iter().filter(|i| !held.contains(i)).collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks acknowledged jobs {missing:?}"
        );
    }
    eprintln!(
        "rolling restart: {} acknowledged jobs on every node; term {term_before} -> {term_after}",
        ids.len()
    );
}
