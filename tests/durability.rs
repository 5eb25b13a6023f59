//! What "acknowledged" costs on disk: every node runs under strace, counting the real syncs
//! (`fsync`, `fdatasync`) it makes, and `sync_file_range`, which is not one.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, Settings};
use raftline::proto::pb;

/// Submits acknowledged one at a time, from one client.
const SUBMITS: usize = 200;

#[derive(Debug, Default)]
struct Syncs {
    real: usize,
    range_only: usize,
}

fn count(trace: &Path) -> Syncs {
    let text = std::fs::read_to_string(trace).expect("strace output");
    let mut syncs = Syncs::default();
    for line in text.lines() {
        if line.contains("fdatasync(") || line.contains("fsync(") {
            syncs.real += 1;
        } else if line.contains("sync_file_range(") {
            syncs.range_only += 1;
        }
    }
    syncs
}

/// Whether strace can trace a child here. In CI (`CI` set) it must: `.ci/run` installs it.
fn strace_works() -> bool {
    let ok = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "strace is missing or cannot trace here, and CI must run this test"
        );
        eprintln!("SKIP: strace is missing or ptrace is not allowed here");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_submit_is_preceded_by_a_real_sync_on_a_majority() {
    if !strace_works() {
        return;
    }
    let mut c = Cluster::new(Settings::default());
    let trace = |id: u64| c.dir.path().join(format!("node-{id}.strace"));
    let traces: Vec<_> = c.ids().into_iter().map(|id| (id, trace(id))).collect();
    for (id, path) in &traces {
        let wrapper: Vec<String> = [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,sync_file_range",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([path.display().to_string(), "--".into()])
        .collect();
        c.spawn_wrapped(*id, &wrapper);
    }
    let leader = c.wait_leader(None).await;
    let client = c.client_of(&[leader]);
    for i in 0..SUBMITS {
        client
            .submit(pb::SubmitRequest {
                queue: "sync".into(),
                kind: Some(pb::submit_request::Kind::Payload(vec![7; 64])),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("submit {i}: {e}"));
    }
    for id in c.ids() {
        assert!(c.stop_wrapped(id).await.success(), "node {id} stopped");
    }
    let syncs: Vec<(u64, Syncs)> = traces.iter().map(|(id, p)| (*id, count(p))).collect();
    eprintln!("leader {leader}; syncs per node after {SUBMITS} submits: {syncs:?}");
    let (_, on_leader) = syncs.iter().find(|(id, _)| *id == leader).unwrap();
    assert!(
        on_leader.real >= SUBMITS,
        "the leader made {} real syncs for {SUBMITS} acknowledged submits",
        on_leader.real
    );
    let best_follower = syncs
        .iter()
        .filter(|(id, _)| *id != leader)
        .map(|(_, s)| s.real)
        .max()
        .unwrap();
    assert!(
        best_follower >= SUBMITS,
        "no follower made a real sync per acknowledged submit (best: {best_follower})"
    );
}
