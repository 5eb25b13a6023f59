//! `raftline up`: every node of a config as child processes of this one, for local use.
//!
//! Each node's output goes to `data_dir/node-<id>.log`. Ctrl-C (or SIGTERM) stops them all
//! gracefully (SIGTERM, then SIGKILL after a bound). A node that exits is reported and the
//! others go on; restart it by hand with `raftline node --config ... --id N`. Children are
//! started with a parent-death signal, so they never outlive a killed launcher.
//!
//! With `--json`, stdout carries one JSON object per node as it starts (id, pid, addresses,
//! data dir, log file) and nothing else; the launcher's other lines go to stderr.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::machine::limits;

/// How long nodes get to stop after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_millis(limits::UP_STOP_MS_MAX);

/// Prints a launcher line: on stdout, or on stderr when stdout is JSON.
macro_rules! say {
    ($json:expr, $($arg:tt)*) => {
        if $json { eprintln!($($arg)*) } else { println!($($arg)*) }
    };
}

/// Runs `raftline up`.
pub async fn run(config_path: &Path, json: bool) -> Result<()> {
    let config = Config::load(config_path)?;
    let config_path = std::path::absolute(config_path).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::Config(format!(
            "data dir {}: cannot create: {e}",
            config.data_dir.display()
        ))
    })?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find this executable: {e}")))?;
    let (exit_tx, mut exit_rx) = mpsc::channel(config.nodes.len());
    let mut pids = Vec::new();
    say!(
        json,
        "raftline up: cluster {:?}, {} nodes",
        config.name,
        config.nodes.len()
    );
    for node in &config.nodes {
        let log_path = config.data_dir.join(format!("node-{}.log", node.id));
        let child = spawn(&exe, &config_path, node.id, &log_path)?;
        let pid = child.id().unwrap_or(0);
        pids.push((node.id, pid));
        announce(&config, node, pid, &log_path, json);
        tokio::spawn(watch(node.id, child, exit_tx.clone()));
    }
    drop(exit_tx);
    if config.auth_enabled {
        if let Some(first) = config.nodes.first() {
            say!(
                json,
                "  admin token: {} (owner-only; the CLI in this directory reads it by itself)",
                crate::access::bootstrap_path(&config, first.id).display()
            );
        }
    }
    say!(
        json,
        "Ctrl-C stops every node. In another terminal: raftline cluster status"
    );

    let mut running = pids.len();
    let shutdown = super::signal::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            exited = exit_rx.recv() => match exited {
                Some((id, status)) => {
                    running -= 1;
                    say!(json, "raftline up: node {id} exited ({status})");
                    if running == 0 {
                        say!(json, "raftline up: every node has exited");
                        return Ok(());
                    }
                }
                None => return Ok(()),
            }
        }
    }
    say!(json, "raftline up: stopping {running} nodes");
    for (_, pid) in &pids {
        // SAFETY: plain kill(2) on a pid this process started; an exited child is harmless.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGTERM);
        }
    }
    let all_exited = async {
        while running > 0 {
            match exit_rx.recv().await {
                Some((id, status)) => {
                    running -= 1;
                    say!(json, "raftline up: node {id} stopped ({status})");
                }
                None => break,
            }
        }
    };
    if tokio::time::timeout(STOP_TIMEOUT, all_exited)
        .await
        .is_err()
    {
        for (_, pid) in &pids {
            // SAFETY: as above.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        say!(
            json,
            "raftline up: killed nodes that did not stop within {STOP_TIMEOUT:?}"
        );
    }
    Ok(())
}

/// Prints one started node: a line, or a JSON object.
fn announce(config: &Config, node: &crate::config::NodeConfig, pid: u32, log: &Path, json: bool) {
    if json {
        let v = serde_json::json!({
            "id": node.id,
            "pid": (pid != 0).then_some(pid),
            "raft_addr": node.raft_addr.to_string(),
            "api_addr": node.api_addr.to_string(),
            "http_addr": node.http_addr.to_string(),
            "data_dir": config.node_dir(node.id).display().to_string(),
            "log_file": log.display().to_string(),
        });
        println!("{v}");
    } else {
        println!(
            "  node {}  pid {pid:<7}  api {}  raft {}  http {}  log {}",
            node.id,
            node.api_addr,
            node.raft_addr,
            node.http_addr,
            log.display()
        );
    }
}

/// Starts `raftline node --config CONFIG --id ID` with its output appended to `log_path`; it
/// gets SIGTERM if this launcher dies.
fn spawn(exe: &Path, config_path: &Path, id: u64, log_path: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| Error::Config(format!("{}: {e}", log_path.display())))?;
    let err_log = log
        .try_clone()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut command = Command::new(exe);
    command
        .arg("node")
        .arg("--config")
        .arg(config_path)
        .arg("--id")
        .arg(id.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log);
    // SAFETY: prctl is async-signal-safe and touches only the child's own attributes.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| Error::Internal(format!("starting node {id}: {e}")))
}

async fn watch(id: u64, mut child: Child, exits: mpsc::Sender<(u64, String)>) {
    let status = match child.wait().await {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    };
    let _ = exits.send((id, status)).await;
}
