//! The replicated state machine: pure, deterministic, no I/O.
//!
//! Every change to raftline's state is a [`Command`] in a Raft log entry, stamped by the leader
//! with its clock ([`Proposal`]). [`Machine::apply`] turns one proposal into a [`Response`] and
//! a new state; applied in log order on every replica it gives identical states. Nothing here
//! reads a clock, a thread-local random source, the network or the disk, and no iteration order
//! depends on hashing (all maps are `BTreeMap`). Retry jitter comes from a PRNG seeded by
//! (job id, attempt) (`backoff.rs`).
//!
//! ## Where the state lives
//!
//! In memory, bounded by `limits.rs`, and persisted by snapshots plus the Raft log (not written
//! through to sled per entry). Why: the log is already durable and fsynced before an entry is
//! committed, so writing the state again per entry would double the disk work on the hot path;
//! apply stays a pure function; and atomicity with `last_applied` holds by construction, since
//! both live in the same in-memory value and are rebuilt together from the last snapshot plus
//! the log after a crash. The cost is replay time on restart (at most one snapshot interval of
//! entries) and memory proportional to the jobs held (bounded by `JOBS_MAX`).
//!
//! ## Jobs
//!
//! `scheduled` → `ready` → `leased` → `succeeded` | back to `scheduled` (transient failure,
//! attempts left, after a backoff) | `dead` | `cancelled`. Ready jobs sit in an ordered index
//! per queue keyed by rank = ready time + (10 - priority) × `priority_aging_ms`, so a lease is
//! O(log n) and higher priorities go first, while a job that waited long enough overtakes
//! newer, more urgent ones (no starvation). Every lease carries a fencing token from one
//! strictly increasing counter; completing, failing, checkpointing or releasing needs the
//! current lease's token, so a job reaches a terminal state exactly once.
//!
//! Timers (scheduled starts, lease expiries, SLA deadlines, retention purges, idempotency key
//! expiry) fire only inside a replicated [`Command::Tick`], which the leader proposes when
//! [`Machine::next_due`] has passed; each Tick does at most `TICK_WORK_MAX` items.
//!
//! ## Invariants (checked by [`Machine::check_invariants`] after applies in debug builds: every
//! apply while at most 5,000 jobs are held, one in 64 past that; and on every snapshot read)
//!
//! - `now_ms` never decreases.
//! - Every job id is below `next_job_id`; every token below `next_token`.
//! - The indexes equal the ones rebuilt from the jobs alone.
//! - A job has a lease exactly when it is `leased`; its newest attempt carries that token and
//!   is open; no other attempt is open.
//! - `attempts_used <= attempts_total`, and no more than `max_attempts` attempts are used.
//! - Terminal jobs have `finished_ms`; others do not.
//!
//! ## Workflows
//!
//! DAGs of steps run as a rolling frontier inside apply: see `workflow.rs`.
//!
//! ## CAVEATS (not implemented yet)
//!
//! Event triggers, and job and workflow transitions as topics: `events.rs`.
//!
//! ## Schedules
//!
//! Cron schedules with time zones, catch-up and overlap policies: `schedule.rs`.
//!
//! ## Resources and protection
//!
//! Resources (capacities that jobs need and lock clients hold): `resources.rs`. Breakers, rate
//! and concurrency limits per queue: `protect.rs`.

pub mod backoff;
pub mod command;
pub mod events;
pub mod index;
pub mod job;
mod lifecycle;
pub mod limits;
pub mod protect;
pub mod resources;
pub mod schedule;
pub mod workflow;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod model;
#[cfg(test)]
mod planted;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use command::{
    Command, Grant, JobChanges, Proposal, Rejection, Report, Response, Settings, WorkerRef,
};
pub use index::{Index, QueueStats};
pub use job::{
    Attempt, Backoff, ErrorClass, Job, JobId, JobKind, JobSpec, JobState, Lease, NodeRun, Outcome,
};
pub use workflow::{
    Condition, Dependency, FailurePolicy, StepRef, StepSpec, StepState, Workflow, WorkflowId,
    WorkflowOp, WorkflowSpec, WorkflowState,
};

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

