//! Runtime membership on real node processes, under a steady stream of submits: grow 3 → 5,
//! transfer leadership, shrink 5 → 3, and replace a node whose data dir was deleted (remove
//! it, start it again empty with `--join`, add it back). After each step every acknowledged
//! job is read back from every running node. Also: unsafe changes are refused with a reason
//! and change nothing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{shell_job, show, wait_for, Cluster, Settings};
use raftline::client::Client;
use tokio::sync::watch;

/// Concurrent submitters.
const WRITERS: usize = 4;

/// Submits jobs one after another until told to stop, through whichever of the addresses in
/// `addrs` answers; records the id of every acknowledged one.
async fn writer(
    access: raftline::client::Access,
    mut addrs: watch::Receiver<Vec<String>>,
    acked: Arc<Mutex<Vec<u64>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut n = 0u64;
    let mut client = Client::with_access(&addrs.borrow_and_update().clone(), &access).unwrap();
    while !*stop.borrow() {
        if addrs.has_changed().unwrap_or(false) {
            client = Client::with_access(&addrs.borrow_and_update().clone(), &access).unwrap();
        }
        n += 1;
        let submit = client.submit(shell_job("m", &["true", &n.to_string()]));
        tokio::select! {
            r = submit => match r {
                Ok(id) => acked.lock().unwrap().push(id),
                Err(e) => {
                    eprintln!("writer: submit {n}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => {}
        }
    }
}

/// Waits for every running node to apply what the leader has, then reads every acknowledged
/// job from each (writes go on meanwhile, so states are compared by content, not digest).
async fn every_acked_job_everywhere(c: &Cluster, acked: &Mutex<Vec<u64>>, step: &str) {
    let ids = acked.lock().unwrap().clone();
    assert!(!ids.is_empty(), "{step}: no write was acknowledged");
    let leader = c.wait_leader(None).await;
    let index = c
        .status(leader)
        .await
        .expect("leader status")
        .last_log_index;
    for node in c.running() {
        c.wait_applied(node, index).await;
    }
    for node in c.running() {
        let held = c.job_ids_on(node, "m").await;
        let missing: Vec<&u64> = ids.iter().filter(|id| !held.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{step}: acknowledged jobs {missing:?} missing on node {node}"
        );
    }
    eprintln!(
        "{step}: {} acknowledged jobs present on nodes {:?}",
        ids.len(),
        c.running()
    );
}

/// The membership as node `via` reports it: (id, voter) pairs.
async fn members(c: &Cluster, via: u64) -> Vec<(u64, bool)> {
    let s = c.status(via).await.expect("status");
    s.members.iter().map(|m| (m.id, m.voter)).collect()
}

/// Waits until node `via` reports `want` as the membership.
async fn wait_members(c: &Cluster, via: u64, want: &[(u64, bool)]) {
    wait_for(
        &format!("node {via} to see members {want:?}"),
        Duration::from_secs(20),
        || async { (members(c, via).await == want).then_some(()) },
    )
    .await;
}

/// `raftline cluster add` of node `id` at its addresses; asserts it succeeded.
fn cli_add(c: &Cluster, id: u64) {
    let n = c.node(id).clone();
    let out = c.cli(&[
        "cluster",
        "add",
        "--id",
        &id.to_string(),
        "--raft-addr",
        &n.raft,
        "--api-addr",
        &n.api,
        "--http-addr",
        &n.http,
    ]);
    assert!(out.status.success(), "cluster add {id}: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("node {id} is a voter")),
        "cluster add {id} did not report the promotion: {}",
        show(&out)
    );
}

fn cli_ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.cli(args);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli_refused(c: &Cluster, args: &[&str], reason: &str) {
    let out = c.cli(args);
    let text = show(&out);
    assert!(!out.status.success(), "{args:?} was accepted: {text}");
    assert!(
        text.contains(reason),
        "{args:?}: expected {reason:?} in {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_grow_transfer_shrink_replace_under_load() {
    let mut c = Cluster::start(Settings {
        node_extra: "queues = [\"m\"]".into(),
        ..Settings::default()
    })
    .await;
    let first = c.node(1).api.clone();
    let all = |c: &Cluster| c.nodes.iter().map(|n| n.api.clone()).collect::<Vec<_>>();
    let (addrs_tx, addrs) = watch::channel(all(&c));
    let (stop_tx, stop) = watch::channel(false);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            tokio::spawn(writer(c.access.clone(), addrs, acked.clone(), stop))
        })
        .collect();

    // Grow 3 -> 5: each new node starts empty, waits as a non-member, then is added.
    for id in [4, 5] {
        c.spawn_joining(id, &first);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.status(id).await.map(|s| s.state) != Some("joining".into()) {
            assert!(
                std::time::Instant::now() < deadline,
                "node {id} does not wait as a joining node; its log:\n{}",
                c.log(id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cli_add(&c, id);
        addrs_tx.send_replace(all(&c));
    }
    let five: Vec<(u64, bool)> = (1..=5).map(|id| (id, true)).collect();
    wait_members(&c, 5, &five).await;
    every_acked_job_everywhere(&c, &acked, "grown to 5").await;

    // Unsafe or impossible changes are refused with a reason and change nothing.
    let before = members(&c, 1).await;
    let n1 = c.node(1).clone();
    cli_refused(
        &c,
        &[
            "cluster",
            "add",
            "--id",
            "9",
            "--raft-addr",
            &n1.raft,
            "--api-addr",
            "127.0.0.1:1",
        ],
        "already used by node 1",
    );
    cli_refused(&c, &["cluster", "remove", "--id", "9"], "not a member");
    cli_refused(
        &c,
        &[
            "cluster",
            "add",
            "--id",
            "0",
            "--raft-addr",
            "127.0.0.1:2",
            "--api-addr",
            "127.0.0.1:3",
        ],
        "node_id",
    );
    assert_eq!(members(&c, 1).await, before);

    // Leadership moves to a node that joined at runtime.
    cli_ok(&c, &["cluster", "transfer-leader", "--to", "4"]);
    assert_eq!(c.wait_leader(None).await, 4);
    every_acked_job_everywhere(&c, &acked, "leader moved to 4").await;

    // Shrink 5 -> 3: remove two of the seed nodes, one at a time, and stop them.
    for id in [1, 2] {
        cli_ok(&c, &["cluster", "remove", "--id", &id.to_string()]);
        c.stop(id).await;
    }
    addrs_tx.send_replace(
        c.running()
            .iter()
            .map(|id| c.node(*id).api.clone())
            .collect(),
    );
    let three: Vec<(u64, bool)> = [3, 4, 5].map(|id| (id, true)).to_vec();
    wait_members(&c, 4, &three).await;
    cli_ok(&c, &["cluster", "status"]); // 1 and 2 are gone, but 3 of 3 voters answer
    every_acked_job_everywhere(&c, &acked, "shrunk to 3").await;

    // Replace node 3 whose disk died: kill it, delete its data dir, remove it, and bring it
    // back empty under the same id and addresses.
    c.kill9(3);
    std::fs::remove_dir_all(c.node_dir(3)).expect("delete data dir");
    let joining_at = c.node(4).api.clone();
    cli_ok(&c, &["cluster", "remove", "--id", "3"]);
    wait_members(&c, 4, &[(4, true), (5, true)]).await;
    c.spawn_joining(3, &joining_at);
    cli_add(&c, 3);
    wait_members(&c, 4, &three).await;

    let _ = stop_tx.send(true);
    for w in load {
        w.await.expect("writer");
    }
    every_acked_job_everywhere(&c, &acked, "node 3 replaced").await;
    let status = cli_ok(&c, &["cluster", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).expect("status json");
    let listed: Vec<u64> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(listed, vec![3, 4, 5]);
    let audit = cli_ok(&c, &["audit", "list", "--limit", "1000"]);
    for change in ["Remove { id: 3 }", "Add { id: 3"] {
        assert!(
            audit.contains("ChangeMembership") && audit.contains(change),
            "the audit lacks {change}: {audit}"
        );
    }
}
