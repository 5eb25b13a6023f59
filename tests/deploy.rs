//! The files of `deploy/`: the systemd unit passes `systemd-analyze verify` without a warning
//! (where systemd-analyze is installed; said on stderr where not), the compose cluster's config
//! is one a node accepts, and the Dockerfile builds with the toolchain rust-toolchain.toml pins.
//! `docker build` itself is not run here (no Docker daemon on these machines).

mod common;

use std::path::Path;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn systemd_unit_verifies_cleanly() {
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: the unit file is not verified here");
        return;
    }
    let unit = std::fs::read_to_string(repo("deploy/raftline.service")).expect("unit file");
    let dir = tempfile::tempdir().expect("temp dir");
    // The unit names the installed binary; verify checks that it exists.
    let path = dir.path().join("raftline.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/raftline", common::BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze warns:\n{stderr}");
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.contains(hardening), "the unit lost {hardening}");
    }
}

#[test]
fn compose_cluster_config_is_accepted() {
    let config = raftline::config::Config::load(&repo("deploy/cluster.toml"))
        .unwrap_or_else(|e| panic!("deploy/cluster.toml: {e}"));
    assert_eq!(config.nodes.len(), 3);
    assert!(config.tls.is_some() && config.auth_enabled);
    let compose = std::fs::read_to_string(repo("deploy/compose.yaml")).expect("compose file");
    for node in &config.nodes {
        let ip = node.raft_addr.ip().to_string();
        assert!(
            compose.contains(&ip),
            "compose.yaml gives no container {ip}"
        );
    }
}

#[test]
fn dockerfile_uses_the_pinned_toolchain() {
    let pinned = std::fs::read_to_string(repo("rust-toolchain.toml")).expect("toolchain file");
    let channel = pinned
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("channel");
    let minor = channel
        .rsplit_once('.')
        .map_or(channel.as_str(), |(m, _)| m);
    let dockerfile = std::fs::read_to_string(repo("deploy/Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains(&format!("FROM rust:{minor}-")),
        "deploy/Dockerfile does not build with rust {minor}"
    );
    assert!(
        dockerfile.contains("USER raftline"),
        "the image must not run as root"
    );
}
