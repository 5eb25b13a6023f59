//! Alerts the cluster raises as events (`node.down`, `node.up`; `sla.missed`,
//! `breaker.opened` and `schedule.missed` come from their own subsystems, see `notify.rs`):
//! here, which nodes the leader reported down. A leader that stops hearing a member's answers
//! to its heartbeats for `NODE_DOWN_MS` proposes `NodeHealth { down: true }`, and `down: false`
//! once it hears it again (`node/alerts.rs`); a report that changes nothing (a new leader
//! reporting a node already down) raises nothing, so each outage is one `node.down`.
//!
//! Invariant: at most `NODES_MAX` nodes are down.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::limits;

/// Nodes reported down, with the state-machine time of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alerts {
    down: BTreeMap<u64, u64>,
}

/// Topics the cluster raises as alerts.
pub const TOPICS: [&str; 5] = [
    "node.down",
    "node.up",
    "sla.missed",
    "breaker.opened",
    "schedule.missed",
];

impl Alerts {
    /// Nodes reported down, with the time of the report.
    pub fn down(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.down.iter().map(|(n, t)| (*n, *t))
    }

    /// Records a node's health; returns since when it was down when this report changes it
    /// (`Some(now)` for a new outage, `Some(since)` when a down node is back), `None` when it
    /// changes nothing.
    pub(super) fn set(&mut self, node: u64, down: bool, now_ms: u64) -> Option<u64> {
        if down {
            if self.down.contains_key(&node) || self.down.len() >= limits::NODES_MAX {
                return None;
            }
            self.down.insert(node, now_ms);
            Some(now_ms)
        } else {
            self.down.remove(&node)
        }
    }

    /// Panics if the invariant of the module doc is broken.
    pub fn check_invariants(&self) {
        assert!(self.down.len() <= limits::NODES_MAX);
    }
}
