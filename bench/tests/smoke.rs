//! The bench harness runs every section end to end in a short run, so it cannot silently rot.
//! No figure is asserted: speed is read from full runs, not from tests.

use std::process::Command;

/// Ports of this test's local cluster: below the integration tests' range (20000..32000) and
/// away from the jepsen runs of CI (17100.., 17300..).
const BASE_PORT: &str = "19400";

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
