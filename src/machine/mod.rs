//! The replicated state machine: pure, deterministic, no I/O.
//!
//! Every change to raftline's state is a [`Command`] in a Raft log entry, stamped by the leader
//! with its clock ([`Proposal`]). [`Machine::apply`] turns one proposal into a [`Response`] and
//! a new state; applied in log order on every replica it gives identical states. Nothing here
//! reads a clock, a thread-local random source, the network or the disk, and no iteration order
//! depends on hashing (all maps are `BTreeMap`). Retry jitter comes from a PRNG seeded by
//! (job id, attempt) (`backoff.rs`).
//!
//! ## Subsystems, effects, flows
//!
//! [`Machine`] holds the clock, the settings and one value per subsystem, each a struct in its
//! own module that owns its state, its transitions and its invariant check: `jobs/` (jobs, the
//! ready/lease/expiry indexes, idempotency keys), `workflow/`, `schedule.rs`, `resources.rs`
//! (with locks), `events.rs` (triggers, dedup keys, timers), `controls.rs` (pauses, rate and
//! concurrency limits, breakers) and `nodes.rs`. No subsystem names another's methods: what
//! others must hear goes out as an effect (`effect.rs`) that [`Machine::drain`] routes to its
//! subscribers in a fixed order, depth-first, inside the same apply; commands that must read
//! several subsystems before they act (a lease asks whether a queue is paused and a resource
//! has room; a trigger starts a job) are composed in `flow.rs`. Transitions read time and
//! settings from a copied `Ctx`, never from the machine.
//!
//! ## Where the state lives
//!
//! Live state in memory, bounded by `limits.rs`; finished jobs in the cold tier (`cold.rs`,
//! sled on a node), written by apply as immutable records keyed by log index. Both are
//! persisted by snapshots plus the Raft log, not by sled: the log is already durable and
//! fsynced before an entry is committed, so syncing the state again per entry would double
//! the disk work on the hot path; apply stays a function of the state and the entry; and
//! atomicity with `last_applied` holds by construction, since a restart rebuilds both from the
//! last snapshot (which carries a copy of the cold tier) plus the log. The cost is replay time
//! on restart (at most one snapshot interval of entries) and memory proportional to the live
//! jobs (bounded by `JOBS_MAX`). Job records are read and written through `store.rs`.
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
//! Timers (scheduled starts, lease expiries, SLA deadlines, retention purges, key expiries,
//! lock expiries, cron ticks, breaker cooldowns) fire only inside a replicated
//! [`Command::Tick`], which the leader proposes when [`Machine::next_due`] has passed; each
//! Tick does at most `TICK_WORK_MAX` items, taken from the subsystems in a fixed order.
//!
//! ## Invariants
//!
//! Checked by [`Machine::check_invariants`] after applies in debug builds (every apply while
//! at most 5,000 jobs are held, one in 64 past that) and on every snapshot read: `now_ms`
//! never decreases, then each subsystem's own (listed in its module doc), then the ones that
//! tie them together (a running workflow step's job exists and has not ended; resource units
//! held by leased jobs plus locks never exceed capacity). The model test (`model/`) drives
//! random command streams through all of it.
//!
//! ## CAVEATS (not implemented)
//!
//! No cold tier yet (`store.rs`). Due times sit in one index per subsystem; `next_due` takes
//! the minimum of their first entries rather than keeping one merged index.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod codec;
pub mod cold;
pub mod command;
pub mod controls;
pub mod cursors;
mod effect;
pub mod events;
mod flow;
pub mod index;
pub mod job;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod nodes;
mod notify;
pub mod resources;
pub mod schedule;
pub mod search;
pub mod store;
pub mod webhooks;
pub mod workflow;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod model;
#[cfg(test)]
mod planted;

use std::collections::BTreeSet;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use command::{
    BulkAction, Command, Grant, JobChanges, Operation, Proposal, Rejection, Report, Response,
    Settings, WorkerRef,
};
pub use index::{Index, QueueStats};
pub use job::{
    Attempt, Backoff, ErrorClass, Job, JobId, JobKind, JobSpec, JobState, Lease, NodeRun, Outcome,
};
pub use nodes::NodeRecord;
pub use workflow::{
    Condition, Dependency, FailurePolicy, StepRef, StepSpec, StepState, Workflow, WorkflowId,
    WorkflowOp, WorkflowSpec, WorkflowState,
};

