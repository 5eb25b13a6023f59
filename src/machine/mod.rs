//! The replicated state machine: pure, deterministic, no I/O.
//!
//! Every change to raftline's state is a [`Command`] in a Raft log entry, stamped by the leader
//! with its clock ([`Proposal`]). [`Machine::apply`] turns one proposal into a [`Response`] and
//! a new state; applied in log order on every replica it gives identical states. Nothing here
//! reads a clock, a random source, the network or the disk, and no iteration order depends on
//! hashing (all maps are `BTreeMap`).
//!
//! ## Where the state lives
//!
//! In memory, bounded by `limits.rs`, and persisted by snapshots plus the Raft log (not written
//! through to sled per entry). Why: the log is already durable and fsynced before an entry is
//! committed, so writing the state again per entry would double the disk work on the hot path;
//! apply stays a pure function; and atomicity with `last_applied` holds by construction, since
//! both live in the same in-memory value and are rebuilt together from the last snapshot plus
//! the log after a crash. The cost is replay time on restart (at most one snapshot interval of
//! entries) and memory proportional to the jobs held.
//!
//! ## Invariants (checked by [`Machine::check_invariants`] after every apply in debug builds)
//!
//! - `now_ms` never decreases.
//! - Every job id is below `next_job_id`; ids are assigned in log order.
//! - A job is in its queue's ready index exactly when its state is `Ready`.
//!
//! ## CAVEATS (not implemented yet)
//!
//! Leases, retries, dead letters, workflows, resources, timers and cron come in later issues;
//! jobs are only `ready` here.

pub mod command;
pub mod job;
pub mod limits;

#[cfg(test)]
mod golden;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use command::{Command, Proposal, Rejection, Response};
pub use job::{Job, JobId, JobKind, JobSpec, JobState};

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

/// Key of the ready index: higher priority first, then FIFO by id (ids follow submit order).
type ReadyKey = (Reverse<u32>, JobId);

/// The whole replicated application state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// State-machine time: the largest `now_ms` applied so far.
    now_ms: u64,
    /// Next job id to assign.
    next_job_id: JobId,
    /// Every job held, by id.
    jobs: BTreeMap<JobId, Job>,
    /// Ready jobs per queue, in lease order.
    ready: BTreeMap<String, BTreeSet<ReadyKey>>,
    /// Every node ever registered.
    nodes: BTreeMap<u64, NodeRecord>,
}

impl Machine {
    /// An empty state; job ids start at 1.
    pub fn new() -> Self {
        Machine {
            next_job_id: 1,
            ..Machine::default()
        }
    }

    /// Applies one proposal. Deterministic: the same state and proposal give the same result on
    /// every replica. A rejected command changes nothing except state-machine time.
    pub fn apply(&mut self, proposal: &Proposal) -> Response {
        self.now_ms = self.now_ms.max(proposal.now_ms);
        let response = match &proposal.command {
            Command::Submit(spec) => self.submit(spec),
            Command::RegisterNode {
                node_id,
                incarnation,
            } => self.register_node(*node_id, *incarnation),
        };
        #[cfg(debug_assertions)]
        self.check_invariants();
        response
    }

    fn submit(&mut self, spec: &JobSpec) -> Response {
        if let Err(rejection) = spec.validate() {
            return Response::Rejected(rejection);
        }
        if self.jobs.len() >= limits::JOBS_MAX {
            return Response::Rejected(Rejection::Exhausted {
                message: format!(
                    "the cluster holds {} jobs, the limit (JOBS_MAX)",
                    limits::JOBS_MAX
                ),
            });
        }
        let id = self.next_job_id;
        self.next_job_id += 1;
        let job = Job {
            id,
            spec: spec.clone(),
            created_ms: self.now_ms,
            state: JobState::Ready,
        };
        self.ready
            .entry(spec.queue.clone())
            .or_default()
            .insert((Reverse(spec.priority), id));
        let previous = self.jobs.insert(id, job);
        assert!(previous.is_none(), "job id {id} assigned twice");
        Response::Submitted { id }
    }

    fn register_node(&mut self, node_id: u64, incarnation: u64) -> Response {
        let now = self.now_ms;
        if !self.nodes.contains_key(&node_id) && self.nodes.len() >= limits::NODES_MAX {
            return Response::Rejected(Rejection::Exhausted {
                message: format!(
                    "{} nodes registered, the limit (NODES_MAX)",
                    limits::NODES_MAX
                ),
            });
        }
        let record = self.nodes.entry(node_id).or_insert(NodeRecord {
            incarnation,
            first_registered_ms: now,
            registered_ms: now,
        });
        record.incarnation = incarnation;
        record.registered_ms = now;
        Response::NodeRegistered
    }

