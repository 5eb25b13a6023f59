//! The command line: one binary for nodes, the local launcher and the client commands.
//!
//! Exit codes: 0 success; 2 usage or invalid input (bad flag, INVALID_ARGUMENT, bad config);
//! 1 any other failure (cluster unavailable, not found, I/O).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::proto::{self, pb};

/// raftline: a clustered job executor with embedded Raft storage.
#[derive(Debug, Parser)]
#[command(name = "raftline", version, about)]
pub struct Cli {
    /// API addresses of one or more nodes, comma-separated (default: every api_addr in
    /// ./cluster.toml).
    #[arg(long, global = true, value_delimiter = ',')]
    pub addr: Vec<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run one node of the cluster.
    Node {
        /// Cluster config file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// This node's id (a `[[node]]` id in the config).
        #[arg(long)]
        id: u64,
    },
    /// Start every node of the config on this machine, as child processes; Ctrl-C stops them.
    Up {
        /// Cluster config file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
    /// Cluster-wide commands.
    Cluster {
        /// Subcommand.
        #[command(subcommand)]
        command: ClusterCmd,
    },
    /// Submit a shell job: `raftline submit --queue Q -- CMD ARGS...`.
    Submit {
        /// Queue name, [A-Za-z0-9_.-]{1,128}.
        #[arg(long)]
        queue: String,
        /// Priority 1..=10, 10 most urgent (default 5).
        #[arg(long)]
        priority: Option<u32>,
        /// Print `{"id": N}`.
        #[arg(long)]
        json: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        argv: Vec<String>,
    },
    /// Job commands.
    Job {
        /// Subcommand.
        #[command(subcommand)]
        command: JobCmd,
    },
}

/// `raftline cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every node's state, the leader and the term.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline job ...`
#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Show one job.
    Get {
        /// Job id.
        id: u64,
        /// Read this node's local state without a Raft round (may be behind).
        #[arg(long)]
        stale: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Node { config, id } => {
            let config = Config::load(&config).map_err(|e| Error::Config(e.0))?;
            config.node(id).map_err(|e| Error::Config(e.0))?;
            crate::node::run(config, id, shutdown_signal()).await
        }
        Cmd::Up { config } => crate::up::run(&config).await,
        Cmd::Cluster {
            command: ClusterCmd::Status { json },
        } => cluster_status(&cli.addr, json).await,
        Cmd::Submit {
            queue,
            priority,
            json,
            argv,
        } => {
            let client = client(&cli.addr)?;
            let req = pb::SubmitRequest {
                queue,
                priority: priority.unwrap_or(0),
                kind: Some(pb::submit_request::Kind::Shell(pb::ShellCommand { argv })),
            };
            if priority == Some(0) {
                return Err(Error::InvalidArgument {
                    field: "priority".into(),
                    message: "is 0, must be 1..=10".into(),
                });
            }
            let id = client.submit(req).await?;
            if json {
                println!("{}", serde_json::json!({ "id": id }));
            } else {
                println!("{id}");
            }
            Ok(())
        }
        Cmd::Job {
            command: JobCmd::Get { id, stale, json },
        } => {
            let job = client(&cli.addr)?.job(id, stale).await?;
            let v = proto::job_json(&job);
            if json {
                println!("{v}");
            } else {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            Ok(())
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The API addresses to use: `--addr`, else every api_addr of ./cluster.toml, with node ids
/// when known.
fn targets(addr: &[String]) -> Result<Vec<(Option<u64>, String)>> {
    if !addr.is_empty() {
        return Ok(addr.iter().map(|a| (None, a.clone())).collect());
    }
    let path = Path::new("cluster.toml");
    if !path.exists() {
        return Err(Error::Config(
            "no --addr given and no ./cluster.toml to read node addresses from".into(),
        ));
    }
    let config = Config::load(path).map_err(|e| Error::Config(e.0))?;
    Ok(config
        .nodes
        .iter()
        .map(|n| (Some(n.id), n.api_addr.to_string()))
        .collect())
}

fn client(addr: &[String]) -> Result<Client> {
    let addrs: Vec<String> = targets(addr)?.into_iter().map(|(_, a)| a).collect();
    Client::new(&addrs)
}

async fn cluster_status(addr: &[String], json: bool) -> Result<()> {
    let targets = targets(addr)?;
    let addrs: Vec<&str> = targets.iter().map(|(_, a)| a.as_str()).collect();
    let client = Client::new(&addrs)?;
    let calls = (0..client.len()).map(|i| {
        let client = &client;
        async move { tokio::time::timeout(Duration::from_secs(2), client.node_status(i)).await }
    });
    let replies = futures::future::join_all(calls).await;
    let mut nodes = Vec::new();
    let mut best: Option<&pb::NodeStatusResponse> = None;
    for ((id, api_addr), reply) in targets.iter().zip(&replies) {
        match reply {
            Ok(Ok(s)) => {
                if best.is_none_or(|b| s.term > b.term || (s.term == b.term && s.leader.is_some()))
                {
                    best = Some(s);
                }
                nodes.push(serde_json::json!({
                    "id": s.id,
                    "api_addr": api_addr,
                    "state": s.state,
                    "last_applied": s.last_applied,
                    "term": s.term,
                    "leader": s.leader,
                }));
            }
            _ => nodes.push(serde_json::json!({
                "id": id,
                "api_addr": api_addr,
                "state": "unreachable",
                "last_applied": null,
            })),
        }
    }
    let leader = best.and_then(|b| b.leader);
    let term = best.map_or(0, |b| b.term);
    if json {
        let v = serde_json::json!({ "leader": leader, "term": term, "nodes": nodes });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "leader: {}  term: {term}",
            leader.map_or("none".to_string(), |l| l.to_string())
        );
        for n in &nodes {
            println!(
                "  node {:<4} {:<22} {:<12} last_applied {}",
                n["id"].to_string(),
                n["api_addr"].as_str().unwrap_or(""),
                n["state"].as_str().unwrap_or(""),
                n["last_applied"]
            );
        }
    }
    if replies.iter().all(|r| !matches!(r, Ok(Ok(_)))) {
        return Err(Error::unavailable(format!(
            "no node answered at {}",
            addrs.join(", ")
        )));
    }
    Ok(())
}
