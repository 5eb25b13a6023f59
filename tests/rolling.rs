//! The rolling restart the README gives for upgrades, on real node processes under four
//! submitting clients: followers one at a time (SIGTERM, start again, wait for `/ready`), then
//! leadership handed to a restarted node and the old leader restarted. Every acknowledged job
//! is on every node afterwards, and the term grew by at most one per restart: no restart
//! cost more than one election. (The binary is the same build: two builds can't be had here;
//! the data-dir side of an upgrade is `tests/upgrade.rs`.)

mod common;

use std::time::Duration;

use common::{show, wait_for, Cluster, Load, Settings};

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

    let load = Load::start(&c, 4, "held");

    let followers: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
    for id in &followers {
        restart(&mut c, *id).await;
    }
    let to = followers[0].to_string();
    let out = c.cli(&["cluster", "transfer-leader", "--to", &to]);
    assert!(out.status.success(), "transfer-leader: {}", show(&out));
    restart(&mut c, leader).await;
    let ids = load.stop().await;

    let now = c.wait_leader(None).await;
    let term_after = c.status(now).await.expect("status").term;
    assert!(
        term_after - term_before <= 3,
        "3 restarts took the term from {term_before} to {term_after}: more than one election each"
    );
    let index = c.status(now).await.expect("status").last_log_index;
    for id in c.ids() {
        c.wait_applied(id, index).await;
        let held = c.job_ids_on(id, "").await;
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
