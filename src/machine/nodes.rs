//! Nodes: what the state machine remembers of each node's runs, so a lease asked for by a
//! node's previous run (applied after its new run registered) is refused, and the leases of a
//! run that is gone are ended when its successor registers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    pub(super) records: BTreeMap<u64, NodeRecord>,
}