/// The whole replicated application state: the clock and settings every subsystem reads, and
/// one value per subsystem, each owning its state and checking its own invariants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// State-machine time: the largest `now_ms` applied so far.
    now_ms: u64,
    /// Cluster-wide settings.
    settings: Settings,
    /// Jobs, their indexes and idempotency keys.
    jobs: jobs::Jobs,
    /// Queue controls: pauses, rate and concurrency limits, breakers.
    controls: controls::Controls,
    /// Registered nodes.
    nodes: nodes::Nodes,
    /// Workflows.
    workflows: workflow::Workflows,
    /// Resources and their locks.
    resources: resources::Resources,
    /// Cron schedules.
    schedules: schedule::Schedules,
    /// Triggers, event dedup keys and timers.
    events: events::Events,
    /// API tokens. Encoded after the rest (format 8), so a format-7 snapshot still reads.
    #[serde(skip)]
    auth: auth::Auth,
    /// Who made which write. Encoded after the tokens (format 9).
    #[serde(skip)]
    audit: audit::Audit,
    /// Webhooks and their outbox, then nodes reported down. Encoded after the audit (format
    /// 10).
    #[serde(skip)]
    webhooks: webhooks::Webhooks,
    #[serde(skip)]
    alerts: alerts::Alerts,
    /// Cursors of clients reading outside sources. Encoded after the alerts (format 11).
    #[serde(skip)]
    cursors: cursors::Cursors,
}

impl Machine {
    /// An empty state; job ids and tokens start at 1.
    pub fn new() -> Self {
        Machine {
            jobs: jobs::Jobs::new(),
            workflows: workflow::Workflows::new(),
            schedules: schedule::Schedules::new(),
            events: events::Events::new(),
            webhooks: webhooks::Webhooks::new(),
            ..Machine::default()
        }
    }

    /// Applies one proposal. Deterministic: the same state and proposal give the same result on
    /// every replica. A rejected command changes nothing except state-machine time.
    pub fn apply(&mut self, proposal: &Proposal) -> Response {
        let next = self.jobs.records().at().saturating_add(1);
        self.apply_at(next, proposal)
    }

    /// Applies the proposal of log entry `index` (what the cold tier's records are keyed by:
    /// see `cold.rs`), moving the jobs it finished to the cold tier at its end.
    pub fn apply_at(&mut self, index: u64, proposal: &Proposal) -> Response {
        self.jobs.records_mut().set_at(index);
        self.now_ms = self.now_ms.max(proposal.now_ms);
        let response = match &proposal.command {
            Command::Batch(commands) => {
                Response::Batch(commands.iter().map(|c| self.apply_one(c)).collect())
            }
            command => self.apply_one(command),
        };
        self.jobs.retire_finished();
        #[cfg(debug_assertions)]
        {
            // The full check rebuilds every index: after every apply while the state is small,
            // and after one apply in 64 past that, so a debug build with tens of thousands of
            // jobs still keeps up with its heartbeats.
            static APPLIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = APPLIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.jobs.total() <= 5_000 || n % 64 == 0 {
                self.check_invariants();
            }
        }
        response
    }

    /// Adds a job straight to dead letters (`jobs/dead.rs`): the submit's checks and answer,
    /// then, for a job created now (not a known idempotency key), dead in the same apply.
    fn submit_dead(&mut self, spec: &JobSpec, dead: &jobs::DeadLetter) -> Response {
        if let Err(r) = dead.check() {
            return Response::Rejected(r);
        }
        let response = self.submit(spec, 0, None);
        if let Response::Submitted {
            id,
            duplicate: false,
        } = response
        {
            self.with_jobs(|jobs, ctx, fx| jobs.bury(ctx, fx, id, dead));
        }
        response
    }

