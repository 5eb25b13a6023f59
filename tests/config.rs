//! Start-up refusals: malformed config, unknown id, port in use. Each is one clear line on
//! stderr, exit code 2, and no data dir is created.

mod common;

use std::process::Command;

use common::*;

fn node(c: &Cluster, id: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["node", "--config"])
        .arg(&c.config)
        .args(["--id", id])
        .output()
        .expect("run node")
}

fn assert_refused(out: &std::process::Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", show(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{:?} should mention {needle:?}",
            lines[0]
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Malformed configs name the key and line; nothing is written.
#[test]
fn malformed_config_is_refused_naming_the_key() {
    let c = Cluster::new(Settings::default());
    let good = std::fs::read_to_string(&c.config).unwrap();
    let cases = [
        (
            good.replace("heartbeat_ms = 50", "heartbeat_ms = 50\nbogus_key = 1"),
            vec!["bogus_key"],
        ),
        (
            good.replace("id = 2", "id = 1"),
            vec!["node[1].id", "used by another node"],
        ),
        (
            good.replacen("raft_addr = \"", "raft_addr = \"nope", 1),
            vec!["node[0].raft_addr"],
        ),
        (
            good.replace("heartbeat_ms = 50", "heartbeat_ms = \"fast\""),
            vec!["cluster.heartbeat_ms", "\"fast\"", "not a duration"],
        ),
        (
            good.replace("name = \"test\"", "name = 5"),
            vec!["line 2", "invalid type"],
        ),
        (
            good.replace("[cluster]", "[cluster"),
            vec!["cluster.toml", "line 1"],
        ),
        (
            good.replace("[jobs]\n", "[jobs]\nopen_files = 3\n"),
            vec!["jobs.open_files", "16..="],
        ),
        (
            good.replace("[jobs]\n", "[jobs]\nenv_pass = [\"1X\"]\n"),
            vec!["jobs.env_pass", "\"1X\""],
        ),
        (
            good.replace("[jobs]\n", "[jobs]\ncpu_seconds = 99999999999\n"),
            vec!["jobs.cpu_seconds"],
        ),
        (
            format!("{good}\n[[jobs.queue]]\nqueues = \"a b\"\n"),
            vec!["jobs.queue[0].queues"],
        ),
        (
            good.replacen("http_addr", "run_as = \"-x\"\nhttp_addr", 1),
            vec!["node[0].run_as"],
        ),
    ];
    for (text, needles) in cases {
        std::fs::write(&c.config, text).unwrap();
        assert_refused(&node(&c, "1"), &needles);
        assert!(
            !c.dir.path().join("data").exists(),
            "a refused start wrote a data dir"
        );
    }
}

/// An id that is not in the config is refused.
#[test]
fn unknown_id_is_refused() {
    let c = Cluster::new(Settings::default());
    assert_refused(&node(&c, "9"), &["--id 9", "no such node"]);
    assert!(!c.dir.path().join("data").exists());
    let out = node(&c, "x");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

/// A port already in use is refused before anything is written.
#[test]
fn port_in_use_is_refused() {
    let c = Cluster::new(Settings::default());
    let _taken = std::net::TcpListener::bind(&c.node(1).api).expect("bind api port");
    assert_refused(&node(&c, "1"), &["api_addr", &c.node(1).api]);
    assert!(!c.dir.path().join("data").exists());
}

/// A data dir written by another cluster is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_of_another_cluster_is_refused() {
    let mut c = Cluster::start(Settings {
        nodes: 1,
        ..Settings::default()
    })
    .await;
    assert!(c.stop(1).await.success());
    let text = std::fs::read_to_string(&c.config).unwrap();
    std::fs::write(
        &c.config,
        text.replace("name = \"test\"", "name = \"other\""),
    )
    .unwrap();
    assert_refused(&node(&c, "1"), &["belongs to cluster \"test\""]);
}

/// Every file the CLI and a node read is bounded: `/dev/zero` as a config, a workflow file or a
/// token file is one line and exit 2, not a process that grows without end.
#[test]
fn endless_files_are_refused() {
    let c = Cluster::new(Settings::default());
    let zero = "/dev/zero";
    let out = Command::new(BIN)
        .args(["node", "--config", zero, "--id", "1"])
        .output()
        .expect("run node");
    assert_refused(&out, &["/dev/zero", "bytes"]);
    let out = run_cli(c.dir.path(), &["dag", "validate", zero]);
    assert_refused(&out, &["/dev/zero", "16777216"]);
    let out = run_cli(c.dir.path(), &["--token-file", zero, "jobs", "list"]);
    assert_refused(&out, &["/dev/zero"]);
}

/// `RAFTLINE_<SECTION>_<KEY>` overrides a key of the config, and a bad value is refused
/// naming the key and the variable.
#[test]
fn environment_overrides_config_keys() {
    let c = Cluster::new(Settings::default());
    let out = Command::new(BIN)
        .args(["node", "--config"])
        .arg(&c.config)
        .args(["--id", "1"])
        .env("RAFTLINE_CLUSTER_HEARTBEAT_MS", "20d")
        .output()
        .expect("run node");
    assert_refused(&out, &["cluster.heartbeat_ms", "is 1728000000"]);
    let out = Command::new(BIN)
        .args(["node", "--config"])
        .arg(&c.config)
        .args(["--id", "1"])
        .env("RAFTLINE_JOBS_OPEN_FILES", "[1]")
        .output()
        .expect("run node");
    assert_refused(&out, &["RAFTLINE_JOBS_OPEN_FILES"]);
}

/// A data dir written by a newer build (a higher format in `identity.json`) is refused with
/// one clear line, before anything else in it is read; a peer call of a newer protocol is
/// refused with FAILED_PRECONDITION naming both versions, and one without a version (an
/// earlier build) is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_formats_and_protocols_are_refused() {
    let mut c = Cluster::start(Settings {
        nodes: 1,
        ..Settings::default()
    })
    .await;
    let raft = format!("http://{}", c.node(1).raft);
    let mut peer = raftline::proto::pb::raft_peer_client::RaftPeerClient::connect(raft)
        .await
        .expect("peer port");
    let hello = || raftline::proto::pb::HelloRequest {
        cluster: "test".into(),
        from_id: 9,
    };
    let mut newer = tonic::Request::new(hello());
    newer
        .metadata_mut()
        .insert(raftline::raft::PEER_PROTOCOL_HEADER, 99u32.into());
    let status = peer
        .hello(newer)
        .await
        .expect_err("a newer protocol answered");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("protocol 99"), "{status:?}");
    peer.hello(hello())
        .await
        .expect("an earlier build's hello is served");

    assert!(c.stop(1).await.success());
    let identity = c.node_dir(1).join("identity.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&identity).unwrap()).unwrap();
    assert_eq!(v["format"], 2, "{v}");
    v["format"] = 99.into();
    std::fs::write(&identity, serde_json::to_vec(&v).unwrap()).unwrap();
    assert_refused(&node(&c, "1"), &["newer raftline", "format 99"]);
}
