//! `raftline node`: loads the config, checks this node is in it (or, with `--join`, describes
//! it from the command line), and runs the node until SIGTERM or SIGINT (see [`crate::node`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::signal::shutdown_signal;
use crate::config::{Config, NodeConfig};
use crate::error::{Error, Result};

/// `raftline node ...`
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Cluster config file (the seed list; the cluster's settings, auth and TLS).
    #[arg(long, default_value = "cluster.toml")]
    pub config: PathBuf,
    /// This node's id (a `[[node]]` id in the config, or a new id with `--join`).
    #[arg(long)]
    pub id: u64,
    /// Join a running cluster: the API address (host:port) of one of its nodes. The node
    /// starts with an empty data dir and waits, as a non-member, until `raftline cluster add`
    /// brings it in. Restart it with the same command line.
    #[arg(long)]
    pub join: Option<String>,
    /// This node's peer address, when it is not in the config.
    #[arg(long, requires = "join")]
    pub raft_addr: Option<SocketAddr>,
    /// This node's API address, when it is not in the config.
    #[arg(long, requires = "join")]
    pub api_addr: Option<SocketAddr>,
    /// This node's HTTP address, when it is not in the config.
    #[arg(long, requires = "join")]
    pub http_addr: Option<SocketAddr>,
    /// This node's data directory (default: `node-ID` in the config's data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print JSON: one object announcing the node (id, pid, addresses, data dir) on start.
    #[arg(long)]
    pub json: bool,
}

/// Adds the node the flags describe to `config`, refusing one that contradicts it.
fn describe(config: &mut Config, args: &NodeArgs) -> Result<()> {
    if let Some(dir) = &args.data_dir {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        config.node_dirs.insert(args.id, dir);
    }
    let (raft, api, http) = match (args.raft_addr, args.api_addr, args.http_addr) {
        (None, None, None) => {
            config.node(args.id)?;
            return Ok(());
        }
        (Some(r), Some(a), Some(h)) => (r, a, h),
        _ => {
            return Err(Error::Config(
                "--raft-addr, --api-addr and --http-addr go together: give all three".into(),
            ))
        }
    };
    if let Ok(known) = config.node(args.id) {
        if (known.raft_addr, known.api_addr, known.http_addr) != (raft, api, http) {
            return Err(Error::Config(format!(
                "--id {}: the config names this node with other addresses (raft {}, api {}, \
                 http {})",
                args.id, known.raft_addr, known.api_addr, known.http_addr
            )));
        }
        return Ok(());
    }
    for n in &config.nodes {
        for addr in [raft, api, http] {
            if [n.raft_addr, n.api_addr, n.http_addr].contains(&addr) {
                return Err(Error::Config(format!(
                    "{addr} is node {}'s address in the config",
                    n.id
                )));
            }
        }
    }
    if raft == api || raft == http || api == http {
        return Err(Error::Config(
            "--raft-addr, --api-addr and --http-addr must differ".into(),
        ));
    }
    if args.id == 0 {
        return Err(Error::Config("--id must be 1 or more".into()));
    }
    config.nodes.push(NodeConfig {
        id: args.id,
        raft_addr: raft,
        raft_listen_addr: raft,
        api_addr: api,
        http_addr: http,
        queues: Vec::new(),
        capabilities: Vec::new(),
        run_as: None,
    });
    config.nodes.sort_by_key(|n| n.id);
    Ok(())
}

/// Runs `raftline node`.
pub async fn run(args: NodeArgs) -> Result<()> {
    let mut config = Config::load(&args.config)?;
    describe(&mut config, &args)?;
    let join = match args.join {
        Some(addr) => {
            let mut access = super::connect::access()?;
            if let Some(tls) = &config.tls {
                access.ca_file = Some(tls.ca_file.clone());
            }
            // A bootstrap token shared by every node (`[auth] bootstrap_token_file`) is
            // known to the cluster already; a node's own new one is not.
            if access.token.is_none() {
                if let Some(path) = &config.bootstrap_token_file {
                    access.token = crate::access::read_token_file(path).ok();
                }
            }
            Some(crate::node::Join { addr, access })
        }
        None => None,
    };
    if args.json {
        announce(&config, args.id)?;
    }
    crate::node::run(config, args.id, join, shutdown_signal()).await
}

/// Prints the node's start announcement as one JSON object; its log goes to stderr, so there
/// is no log file to name (`raftline up` names the one it redirects to).
fn announce(config: &Config, id: u64) -> Result<()> {
    let node = config.node(id)?;
    println!(
        "{}",
        serde_json::json!({
            "id": id,
            "pid": std::process::id(),
            "raft_addr": node.raft_addr.to_string(),
            "api_addr": node.api_addr.to_string(),
            "http_addr": node.http_addr.to_string(),
            "data_dir": config.node_dir(id).display().to_string(),
            "log_file": null,
        })
    );
    Ok(())
}