    /// Routes one command to the subsystem that owns it, or to the flow that spans several.
    fn apply_one(&mut self, command: &Command) -> Response {
        let ctx = self.ctx();
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
            Command::Heartbeat { worker } => self.jobs.heartbeat(ctx, worker),
            Command::Complete {
                job_id,
                token,
                report,
            } => self.with_jobs(|jobs, ctx, fx| jobs.complete(ctx, fx, *job_id, *token, report)),
            Command::Checkpoint {
                job_id,
                token,
                data,
            } => self.jobs.checkpoint(*job_id, *token, data),
            Command::Release { job_id, token } => self.jobs.release(ctx, *job_id, *token),
            Command::Cancel { job_id } => self.cancel_job(*job_id),
            Command::BulkJobs { action, ids } => self.bulk_jobs(*action, ids),
            Command::Requeue { job_id, changes } => self.jobs.requeue(ctx, *job_id, changes),
            Command::PauseQueue { queue, paused } => self.pause_queue(queue, *paused),
            Command::PurgeDead { queue } => self.jobs.purge_dead(queue.as_deref()),
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
            } => self.resources.renew(ctx, resource, *token, *ttl_ms),
            Command::LockRelease { resource, token } => self.resources.release(resource, *token),
            Command::SetQueuePolicy { queue, policy } => {
                self.controls.set_policy(ctx, queue, policy)
            }
            Command::CreateSchedule(spec) => self.create_schedule(spec),
            Command::Schedule { id, op } => self.schedule_op(*id, op),
            Command::CreateTrigger { topic, target } => self.create_trigger(topic, target),
            Command::DeleteTrigger { id } => self.events.delete_trigger(*id),
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
            } => self.create_timer(*due_ms, *delay_ms, topic, dedup_key, payload),
            Command::CancelTimer { id } => self.events.cancel_timer(*id),
            Command::CreateToken(token) => self.auth.create(ctx, token),
            Command::RevokeToken { id } => self.auth.revoke(id),
            Command::BootstrapToken { node_id, hash } => self.auth.bootstrap(ctx, *node_id, hash),
            Command::TouchTokens(used) => self.auth.touch(used),
            Command::Operation { .. } => Response::Ok,
            Command::CreateWebhook { .. }
            | Command::DeleteWebhook { .. }
            | Command::TestWebhook { .. }
            | Command::WebhookAttempt(_)
            | Command::NodeHealth { .. } => self.webhook_command(command),
            Command::PutCursor {
                name,
                value,
                expected_version,
            } => self.cursors.put(ctx, name, value, *expected_version),
            Command::SubmitDead { spec, dead } => self.submit_dead(spec, dead),
            Command::By { by, command } => {
                let response = match &**command {
                    Command::By { .. } | Command::Batch(_) => {
                        Response::Rejected(Rejection::Invalid {
                            field: "command".into(),
                            message: "a caller's write holds one command".into(),
                        })
                    }
                    inner => self.apply_one(inner),
                };
                if !matches!(response, Response::Rejected(_)) {
                    self.audit.record(ctx.now_ms, by, command, &response);
                }
                response
            }
            // `apply` unpacks the outer batch; one nested in it is refused.
            Command::Batch(_) => Response::Rejected(Rejection::Invalid {
                field: "command".into(),
                message: "a batch may not contain a batch".into(),
            }),
        }
    }

    /// Replaces the cluster-wide settings, each within its bounds (`limits.rs`).
    fn configure(&mut self, settings: &Settings) -> Response {
        let checks = [
            (
                "dead_retention_ms",
                settings.dead_retention_ms,
                limits::DEAD_RETENTION_MS_MIN,
                limits::RETENTION_MS_MAX,
            ),
            (
                "finished_retention_ms",
                settings.finished_retention_ms,
                0,
                limits::RETENTION_MS_MAX,
            ),
            (
                "idempotency_window_ms",
                settings.idempotency_window_ms,
                limits::IDEMPOTENCY_WINDOW_MS_MIN,
                limits::IDEMPOTENCY_WINDOW_MS_MAX,
            ),
            (
                "priority_aging_ms",
                settings.priority_aging_ms,
                1,
                limits::PRIORITY_AGING_MS_MAX,
            ),
        ];
        for (field, value, min, max) in checks {
            if let Err(r) = command::in_range(field, value, min, max) {
                return Response::Rejected(r);
            }
        }
        self.settings = *settings;
        Response::Ok
    }

    /// Attaches a cold tier, loaded for this state as of log index `at` (see `cold.rs`):
    /// from then on jobs leave memory when they finish.
    pub fn attach_cold(&mut self, cold: cold::Cold, at: u64) {
        self.jobs.records_mut().attach(cold, at);
    }

    /// The cold tier, if one is attached, and the log index applied last.
    pub fn cold(&self) -> Option<(&cold::Cold, u64)> {
        let records = self.jobs.records();
        records.cold().map(|c| (c, records.at()))
    }

    /// State-machine time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Cluster-wide settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A job by id (read back from the cold tier if it finished).
    pub fn job(&self, id: JobId) -> Option<Cow<'_, Job>> {
        self.jobs.get(id)
    }

    /// Number of jobs held, live and finished.
    pub fn job_count(&self) -> usize {
        usize::try_from(self.jobs.total()).unwrap_or(usize::MAX)
    }

    /// Jobs in id order after `after`, filtered by queue and state, at most `limit` (a
    /// [`Machine::search`] without a scan bound).
    pub fn list(
        &self,
        queue: Option<&str>,
        state: Option<JobState>,
        after: JobId,
        limit: usize,
    ) -> Vec<Cow<'_, Job>> {
        let filter = search::JobFilter {
            queue: queue.map(str::to_string),
            state,
            ..Default::default()
        };
        self.search(&filter, after, limit, usize::MAX).jobs
    }

    /// Ready jobs of a queue, in the order they would be leased.
    pub fn ready_in(&self, queue: &str) -> impl Iterator<Item = JobId> + '_ {
        self.jobs
            .index()
            .ready
            .get(queue)
            .into_iter()
            .flat_map(|set| set.iter().map(|(_, _, id)| *id))
    }

    /// Ready jobs in the given queues (all queues when empty), not counting paused ones.
    pub fn ready_count(&self, queues: &[String]) -> u64 {
        let ready_index = &self.jobs.index().ready;
        let ready = |q: &String| {
            if self.controls.is_paused(q) {
                0
            } else {
                ready_index.get(q).map_or(0, |s| s.len() as u64)
            }
        };
        if queues.is_empty() {
            ready_index.keys().map(ready).sum()
        } else {
            queues.iter().map(ready).sum()
        }
    }

    /// Whether a lease by a worker offering `capabilities` on `queues` (all when empty) would
    /// grant a job now; `shell_only` for a node's own executor.
    pub fn leasable(&self, queues: &[String], capabilities: &[String], shell_only: bool) -> bool {
        if queues.is_empty() {
            let all: Vec<String> = self.jobs.index().ready.keys().cloned().collect();
            return self.best_ready(&all, capabilities, shell_only).is_some();
        }
        self.best_ready(queues, capabilities, shell_only).is_some()
    }

    /// Counters of a queue, and whether it is paused.
    pub fn queue(&self, queue: &str) -> (QueueStats, bool) {
        (self.jobs.stats(queue), self.controls.is_paused(queue))
    }

    /// Every queue with jobs or paused.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.jobs.index().queues.keys().cloned().collect();
        names.extend(self.controls.paused().cloned());
        names.into_iter().collect()
    }

    /// Leases a worker holds: (job, token).
    pub fn leases_of(&self, worker: &str) -> Vec<(JobId, u64)> {
        self.jobs.leases_of(worker)
    }

    /// The record of a node, if it ever registered.
    pub fn node(&self, node_id: u64) -> Option<&NodeRecord> {
        self.nodes.get(node_id)
    }

    /// Forgets the runs of every node not in `members` (applied with a membership entry).
    pub fn forget_nodes_outside(&mut self, members: &std::collections::BTreeSet<u64>) {
        self.nodes.retain(members);
    }

    /// A workflow by id.
    pub fn workflow(&self, id: WorkflowId) -> Option<&Workflow> {
        self.workflows.get(id)
    }

    /// Workflows in id order after `after`, filtered by state, at most `limit`.
    pub fn list_workflows(
        &self,
        state: Option<WorkflowState>,
        after: WorkflowId,
        limit: usize,
    ) -> Vec<&Workflow> {
        self.workflows.list(state, after, limit)
    }

    /// A resource by name.
    pub fn resource(&self, name: &str) -> Option<&resources::Resource> {
        self.resources.get(name)
    }

    /// A queue's policy and its state, if it has one.
    pub fn queue_control(&self, queue: &str) -> Option<&controls::QueueControl> {
        self.controls.policy(queue)
    }

    /// A schedule by id.
    pub fn schedule(&self, id: schedule::ScheduleId) -> Option<&schedule::Schedule> {
        self.schedules.get(id)
    }

    /// A schedule's id by name.
    pub fn schedule_id(&self, name: &str) -> Option<schedule::ScheduleId> {
        self.schedules.id_of(name)
    }

    /// Every schedule, in id order.
    pub fn schedules(&self) -> impl Iterator<Item = &schedule::Schedule> {
        self.schedules.iter()
    }

    /// Triggers, in id order.
    pub fn triggers(&self) -> impl Iterator<Item = &events::Trigger> {
        self.events.triggers()
    }

    /// Timers, by due time.
    pub fn timers(&self) -> impl Iterator<Item = &events::Timer> {
        self.events.timers()
    }

    /// Earliest state-machine time at which a Tick has work; `None` when nothing is pending
    /// (an idle cluster proposes nothing).
    pub fn next_due(&self) -> Option<u64> {
        let jobs = &self.jobs;
        [
            self.jobs.next_due(),
            self.workflows.next_due(),
            self.resources.next_due(),
            self.controls.next_due(|q| jobs.has_ready(q)),
            self.schedules_due(),
            self.events.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Panics if an invariant is broken: each subsystem's own (see each module's doc), then
    /// the ones that tie subsystems together. Replicas must never go on from a state that is
    /// wrong.
    pub fn check_invariants(&self) {
        self.jobs.check_invariants(self.now_ms);
        self.controls.check_invariants();
        self.nodes.check_invariants(self.now_ms);
        let jobs = &self.jobs;
        self.workflows
            .check_invariants(|id| jobs.get(id).is_some_and(|j| !j.state.is_terminal()));
        self.resources
            .check_invariants(&self.jobs.index().resource_used);
        self.schedules.check_invariants();
        self.events.check_invariants();
        self.auth.check_invariants();
        self.audit.check_invariants();
        self.webhooks.check_invariants();
        self.alerts.check_invariants();
        self.cursors.check_invariants();
    }

    /// Cursors of clients reading outside sources.
    pub fn cursors(&self) -> &cursors::Cursors {
        &self.cursors
    }

    /// Who made which write.
    pub fn audit(&self) -> &audit::Audit {
        &self.audit
    }

    /// API tokens.
    pub fn auth(&self) -> &auth::Auth {
        &self.auth
    }

    /// Encodes the state for a snapshot.
    pub fn encode(&self) -> Result<Vec<u8>, crate::machine::codec::CodecError> {
        crate::machine::codec::encode(&(
            SNAPSHOT_FORMAT,
            self,
            &self.auth,
            &self.audit,
            &self.webhooks,
            &self.alerts,
            &self.cursors,
        ))
    }

    /// Encodes the state for a snapshot into `writer` as it goes, the same bytes as
    /// [`Machine::encode`].
    pub fn encode_into(
        &self,
        writer: &mut impl std::io::Write,
    ) -> Result<usize, crate::machine::codec::CodecError> {
        crate::machine::codec::encode_into(
            &(
                SNAPSHOT_FORMAT,
                self,
                &self.auth,
                &self.audit,
                &self.webhooks,
                &self.alerts,
                &self.cursors,
            ),
            writer,
        )
    }

    /// Decodes a snapshot made by [`Machine::encode`], checking its format version and the
    /// invariants (assertions in pairs: checked on write and again on read).
    pub fn decode(bytes: &[u8]) -> Result<Machine, crate::machine::codec::CodecError> {
        Machine::decode_with(bytes, None)
    }

    /// [`Machine::decode`] of a state whose finished jobs are in `cold` (loaded for it), as
    /// of log index `at`.
    pub fn decode_with(
        bytes: &[u8],
        cold: Option<(cold::Cold, u64)>,
    ) -> Result<Machine, crate::machine::codec::CodecError> {
        let mut reader = bytes;
        let machine = Machine::decode_from(&mut reader, cold)?;
        if !reader.is_empty() {
            return Err(crate::machine::codec::CodecError(format!(
                "{} trailing bytes after the state",
                reader.len()
            )));
        }
        Ok(machine)
    }

    /// Decodes a snapshot made by [`Machine::encode_into`] from `reader`, with the same checks
    /// as [`Machine::decode`], attaching `cold` (loaded for it, as of log index `at`) first.
    pub fn decode_from(
        reader: &mut impl std::io::Read,
        cold: Option<(cold::Cold, u64)>,
    ) -> Result<Machine, crate::machine::codec::CodecError> {
        use crate::machine::codec::{decode_from, CodecError};
        let format: u32 = decode_from(reader)?;
        if !(SNAPSHOT_FORMAT_OLDEST..=SNAPSHOT_FORMAT).contains(&format) {
            return Err(CodecError(format!(
                "snapshot format {format}, this build reads {SNAPSHOT_FORMAT_OLDEST} to \
                 {SNAPSHOT_FORMAT}"
            )));
        }
        let mut machine: Machine = decode_from(reader)?;
        if format >= 8 {
            machine.auth = decode_from(reader)?;
        }
        if format >= 9 {
            machine.audit = decode_from(reader)?;
        }
        (machine.webhooks, machine.alerts) = if format >= 10 {
            (decode_from(reader)?, decode_from(reader)?)
        } else {
            (webhooks::Webhooks::new(), alerts::Alerts::default())
        };
        if format >= 11 {
            machine.cursors = decode_from(reader)?;
        }
        if let Some((tier, at)) = cold {
            machine.attach_cold(tier, at);
        }
        machine.check_invariants();
        Ok(machine)
    }
}

