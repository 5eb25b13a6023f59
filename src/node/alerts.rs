//! The leader's watch on its members: a member whose answers to heartbeats stopped for
//! `NODE_DOWN_MS` is reported down (`Command::NodeHealth`, raising `node.down` for triggers
//! and webhooks), and up again once it answers. A new leader waits `NODE_DOWN_MS` before
//! reporting anyone, so every member has had its chance to answer it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::machine::{limits, Command};
use crate::raft::Replica;

const DOWN: Duration = Duration::from_millis(limits::NODE_DOWN_MS);

/// Runs until `shutdown` completes.
pub async fn run(replica: Arc<Replica>, shutdown: impl Future<Output = ()>) {
    tokio::select! {
        _ = watch(replica) => {}
        _ = shutdown => {}
    }
}

async fn watch(replica: Arc<Replica>) {
    let mut every = tokio::time::interval(Duration::from_millis(limits::TICKER_CHECK_MS));
    let mut leading_since: Option<Instant> = None;
    loop {
        every.tick().await;
        if !replica.is_leader() {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        if since.elapsed() < DOWN {
            continue;
        }
        let heard = replica.peers_heard();
        let members: Vec<u64> = replica.status().members.iter().map(|m| m.0).collect();
        let down: std::collections::BTreeSet<u64> =
            replica.read(|m| m.nodes_down().map(|(n, _)| n).collect());
        for node in members.into_iter().filter(|n| *n != replica.id()) {
            let silent = heard.get(&node).is_none_or(|d| *d >= DOWN);
            if silent != down.contains(&node) {
                let command = Command::NodeHealth {
                    node_id: node,
                    down: silent,
                };
                if let Err(e) = replica.propose(command).await {
                    tracing::debug!(node, "node health not recorded: {e}");
                }
            }
        }
        // Members reported down that left the cluster are forgotten.
        for node in down {
            if !replica.status().members.iter().any(|m| m.0 == node) {
                let _ = replica
                    .propose(Command::NodeHealth {
                        node_id: node,
                        down: false,
                    })
                    .await;
            }
        }
    }
}