    /// State-machine time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// A job by id.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Number of jobs held.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Ready jobs of a queue, in the order they would be leased.
    pub fn ready_in(&self, queue: &str) -> impl Iterator<Item = JobId> + '_ {
        self.ready
            .get(queue)
            .into_iter()
            .flat_map(|set| set.iter().map(|(_, id)| *id))
    }

    /// The record of a node, if it ever registered.
    pub fn node(&self, node_id: u64) -> Option<&NodeRecord> {
        self.nodes.get(&node_id)
    }

    /// Panics if an invariant of the module doc is broken: replicas must never go on from a
    /// state that is wrong.
    pub fn check_invariants(&self) {
        let mut ready_count = 0;
        for (queue, set) in &self.ready {
            for (Reverse(priority), id) in set {
                let job = self
                    .jobs
                    .get(id)
                    .unwrap_or_else(|| panic!("ready index of {queue} holds unknown job {id}"));
                assert_eq!(job.state, JobState::Ready, "job {id} indexed as ready");
                assert_eq!(
                    &job.spec.queue, queue,
                    "job {id} indexed under the wrong queue"
                );
                assert_eq!(
                    job.spec.priority, *priority,
                    "job {id} indexed at wrong priority"
                );
                ready_count += 1;
            }
        }
        let ready_jobs = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Ready)
            .count();
        assert_eq!(
            ready_count, ready_jobs,
            "ready index and job states disagree"
        );
        if let Some((&last, _)) = self.jobs.last_key_value() {
            assert!(last < self.next_job_id, "job id {last} >= next_job_id");
        }
        for job in self.jobs.values() {
            assert!(
                job.created_ms <= self.now_ms,
                "job {} created in the future",
                job.id
            );
        }
    }

    /// Encodes the state for a snapshot.
    pub fn encode(&self) -> Result<Vec<u8>, crate::codec::CodecError> {
        crate::codec::encode(&(SNAPSHOT_FORMAT, self))
    }

    /// Decodes a snapshot made by [`Machine::encode`], checking its format version and the
    /// invariants (assertions in pairs: checked on write and again on read).
    pub fn decode(bytes: &[u8]) -> Result<Machine, crate::codec::CodecError> {
        let (format, machine): (u32, Machine) = crate::codec::decode(bytes)?;
        if format != SNAPSHOT_FORMAT {
            return Err(crate::codec::CodecError(format!(
                "snapshot format {format}, this build reads {SNAPSHOT_FORMAT}"
            )));
        }
        machine.check_invariants();
        Ok(machine)
    }
}

/// Version of the snapshot encoding; bumped on every incompatible change to [`Machine`].
const SNAPSHOT_FORMAT: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(now_ms: u64, queue: &str, priority: u32) -> Proposal {
        Proposal {
            now_ms,
            command: Command::Submit(JobSpec {
                queue: queue.into(),
                priority,
                kind: JobKind::Shell {
                    argv: vec!["true".into()],
                },
            }),
        }
    }

    /// Time never runs backwards even if a new leader's clock is behind the old one's.
    #[test]
    fn time_is_monotonic_across_leaders() {
        let mut m = Machine::new();
        m.apply(&submit(2_000, "q", 5));
        m.apply(&submit(1_000, "q", 5));
        assert_eq!(m.now_ms(), 2_000);
        assert_eq!(m.job(2).unwrap().created_ms, 2_000);
    }

    /// The ready index orders by priority, then FIFO.
    #[test]
    fn ready_order_priority_then_fifo() {
        let mut m = Machine::new();
        for (i, p) in [5, 9, 5, 1, 9].into_iter().enumerate() {
            m.apply(&submit(i as u64, "q", p));
        }
        assert_eq!(m.ready_in("q").collect::<Vec<_>>(), vec![2, 5, 1, 3, 4]);
    }

    /// A rejected submit assigns no id and stores nothing.
    #[test]
    fn submit_rejected_changes_nothing() {
        let mut m = Machine::new();
        let before = m.clone();
        let r = m.apply(&submit(0, "", 5));
        assert!(
            matches!(r, Response::Rejected(Rejection::Invalid { ref field, .. }) if field == "queue")
        );
        assert_eq!(m, before);
        assert_eq!(m.apply(&submit(0, "q", 5)), Response::Submitted { id: 1 });
    }

    /// Encode/decode of a snapshot round-trips, and a foreign format is refused.
    #[test]
    fn snapshot_round_trip() {
        let mut m = Machine::new();
        for i in 0..50 {
            m.apply(&submit(i, &format!("q{}", i % 3), (i % 10 + 1) as u32));
        }
        let bytes = m.encode().unwrap();
        assert_eq!(Machine::decode(&bytes).unwrap(), m);
        let other = crate::codec::encode(&(99u32, &m)).unwrap();
        assert!(Machine::decode(&other).is_err());
    }
}