/// Version of the snapshot encoding; bumped on every incompatible change to [`Machine`]
/// (7: state grouped by subsystem; 8: API tokens after it; 9: the audit after them;
/// 10: webhooks after the audit; 11: cursors after the alerts).
const SNAPSHOT_FORMAT: u32 = 11;

/// Oldest snapshot encoding this build reads.
const SNAPSHOT_FORMAT_OLDEST: u32 = 7;

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

    /// A clone taken for a snapshot (job records shared, see `store.rs`) is not changed by
    /// applies after it, and encodes the same before and after them.
    #[test]
    fn a_snapshot_clone_is_isolated_from_later_applies() {
        let mut m = Machine::new();
        for i in 0..200u64 {
            m.apply(&submit(1_000 + i, "q", (i % 10 + 1) as u32));
        }
        let frozen = m.clone();
        let before = codec::encode(&frozen).unwrap();
        for i in 0..50u64 {
            m.apply(&submit(5_000 + i, "q", 1));
        }
        let cancel = Proposal {
            now_ms: 9_000,
            command: Command::Cancel { job_id: 7 },
        };
        m.apply(&cancel);
        assert_eq!(codec::encode(&frozen).unwrap(), before);
        assert_eq!(frozen.jobs.len(), 200);
        assert_eq!(m.jobs.len(), 250);
        assert_ne!(frozen.job(7).map(|j| j.state), m.job(7).map(|j| j.state));
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

    /// A node's executor (shell jobs only) finds a shell job however many external jobs wait
    /// ahead of it in the queue (its own index, not a scan of `LEASE_SCAN_MAX` ready jobs),
    /// while an external worker still takes the external jobs first.
    #[test]
    fn executor_finds_shell_job_behind_external_ones() {
        let mut m = Machine::new();
        let external = limits::LEASE_SCAN_MAX as u64 + 100;
        for i in 0..external {
            let spec = JobSpec::new("q", JobKind::External { payload: vec![1] });
            m.apply(&Proposal {
                now_ms: i,
                command: Command::Submit {
                    spec,
                    delay_ms: 0,
                    run_at_ms: None,
                },
            });
        }
        m.apply(&submit(external, "q", 5));
        let lease = |m: &mut Machine, node: Option<NodeRun>| {
            let worker = WorkerRef {
                id: "w".into(),
                node,
            };
            let r = m.apply(&Proposal {
                now_ms: external,
                command: Command::Lease {
                    worker,
                    queues: vec!["q".into()],
                    capabilities: Vec::new(),
                    max: 1,
                    ttl_ms: None,
                },
            });
            let Response::Leased(grants) = r else {
                panic!("lease: {r:?}");
            };
            grants.iter().map(|g| g.job_id).collect::<Vec<_>>()
        };
        let node = NodeRun {
            node_id: 1,
            incarnation: 1,
        };
        assert_eq!(lease(&mut m, Some(node)), vec![external + 1]);
        assert_eq!(lease(&mut m, None), vec![1]);
    }

    /// Encode/decode of a snapshot round-trips, and a foreign format is refused.
    #[test]
    fn snapshot_round_trip() {
        let mut m = Machine::new();
        for i in 0..50 {
            m.apply(&submit(i, &format!("q{}", i % 3), (i % 10 + 1) as u32));
        }
        let put = Command::PutCursor {
            name: "import:x".into(),
            value: b"7-0".to_vec(),
            expected_version: Some(0),
        };
        let proposal = Proposal {
            now_ms: 100,
            command: put,
        };
        assert_eq!(m.apply(&proposal), Response::CursorPut { version: 1 });
        let bytes = m.encode().unwrap();
        assert_eq!(Machine::decode(&bytes).unwrap(), m);
        let other = crate::machine::codec::encode(&(99u32, &m)).unwrap();
        assert!(Machine::decode(&other).is_err());
        // Format 10 (before cursors) still reads, without cursors.
        let old =
            crate::machine::codec::encode(&(10u32, &m, &m.auth, &m.audit, &m.webhooks, &m.alerts))
                .unwrap();
        let read = Machine::decode(&old).unwrap();
        assert!(read.cursors().is_empty());
        assert_eq!(read.job_count(), m.job_count());
    }
}
