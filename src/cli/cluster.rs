//! `raftline cluster ...`: `status` asks every node for its own view (state, term, leader),
//! directly rather than through failover, so an unreachable node shows as such; the
//! membership changes are in [`super::members`].

use std::time::Duration;

use clap::Subcommand;

use super::connect::targets;
use super::table::{self, Table};
use crate::error::{Error, Result};
use crate::machine::limits::CLI_NODE_STATUS_MS_MAX;
use crate::proto::pb;

/// `raftline cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every node's state, the leader and the term.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a node (started with `raftline node --join`): it joins as a learner, catches up,
    /// and becomes a voter; shows progress and returns when done.
    Add(super::members::AddArgs),
    /// Remove a node (voter or learner); it may be stopped afterwards.
    Remove {
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// Print JSON: the change and the membership it left.
        #[arg(long)]
        json: bool,
    },
    /// Make a caught-up learner a voter.
    Promote {
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// Print JSON: the change and the membership it left.
        #[arg(long)]
        json: bool,
    },
    /// Make a voter a learner.
    Demote {
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// Print JSON: the change and the membership it left.
        #[arg(long)]
        json: bool,
    },
    /// Make another voter the leader (writes pause for at most a moment).
    TransferLeader {
        /// The new leader's id.
        #[arg(long)]
        to: u64,
        /// Print JSON: the change and the membership it left.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `raftline cluster ...`.
pub async fn run(addr: &[String], command: ClusterCmd) -> Result<()> {
    use super::members;
    match command {
        ClusterCmd::Status { json } => cluster_status(addr, json).await,
        ClusterCmd::Add(args) => members::add(addr, args).await,
        ClusterCmd::Remove { id, json } => members::change(addr, "remove", id, json).await,
        ClusterCmd::Promote { id, json } => members::change(addr, "promote", id, json).await,
        ClusterCmd::Demote { id, json } => members::change(addr, "demote", id, json).await,
        ClusterCmd::TransferLeader { to, json } => {
            members::change(addr, "transfer_leader", to, json).await
        }
    }
}

type Reply = std::result::Result<Result<pb::NodeStatusResponse>, tokio::time::error::Elapsed>;

/// Asks each of `addrs` for its own status, at once, each within a bound.
async fn ask(addrs: &[String]) -> Result<Vec<Reply>> {
    let client = super::connect::client_of(addrs)?;
    let timeout = Duration::from_millis(CLI_NODE_STATUS_MS_MAX);
    let calls = (0..client.len()).map(|i| {
        let client = &client;
        async move { tokio::time::timeout(timeout, client.node_status(i)).await }
    });
    Ok(futures::future::join_all(calls).await)
}

/// The reply with the newest view: the highest term, one that knows a leader first.
fn newest(replies: &[Reply]) -> Option<&pb::NodeStatusResponse> {
    let mut best: Option<&pb::NodeStatusResponse> = None;
    for s in replies
        .iter()
        .filter_map(|r| r.as_ref().ok()?.as_ref().ok())
    {
        if best.is_none_or(|b| s.term > b.term || (s.term == b.term && s.leader.is_some())) {
            best = Some(s);
        }
    }
    best
}

/// Runs `raftline cluster status`: asks the given nodes (or the config's), then every member
/// of the newest membership they report that was not among them (nodes added at runtime).
pub async fn cluster_status(addr: &[String], json: bool) -> Result<()> {
    let mut targets = targets(addr)?;
    let mut addrs: Vec<String> = targets.iter().map(|(_, a)| a.clone()).collect();
    let mut replies = ask(&addrs).await?;
    let extra: Vec<(Option<u64>, String)> = newest(&replies)
        .map(|b| b.members.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|m| !addrs.contains(&m.api_addr))
        .map(|m| (Some(m.id), m.api_addr.clone()))
        .collect();
    if !extra.is_empty() {
        let more: Vec<String> = extra.iter().map(|(_, a)| a.clone()).collect();
        replies.extend(ask(&more).await?);
        addrs.extend(more);
        targets.extend(extra);
    }
    let best = newest(&replies);
    let mut nodes = Vec::new();
    for ((id, api_addr), reply) in targets.iter().zip(&replies) {
        match reply {
            Ok(Ok(s)) => {
                nodes.push(serde_json::json!({
                    "id": s.id,
                    "api_addr": api_addr,
                    "state": s.state,
                    "last_applied": s.last_applied,
                    "term": s.term,
                    "leader": s.leader,
                }));
            }
            Ok(Err(e @ (Error::Unauthenticated(_) | Error::PermissionDenied(_)))) => {
                nodes.push(serde_json::json!({
                    "id": id,
                    "api_addr": api_addr,
                    "state": "refused",
                    "error": e.to_string(),
                    "last_applied": null,
                }))
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
    // The membership as the most recent view has it, each member with its own state.
    let members: Vec<serde_json::Value> = best
        .map(|b| b.members.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let state = nodes
                .iter()
                .find(|n| n["id"] == m.id)
                .and_then(|n| n["state"].as_str())
                .unwrap_or("unknown");
            serde_json::json!({
                "id": m.id, "raft_addr": m.raft_addr, "api_addr": m.api_addr,
                "state": state, "voter": m.voter,
            })
        })
        .collect();
    if json {
        let v = serde_json::json!({
            "leader": leader, "term": term, "nodes": nodes, "members": members,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_status(leader, term, &nodes, &members);
    }
    if replies.iter().all(|r| !matches!(r, Ok(Ok(_)))) {
        return Err(Error::unavailable(format!(
            "no node answered at {}",
            addrs.join(", ")
        )));
    }
    quorum(best, &replies)
}

/// Refuses (exit 1) a cluster with no leader, or whose answering voters are no majority.
/// `cluster status` for people: the leader and term, then a table of the nodes asked (with
/// their role in the membership).
fn print_status(
    leader: Option<u64>,
    term: u64,
    nodes: &[serde_json::Value],
    members: &[serde_json::Value],
) {
    println!(
        "leader: {}  term: {term}",
        leader.map_or("none".to_string(), |l| l.to_string())
    );
    let mut t = Table::new(&["NODE", "API", "STATE", "ROLE", "TERM", "LAST APPLIED"]);
    for n in nodes {
        let role = members
            .iter()
            .find(|m| m["id"] == n["id"])
            .map_or("-", |m| {
                if m["voter"] == true {
                    "voter"
                } else {
                    "learner"
                }
            });
        let state = t.state(n["state"].as_str().unwrap_or(""));
        let shown = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "-".to_string(),
            v => v.to_string(),
        };
        t.row(vec![
            table::num(shown(&n["id"])),
            table::text(n["api_addr"].as_str().unwrap_or("")),
            state,
            table::text(role),
            table::num(shown(&n["term"])),
            table::num(shown(&n["last_applied"])),
        ]);
    }
    t.print();
}

fn quorum(best: Option<&pb::NodeStatusResponse>, replies: &[Reply]) -> Result<()> {
    let Some(best) = best.filter(|b| b.leader.is_some()) else {
        return Err(Error::unavailable(
            "no leader: writes and linearizable reads fail",
        ));
    };
    let voters: Vec<u64> = best
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    let answering = replies
        .iter()
        .filter_map(|r| r.as_ref().ok()?.as_ref().ok())
        .filter(|s| voters.contains(&s.id) && s.term == best.term && s.leader == best.leader)
        .count();
    if answering * 2 <= voters.len() {
        return Err(Error::unavailable(format!(
            "no quorum: {answering} of {} voters answer with this leader and term",
            voters.len()
        )));
    }
    Ok(())
}