/// The whole replicated application state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// State-machine time: the largest `now_ms` applied so far.
    now_ms: u64,
    /// Next job id to assign.
    next_job_id: JobId,
    /// Next enqueue sequence number (FIFO tie-break in the ready index).
    next_seq: u64,
    /// Next fencing token.
    next_token: u64,
    /// Cluster-wide settings.
    settings: Settings,
    /// Every job held, by id.
    jobs: BTreeMap<JobId, Job>,
    /// Indexes over `jobs`.
    index: Index,
    /// Paused queues.
    paused: BTreeSet<String>,
    /// Idempotency key -> (job, expiry).
    idempotency: BTreeMap<String, (JobId, u64)>,
    /// Idempotency keys by expiry.
    idempotency_expiry: BTreeSet<(u64, String)>,
    /// Every node ever registered.
    nodes: BTreeMap<u64, NodeRecord>,
    /// Next workflow id to assign.
    next_workflow_id: WorkflowId,
    /// Every workflow held, by id.
    workflows: BTreeMap<WorkflowId, Workflow>,
    /// Terminal workflows by purge time.
    workflow_purge: BTreeSet<(u64, WorkflowId)>,
    /// Resources by name.
    resources: BTreeMap<String, resources::Resource>,
    /// Locks by expiry: (expires_ms, resource, token).
    lock_expiry: BTreeSet<(u64, String, u64)>,
    /// Queue policies (rate, concurrency, breaker) and their state.
    controls: BTreeMap<String, protect::QueueControl>,
    /// Next schedule id.
    next_schedule_id: schedule::ScheduleId,
    /// Schedules by id.
    schedules: BTreeMap<schedule::ScheduleId, schedule::Schedule>,
    /// Schedule ids by name.
    schedule_names: BTreeMap<String, schedule::ScheduleId>,
    /// Active schedules by next tick.
    schedule_due: BTreeSet<(u64, schedule::ScheduleId)>,
    /// Schedules with ticks waiting for their previous run.
    schedule_queued: BTreeSet<schedule::ScheduleId>,
    /// Next trigger id.
    next_trigger_id: events::TriggerId,
    /// Triggers by id.
    triggers: BTreeMap<events::TriggerId, events::Trigger>,
    /// Trigger ids by topic.
    topics: BTreeMap<String, BTreeSet<events::TriggerId>>,
    /// Event dedup keys (topic NUL key) -> expiry.
    event_keys: BTreeMap<String, u64>,
    /// Event dedup keys by expiry.
    event_expiry: BTreeSet<(u64, String)>,
    /// Next timer id.
    next_timer_id: u64,
    /// Pending event timers by id.
    timers: BTreeMap<u64, events::Timer>,
    /// Pending event timers by due time.
    timer_due: BTreeSet<(u64, u64)>,
}

impl Machine {
    /// An empty state; job ids and tokens start at 1.
    pub fn new() -> Self {
        Machine {
            next_job_id: 1,
            next_seq: 1,
            next_token: 1,
            next_workflow_id: 1,
            next_schedule_id: 1,
            next_trigger_id: 1,
            next_timer_id: 1,
            ..Machine::default()
        }
    }

    /// Applies one proposal. Deterministic: the same state and proposal give the same result on
    /// every replica. A rejected command changes nothing except state-machine time.
    pub fn apply(&mut self, proposal: &Proposal) -> Response {
        self.now_ms = self.now_ms.max(proposal.now_ms);
        let response = match &proposal.command {
            Command::Batch(commands) => {
                Response::Batch(commands.iter().map(|c| self.apply_one(c)).collect())
            }
            command => self.apply_one(command),
        };
        #[cfg(debug_assertions)]
        {
            // The full check rebuilds every index: after every apply while the state is small,
            // and after one apply in 64 past that, so a debug build with tens of thousands of
            // jobs still keeps up with its heartbeats.
            static APPLIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = APPLIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.jobs.len() <= 5_000 || n % 64 == 0 {
                self.check_invariants();
            }
        }
        response
    }

