//! Data dirs written by earlier builds open with this one: `tests/fixtures/format-8/` is a
//! node's data dir from the build before API tokens (see its README). A copy is started with
//! the current binary: every job and the schedule are there in the state they had, new writes
//! go through, and the node restarts on what it wrote itself.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use raftline::proto::pb;

async fn check_state(c: &Cluster) {
    let client = c.client();
    let jobs = wait_for("the old jobs", Duration::from_secs(20), || async {
        client
            .list_jobs(pb::ListJobsRequest {
                limit: 1_000,
                ..Default::default()
            })
            .await
            .ok()
    })
    .await;
    let state = |id: u64| {
        jobs.iter()
            .find(|j| j.id == id)
            .map(|j| j.state.as_str())
            .unwrap_or("missing")
    };
    for id in (1..=8).chain(11..=25) {
        assert_eq!(state(id), "succeeded", "job {id}");
    }
    assert_eq!(state(9), "dead");
    assert_eq!(state(10), "scheduled");
    let first = client.job(1, false).await.expect("job 1");
    assert_eq!(first.attempts[0].output_tail, "job 1\n");
    let schedule = client.schedule(0, "nightly").await.expect("schedule");
    assert_eq!(schedule.name, "nightly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_of_an_earlier_build_opens() {
    let mut c = Cluster::new(Settings {
        nodes: 1,
        snapshot_every_entries: 10,
        snapshot_logs_kept: 5,
        ..Settings::default()
    });
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-8/node-1");
    copy_dir(&fixture, &c.node_dir(1));
    c.spawn(1);
    c.wait_leader(None).await;
    check_state(&c).await;

    // New writes go through and run, and snapshots of the new format are taken.
    let client = c.client();
    for i in 0..12 {
        client
            .submit(shell_job("after", &["echo", &format!("new {i}")]))
            .await
            .expect("submit on the upgraded node");
    }
    assert!(c.stop(1).await.success());
    c.spawn(1);
    c.wait_leader(None).await;
    check_state(&c).await;
    let client = c.client();
    let jobs = client
        .list_jobs(pb::ListJobsRequest {
            queue: "after".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(jobs.len(), 12);
}
