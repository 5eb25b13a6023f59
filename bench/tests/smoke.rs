//! The bench harness runs every section end to end in a short run, so it cannot silently rot.
//! No figure is asserted: speed is read from full runs, not from tests.

use std::process::Command;

/// Ports of this test's local cluster: below the integration tests' range (20000..32000) and
/// away from the jepsen runs of CI (17100.., 17300..).
const BASE_PORT: &str = "19400";
/// The peers test's cluster; etcd and NATS take +10.. and +20.. of it.
const PEERS_BASE_PORT: &str = "19500";
/// The security test's cluster; the plain one takes +30.. of it.
const SECURITY_BASE_PORT: &str = "19600";
/// The import section's cluster (its redis-server at +40).
const IMPORT_BASE_PORT: &str = "19700";

#[test]
fn quick_run_prints_every_section() {
    let out = Command::new(env!("CARGO_BIN_EXE_raftline-bench"))
        .args(["all", "--quick", "--secs", "1", "--base-port", BASE_PORT])
        .output()
        .expect("run raftline-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for section in [
        "floor ",
        "W1 submit  clients   1",
        "W1 submit  clients  64",
        "W2 e2e     clients  64",
        "W3 failover",
        "scale      ready      5000",
        "scale      submits/s",
        "DAG        step done",
        "DAG        86-step release plan",
        "REST vs gRPC submit  round 1  clients 16",
        "rest: rest_vs_grpc=",
    ] {
        assert!(
            stdout.contains(section),
            "missing {section:?} in:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    assert!(
        stdout.contains("acked writes missing 0"),
        "a failover lost acknowledged writes:\n{stdout}"
    );
}

/// The peers section runs end to end in a short run and ends with its ratios line; a peer
/// that is not installed is skipped with `n/a`, so this passes on machines without them.
#[test]
fn peers_quick_run_ends_with_the_ratios_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_raftline-bench"))
        .args(["peers", "--quick", "--secs", "1", "--rounds", "1"])
        .args(["--base-port", PEERS_BASE_PORT])
        .output()
        .expect("run raftline-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    let names: Vec<&str> = last
        .strip_prefix("peers: ")
        .unwrap_or_default()
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(
        names,
        [
            "w1_c1_vs_etcd",
            "w1_c1_p50_vs_etcd",
            "w1_c64_vs_etcd",
            "w2_c1_vs_nats",
            "w2_c16_vs_nats",
            "w2_c64_vs_nats"
        ],
        "last line {last:?} of:\n{stdout}\nstderr:\n{stderr}"
    );
    for section in ["W1 submit  clients  64", "W2 e2e     clients  64"] {
        assert!(
            stdout.contains(section),
            "missing {section:?} in:\n{stdout}"
        );
    }
}

/// The security section runs both clusters in a short run and ends with a ratio for each
/// shape.
#[test]
fn security_quick_run_prints_a_ratio_per_shape() {
    let out = Command::new(env!("CARGO_BIN_EXE_raftline-bench"))
        .args(["security", "--quick", "--secs", "1", "--rounds", "1"])
        .args(["--base-port", SECURITY_BASE_PORT])
        .output()
        .expect("run raftline-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for shape in ["W1 1 client", "W1 64 clients", "W2 64"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("security") && l.contains(shape) && l.contains("median"))
            .unwrap_or_else(|| panic!("no ratio for {shape:?} in:\n{stdout}\nstderr:\n{stderr}"));
        let median: f64 = line
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .parse()
            .unwrap_or_else(|_| panic!("no median in {line}"));
        assert!(median > 0.0, "nothing measured on one side: {line}");
    }
}

/// The import section imports a list from a real redis-server through the real CLI twice and
/// prints both runs with the importer's peak RSS (skipped, with its reason, only off CI where
/// no redis-server is installed).
#[test]
fn import_quick_run_prints_both_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_raftline-bench"))
        .args(["import", "--quick", "--base-port", IMPORT_BASE_PORT])
        .output()
        .expect("run raftline-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    if stdout.contains("import     skipped") && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED: {stdout}");
        return;
    }
    for line in [
        "import     first run: 10000 elements",
        "import     re-run from the cursor: 10000 elements",
        "import     re-run --from-start: 10000 elements",
        "\"already_present\":10000",
        "importer peak RSS",
    ] {
        assert!(
            stdout.contains(line),
            "missing {line:?} in:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}