    fn apply_one(&mut self, command: &Command) -> Response {
        match command {
            Command::Submit {
                spec,
                delay_ms,
                run_at_ms,
            } => self.submit(spec, *delay_ms, *run_at_ms),
            Command::RegisterNode {
                node_id,
                incarnation,
            } => self.register_node(*node_id, *incarnation),
            Command::Lease {
                worker,
                queues,
                capabilities,
                max,
                ttl_ms,
            } => self.lease(worker, queues, capabilities, *max, *ttl_ms),
            Command::Heartbeat { worker } => self.heartbeat(worker),
            Command::Complete {
                job_id,
                token,
                report,
            } => self.complete(*job_id, *token, report),
            Command::Checkpoint {
                job_id,
                token,
                data,
            } => self.checkpoint(*job_id, *token, data),
            Command::Release { job_id, token } => self.release(*job_id, *token),
            Command::Cancel { job_id } => self.cancel(*job_id),
            Command::Requeue { job_id, changes } => self.requeue(*job_id, changes),
            Command::PauseQueue { queue, paused } => self.pause_queue(queue, *paused),
            Command::PurgeDead { queue } => self.purge_dead(queue.as_deref()),
            Command::Configure(settings) => self.configure(settings),
            Command::Tick => self.tick(),
            Command::SubmitWorkflow(spec) => self.submit_workflow(spec),
            Command::Workflow { id, op } => self.workflow_op(*id, op),
            Command::SetResource { name, capacity } => self.set_resource(name, *capacity),
            Command::LockAcquire {
                resource,
                owner,
                ttl_ms,
            } => self.lock_acquire(resource, owner, *ttl_ms),
            Command::LockRenew {
                resource,
                token,
                ttl_ms,
            } => self.lock_renew(resource, *token, *ttl_ms),
            Command::LockRelease { resource, token } => self.lock_release(resource, *token),
            Command::SetQueuePolicy { queue, policy } => self.set_queue_policy(queue, policy),
            Command::CreateSchedule(spec) => self.create_schedule(spec),
            Command::Schedule { id, op } => self.schedule_op(*id, op),
            Command::CreateTrigger { topic, target } => self.create_trigger(topic, target),
            Command::DeleteTrigger { id } => self.delete_trigger(*id),
            Command::Emit {
                topic,
                dedup_key,
                payload,
            } => self.emit(topic, dedup_key, payload),
            Command::CreateTimer {
                due_ms,
                delay_ms,
                topic,
                dedup_key,
                payload,
            } => {
                let due = due_ms.unwrap_or(self.now_ms.saturating_add(*delay_ms));
                self.create_timer(due, topic, dedup_key, payload)
            }
            Command::CancelTimer { id } => self.cancel_timer(*id),
            // `apply` unpacks the outer batch; one nested in it is refused.
            Command::Batch(_) => Response::Rejected(Rejection::Invalid {
                field: "command".into(),
                message: "a batch may not contain a batch".into(),
            }),
        }
    }

    /// State-machine time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Cluster-wide settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A job by id.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Number of jobs held.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Jobs in id order after `after`, filtered by queue and state, at most `limit`.
    pub fn list(
        &self,
        queue: Option<&str>,
        state: Option<JobState>,
        after: JobId,
        limit: usize,
    ) -> Vec<&Job> {
        if let (Some(q), Some(JobState::Dead)) = (queue, state) {
            return self
                .index
                .dead
                .get(q)
                .into_iter()
                .flat_map(|ids| ids.range(after.saturating_add(1)..))
                .filter_map(|id| self.jobs.get(id))
                .take(limit)
                .collect();
        }
        self.jobs
            .range(after.saturating_add(1)..)
            .map(|(_, j)| j)
            .filter(|j| queue.is_none_or(|q| j.spec.queue == q))
            .filter(|j| state.is_none_or(|s| j.state == s))
            .take(limit)
            .collect()
    }

