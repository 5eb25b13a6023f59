//! `raftline cluster status`: every node's own view (state, term, leader), asked of each
//! node directly rather than through failover, so an unreachable node shows as such.

use std::time::Duration;

use clap::Subcommand;

use super::connect::targets;
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
}

/// Runs `raftline cluster status`.
pub async fn cluster_status(addr: &[String], json: bool) -> Result<()> {
    let targets = targets(addr)?;
    let addrs: Vec<&str> = targets.iter().map(|(_, a)| a.as_str()).collect();
    let client = super::connect::client_of(&addrs)?;
    let timeout = Duration::from_millis(CLI_NODE_STATUS_MS_MAX);
    let calls = (0..client.len()).map(|i| {
        let client = &client;
        async move { tokio::time::timeout(timeout, client.node_status(i)).await }
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
    quorum(best, &replies)
}

/// Refuses (exit 1) a cluster with no leader, or whose answering voters are no majority.
fn quorum(
    best: Option<&pb::NodeStatusResponse>,
    replies: &[std::result::Result<Result<pb::NodeStatusResponse>, tokio::time::error::Elapsed>],
) -> Result<()> {
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
