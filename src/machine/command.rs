//! What goes into the Raft log and what comes back out of apply.

use serde::{Deserialize, Serialize};

use super::job::{JobId, JobSpec};

/// One log entry's payload: a command stamped by the leader with its wall clock.
///
/// `now_ms` is the only source of time for the state machine (DESIGN.md: Time). Apply uses
/// `max(previous, now_ms)`, so time never runs backwards across leader changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Leader's wall clock when it proposed the command, in ms since the Unix epoch.
    pub now_ms: u64,
    /// What to do.
    pub command: Command,
}

/// A state change, proposed by the leader and applied identically on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add a job to its queue.
    Submit(JobSpec),
    /// A node process started (or restarted) with a fresh incarnation id. The set of nodes ever
    /// registered lets a node with an emptied data dir learn that it used to hold state.
    RegisterNode {
        /// The node's configured id.
        node_id: u64,
        /// A number unique to this process run of the node.
        incarnation: u64,
    },
}

/// The outcome of applying one command. Rejections are normal, deterministic outcomes: every
/// replica computes the same one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The job was created with this id.
    Submitted {
        /// Cluster-assigned id.
        id: JobId,
    },
    /// The node's registration was recorded.
    NodeRegistered,
    /// A Raft-internal entry (blank or membership) with no application response.
    #[default]
    Internal,
    /// The command was refused and changed nothing.
    Rejected(Rejection),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// A field is malformed; `field` names it.
    Invalid {
        /// The request field at fault, e.g. `queue` or `shell.argv`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A limit of `limits.rs` is reached.
    Exhausted {
        /// Which limit, and its value.
        message: String,
    },
}
