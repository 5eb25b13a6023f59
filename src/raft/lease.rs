//! The long-poll lease: one path for every worker (a node's own executor and the gRPC worker
//! API) to take jobs through Raft.

use std::time::{Duration, Instant};

use super::Replica;
use crate::error::{Error, Result};
use crate::machine::{limits, Command, Grant, Machine, Response, WorkerRef};

impl Replica {
    /// Leases for `worker`, waiting up to `wait` for a job (long-poll). Proposes a Lease only
    /// when this node's state shows ready jobs in the queues, so an idle worker writes nothing
    /// to the log; otherwise waits for the next applied change.
    pub async fn lease_wait(
        &self,
        worker: &WorkerRef,
        queues: &[String],
        capabilities: &[String],
        max: u32,
        ttl_ms: Option<u64>,
        wait: Duration,
    ) -> Result<Vec<Grant>> {
        let deadline = Instant::now() + wait;
        let mut changes = self.changes();
        let mut empty_in_a_row = 0;
        loop {
            if !self.read(|m| m.leasable(queues, capabilities, worker.node.is_some())) {
                empty_in_a_row = 0;
            } else {
                let command = Command::Lease {
                    worker: worker.clone(),
                    queues: queues.to_vec(),
                    capabilities: capabilities.to_vec(),
                    max,
                    ttl_ms,
                };
                match self.propose(command).await? {
                    Response::Leased(grants) if !grants.is_empty() => {
                        if grants.len() < max as usize {
                            self.read(|m| count_lease_refusals(m, queues));
                        }
                        return Ok(grants);
                    }
                    Response::Leased(_) => {
                        // Changes applied while this lease was in flight are not dropped (a
                        // job may have come in as this worker lost the race for another):
                        // the loop looks again at the next one, within a bound.
                        empty_in_a_row += 1;
                        if empty_in_a_row >= limits::LEASE_EMPTY_IN_A_ROW_MAX {
                            changes.mark_seen();
                        }
                    }
                    Response::Rejected(r) => return Err(r.into()),
                    other => return Err(Error::Internal(format!("unexpected response {other:?}"))),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.read(|m| count_lease_refusals(m, queues));
                return Ok(Vec::new());
            }
            let _ = tokio::time::timeout(left, changes.changed()).await;
        }
    }
}

/// Counts, for a lease call that ends with fewer jobs than it asked, each asked queue (every
/// queue with ready jobs when it named none) whose policy held ready jobs back
/// (`raftline_lease_refusals_total`).
fn count_lease_refusals(machine: &Machine, queues: &[String]) {
    let count = |queue: &str| {
        if let Some(reason) = machine.lease_refused_by(queue) {
            let labels = vec![
                ("queue".to_string(), queue.to_string()),
                ("reason".to_string(), reason.to_string()),
            ];
            crate::metrics::EVENTS
                .lease_refusals
                .get_or_create(&labels)
                .inc();
        }
    };
    if queues.is_empty() {
        machine.ready_queues().for_each(count);
    } else {
        queues.iter().for_each(|q| count(q));
    }
}
