//! Nodes: what the state machine remembers of each node's runs, so a lease asked for by a
//! node's previous run (applied after its new run registered) is refused, and the leases of a
//! run that is gone are ended when its successor registers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{exhausted, precondition, Ctx, Response};
use super::job::NodeRun;
use super::limits;

/// What the state machine remembers of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Incarnation of the node's latest run.
    pub incarnation: u64,
    /// State-machine time of its first registration.
    pub first_registered_ms: u64,
    /// State-machine time of its latest registration.
    pub registered_ms: u64,
}

/// The nodes subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nodes {
    /// Every node ever registered.
    records: BTreeMap<u64, NodeRecord>,
}

impl Nodes {
    /// The record of a node, if it ever registered.
    pub fn get(&self, node_id: u64) -> Option<&NodeRecord> {
        self.records.get(&node_id)
    }

    /// Every node ever registered, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &NodeRecord)> + '_ {
        self.records.iter()
    }

    /// Keeps only the records of `members`.
    pub(super) fn retain(&mut self, members: &std::collections::BTreeSet<u64>) {
        self.records.retain(|id, _| members.contains(id));
    }

    /// Records a node's new run (`incarnation`).
    pub(super) fn register(
        &mut self,
        ctx: Ctx,
        node_id: u64,
        incarnation: u64,
    ) -> Result<(), Response> {
        let now = ctx.now_ms;
        if !self.records.contains_key(&node_id) && self.records.len() >= limits::NODES_MAX {
            return Err(exhausted(format!(
                "{} nodes registered, the limit (NODES_MAX)",
                limits::NODES_MAX
            )));
        }
        let record = self.records.entry(node_id).or_insert(NodeRecord {
            incarnation,
            first_registered_ms: now,
            registered_ms: now,
        });
        record.incarnation = incarnation;
        record.registered_ms = now;
        Ok(())
    }

    /// Refuses a lease asked for by a node's previous run, applied after its new run
    /// registered: it would hold a job until expiry for a process that is gone.
    pub(super) fn check_current(&self, run: NodeRun) -> Result<(), Response> {
        match self.records.get(&run.node_id) {
            Some(record) if run.incarnation < record.incarnation => Err(precondition(format!(
                "node {} incarnation {} was replaced by incarnation {}",
                run.node_id, run.incarnation, record.incarnation
            ))),
            _ => Ok(()),
        }
    }

    /// Panics if a record is out of its bounds.
    pub fn check_invariants(&self, now_ms: u64) {
        assert!(
            self.records.len() <= limits::NODES_MAX,
            "nodes over NODES_MAX"
        );
        for (id, r) in &self.records {
            assert!(
                r.first_registered_ms <= r.registered_ms && r.registered_ms <= now_ms,
                "node {id} registration times"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now_ms: u64) -> Ctx {
        Ctx::at(now_ms)
    }

    /// A new run replaces the old one: a lease asked for by the old run is refused, the new
    /// run's is not, and the first registration time is kept.
    #[test]
    fn new_run_replaces_the_old() {
        let mut n = Nodes::default();
        n.register(ctx(10), 1, 100).unwrap();
        n.register(ctx(20), 1, 200).unwrap();
        let old = NodeRun {
            node_id: 1,
            incarnation: 100,
        };
        let new = NodeRun {
            node_id: 1,
            incarnation: 200,
        };
        assert!(n.check_current(old).is_err());
        assert!(n.check_current(new).is_ok());
        let r = n.get(1).unwrap();
        assert_eq!((r.first_registered_ms, r.registered_ms), (10, 20));
        n.check_invariants(20);
    }
}