    /// Ready jobs of a queue, in the order they would be leased.
    pub fn ready_in(&self, queue: &str) -> impl Iterator<Item = JobId> + '_ {
        self.index
            .ready
            .get(queue)
            .into_iter()
            .flat_map(|set| set.iter().map(|(_, _, id)| *id))
    }

    /// Ready jobs in the given queues (all queues when empty), not counting paused ones.
    pub fn ready_count(&self, queues: &[String]) -> u64 {
        let ready = |q: &String| {
            if self.paused.contains(q) {
                0
            } else {
                self.index.ready.get(q).map_or(0, |s| s.len() as u64)
            }
        };
        if queues.is_empty() {
            self.index.ready.keys().map(ready).sum()
        } else {
            queues.iter().map(ready).sum()
        }
    }

    /// Whether a lease by a worker offering `capabilities` on `queues` (all when empty) would
    /// grant a job now; `shell_only` for a node's own executor.
    pub fn leasable(&self, queues: &[String], capabilities: &[String], shell_only: bool) -> bool {
        if queues.is_empty() {
            let all: Vec<String> = self.index.ready.keys().cloned().collect();
            return self.best_ready(&all, capabilities, shell_only).is_some();
        }
        self.best_ready(queues, capabilities, shell_only).is_some()
    }

    /// Counters of a queue, and whether it is paused.
    pub fn queue(&self, queue: &str) -> (QueueStats, bool) {
        (
            self.index.queues.get(queue).cloned().unwrap_or_default(),
            self.paused.contains(queue),
        )
    }

    /// Every queue with jobs or paused.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.index.queues.keys().cloned().collect();
        names.extend(self.paused.iter().cloned());
        names.into_iter().collect()
    }

    /// Leases a worker holds: (job, token).
    pub fn leases_of(&self, worker: &str) -> Vec<(JobId, u64)> {
        self.index
            .worker_leases
            .get(worker)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                let lease = self.jobs.get(id)?.lease.as_ref()?;
                Some((*id, lease.token))
            })
            .collect()
    }

    /// The record of a node, if it ever registered.
    pub fn node(&self, node_id: u64) -> Option<&NodeRecord> {
        self.nodes.get(&node_id)
    }

    /// Earliest state-machine time at which a Tick has work; `None` when nothing is pending
    /// (an idle cluster proposes nothing).
    pub fn next_due(&self) -> Option<u64> {
        let idem = self.idempotency_expiry.first().map(|(t, _)| *t);
        let workflows = self.workflow_purge.first().map(|(t, _)| *t);
        let locks = self.lock_expiry.first().map(|(t, _, _)| *t);
        [
            self.index.next_due(),
            idem,
            workflows,
            locks,
            self.controls_due(),
            self.schedules_due(),
            self.event_expiry.first().map(|(t, _)| *t),
            self.timer_due.first().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Panics if an invariant of the module doc is broken: replicas must never go on from a
    /// state that is wrong.
    pub fn check_invariants(&self) {
        assert_eq!(
            self.index,
            Index::build(self.jobs.values()),
            "indexes differ from the ones rebuilt from the jobs"
        );
        if let Some((&last, _)) = self.jobs.last_key_value() {
            assert!(last < self.next_job_id, "job id {last} >= next_job_id");
        }
        for job in self.jobs.values() {
            let id = job.id;
            assert!(
                job.created_ms <= self.now_ms,
                "job {id} created in the future"
            );
            assert_eq!(
                job.lease.is_some(),
                job.state == JobState::Leased,
                "job {id} lease"
            );
            assert!(job.attempts_used <= job.attempts_total, "job {id} attempts");
            assert!(
                job.attempts_used <= job.spec.max_attempts,
                "job {id} over max_attempts"
            );
            assert!(
                job.attempts.len() <= limits::ATTEMPTS_KEPT_MAX,
                "job {id} attempts kept"
            );
            assert_eq!(
                job.finished_ms.is_some(),
                job.state.is_terminal(),
                "job {id} finished"
            );
            let open: Vec<&Attempt> = job
                .attempts
                .iter()
                .filter(|a| a.ended_ms.is_none())
                .collect();
            match &job.lease {
                Some(lease) => {
                    assert!(
                        lease.token < self.next_token,
                        "job {id} token from the future"
                    );
                    assert_eq!(
                        open.len(),
                        1,
                        "job {id} leased with {} open attempts",
                        open.len()
                    );
                    assert_eq!(open[0].token, lease.token, "job {id} open attempt token");
                }
                None => assert!(
                    open.is_empty(),
                    "job {id} has an open attempt without a lease"
                ),
            }
            let tokens: Vec<u64> = job.attempts.iter().map(|a| a.token).collect();
            assert!(
                tokens.windows(2).all(|w| w[0] < w[1]),
                "job {id} tokens not increasing"
            );
        }
        for (key, (id, expires)) in &self.idempotency {
            assert!(
                self.idempotency_expiry.contains(&(*expires, key.clone())),
                "idempotency key {key:?} of job {id} has no expiry"
            );
        }
        assert_eq!(self.idempotency.len(), self.idempotency_expiry.len());
        self.check_workflow_invariants();
        self.check_resource_invariants();
        self.check_schedule_invariants();
        self.check_event_invariants();
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
const SNAPSHOT_FORMAT: u32 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(now_ms: u64, queue: &str, priority: u32) -> Proposal {
        let mut spec = JobSpec::shell(queue, &["true"]);
        spec.priority = priority;
        Proposal {
            now_ms,
            command: Command::Submit {
                spec,
                delay_ms: 0,
                run_at_ms: None,
            },
        }
    }

    /// A batch applies its commands in order, each with its own response: a rejected one does
    /// not undo or block the others, and a batch nested in a batch is refused.
    #[test]
    fn batch_applies_each_command_with_its_own_response() {
        let mut m = Machine::new();
        let one = |p: Proposal| p.command;
        let mut bad = JobSpec::shell("", &["true"]);
        bad.priority = 5;
        let batch = Proposal {
            now_ms: 1_000,
            command: Command::Batch(vec![
                one(submit(1_000, "q", 5)),
                Command::Submit {
                    spec: bad,
                    delay_ms: 0,
                    run_at_ms: None,
                },
                Command::Batch(vec![one(submit(1_000, "q", 5))]),
                one(submit(1_000, "q", 7)),
            ]),
        };
        let Response::Batch(rs) = m.apply(&batch) else {
            panic!("a batch answers with a batch");
        };
        assert_eq!(rs.len(), 4);
        assert!(matches!(rs[0], Response::Submitted { id: 1, .. }), "{rs:?}");
        assert!(
            matches!(&rs[1], Response::Rejected(Rejection::Invalid { field, .. }) if field == "queue"),
            "{rs:?}"
        );
        assert!(
            matches!(&rs[2], Response::Rejected(Rejection::Invalid { field, .. }) if field == "command"),
            "{rs:?}"
        );
        assert!(matches!(rs[3], Response::Submitted { id: 2, .. }), "{rs:?}");
        assert_eq!(m.list(Some("q"), None, 0, 10).len(), 2);
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

    /// The ready index orders by priority, then FIFO, for jobs enqueued close together.
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
        assert_eq!(
            m.apply(&submit(0, "q", 5)),
            Response::Submitted {
                id: 1,
                duplicate: false
            }
        );
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
