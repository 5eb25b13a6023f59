//! What goes into the Raft log and what comes back out of apply.

use serde::{Deserialize, Serialize};

use super::job::{ErrorClass, JobId, JobSpec, JobState};
use super::workflow::{WorkflowId, WorkflowOp, WorkflowSpec, WorkflowState};

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

/// Cluster-wide settings that change how apply behaves. Replicated (not read from each node's
/// config) so every replica applies with the same values; the leader proposes its config's
/// values when they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// How long dead jobs are kept before they are purged.
    pub dead_retention_ms: u64,
    /// How long succeeded and cancelled jobs are kept.
    pub finished_retention_ms: u64,
    /// How long an idempotency key maps to its first job.
    pub idempotency_window_ms: u64,
    /// Waiting this long raises a job's effective priority by one level (priority aging).
    pub priority_aging_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dead_retention_ms: 30 * 24 * 3_600_000,
            finished_retention_ms: 7 * 24 * 3_600_000,
            idempotency_window_ms: 24 * 3_600_000,
            priority_aging_ms: 60_000,
        }
    }
}

/// Who asks for a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRef {
    /// Worker id, unique per worker process (`[A-Za-z0-9_.-]`).
    pub id: String,
    /// The node process, for a node's own executor (its leases end when the node restarts).
    pub node: Option<super::job::NodeRun>,
}

/// What a worker reports at the end of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `None` for success; otherwise the class the worker saw (`Transient`, `Permanent`,
    /// `Timeout`). A shell job's exit code listed in `permanent_exit_codes` is made permanent
    /// by the machine.
    pub error_class: Option<ErrorClass>,
    /// Exit code of a shell job that exited.
    pub exit_code: Option<i32>,
    /// Error description.
    pub error: String,
    /// End of the output.
    pub output_tail: String,
}

/// Changes a requeue may make to a job's definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChanges {
    /// New argv of a shell job.
    pub argv: Option<Vec<String>>,
    /// Environment variables to set (replacing ones of the same name).
    pub env: Option<Vec<(String, String)>>,
    /// New priority.
    pub priority: Option<u32>,
    /// New attempt budget.
    pub max_attempts: Option<u32>,
}

/// A state change, proposed by the leader and applied identically on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add a job to its queue, ready at `run_at_ms` or after `delay_ms` (state-machine time).
    Submit {
        /// The job.
        spec: JobSpec,
        /// Delay from now.
        delay_ms: u64,
        /// Absolute start time; wins over `delay_ms` when set.
        run_at_ms: Option<u64>,
    },
    /// A node process started with a fresh incarnation id. Leases held by the node's previous
    /// run end at once (the attempt counts); the set of nodes ever registered lets a node with
    /// an emptied data dir learn that it ran before.
    RegisterNode {
        /// The node's configured id.
        node_id: u64,
        /// A number unique to this process run of the node.
        incarnation: u64,
    },
    /// Grant up to `max` ready jobs of `queues` (all queues when empty) whose required
    /// capabilities the worker has, each under a new lease.
    Lease {
        /// Who leases.
        worker: WorkerRef,
        /// Queues to take from; empty means every queue.
        queues: Vec<String>,
        /// Capabilities the worker offers.
        capabilities: Vec<String>,
        /// Most jobs to grant.
        max: u32,
        /// Lease ttl; the job's own `lease_ttl_ms` when `None`.
        ttl_ms: Option<u64>,
    },
    /// Extend every lease the worker holds by its ttl.
    Heartbeat {
        /// Worker id.
        worker: String,
    },
    /// End an attempt (success or failure) under lease `token`.
    Complete {
        /// The job.
        job_id: JobId,
        /// Fencing token of the lease.
        token: u64,
        /// What happened.
        report: Report,
    },
    /// Store a checkpoint under lease `token`; the next attempt's lease hands it back.
    Checkpoint {
        /// The job.
        job_id: JobId,
        /// Fencing token of the lease.
        token: u64,
        /// Opaque progress data.
        #[serde(with = "crate::machine::codec::bytes")]
        data: Vec<u8>,
    },
    /// Hand a leased job back without counting the attempt (worker shutting down).
    Release {
        /// The job.
        job_id: JobId,
        /// Fencing token of the lease.
        token: u64,
    },
    /// Cancel a job that has not finished; a running attempt is told through its lease.
    Cancel {
        /// The job.
        job_id: JobId,
    },
    /// Run a job again now: a scheduled job becomes ready at once; a dead or cancelled job gets
    /// a fresh attempt budget. Optionally with new parameters.
    Requeue {
        /// The job.
        job_id: JobId,
        /// New parameters.
        changes: JobChanges,
    },
    /// Retry or cancel each of `ids` (found by a filter when proposed): a job the action no
    /// longer applies to is skipped.
    BulkJobs {
        /// What to do to each.
        action: BulkAction,
        /// The jobs, at most `BULK_JOBS_MAX`.
        ids: Vec<JobId>,
    },
    /// Stop (or resume) leasing from a queue; running jobs finish.
    PauseQueue {
        /// The queue.
        queue: String,
        /// `true` to pause, `false` to resume.
        paused: bool,
    },
    /// Remove dead jobs (of one queue, or all), at most `PURGE_BATCH_MAX` per command.
    PurgeDead {
        /// Only this queue, if set.
        queue: Option<String>,
    },
    /// Replace the cluster-wide settings.
    Configure(Settings),
    /// Process what is due at `now_ms`: timers, lease expiries, deadlines, retention purges.
    Tick,
    /// Start a workflow: validated whole, then its steps with no dependencies become ready.
    SubmitWorkflow(WorkflowSpec),
    /// Cancel, pause, resume, retry a step of, or skip a step of a workflow.
    Workflow {
        /// The workflow.
        id: WorkflowId,
        /// What to do.
        op: WorkflowOp,
    },
    /// Create a resource, or change its capacity.
    SetResource {
        /// Name.
        name: String,
        /// Units (0 closes it).
        capacity: u32,
    },
    /// Take one unit of a resource for an external client.
    LockAcquire {
        /// The resource.
        resource: String,
        /// Who holds it.
        owner: String,
        /// How long before it expires unless renewed.
        ttl_ms: u64,
    },
    /// Extend a lock held under `token`.
    LockRenew {
        /// The resource.
        resource: String,
        /// Fencing token of the grant.
        token: u64,
        /// New ttl from now.
        ttl_ms: u64,
    },
    /// Give back a lock held under `token`.
    LockRelease {
        /// The resource.
        resource: String,
        /// Fencing token of the grant.
        token: u64,
    },
    /// Replace a queue's rate limit, concurrency limit and breaker (all unset removes them).
    SetQueuePolicy {
        /// The queue.
        queue: String,
        /// The limits.
        policy: super::controls::QueuePolicy,
    },
    /// Create a cron schedule.
    CreateSchedule(super::schedule::ScheduleSpec),
    /// Pause, resume, trigger, delete or backfill a schedule.
    Schedule {
        /// The schedule.
        id: super::schedule::ScheduleId,
        /// What to do.
        op: super::schedule::ScheduleOp,
    },
    /// Subscribe a job or workflow template to a topic.
    CreateTrigger {
        /// The topic.
        topic: String,
        /// What each event starts.
        target: super::schedule::Target,
    },
    /// Remove a trigger.
    DeleteTrigger {
        /// The trigger.
        id: super::events::TriggerId,
    },
    /// Emit an event: starts the topic's subscribers, once per dedup key within the window.
    Emit {
        /// The topic.
        topic: String,
        /// Deduplication key.
        dedup_key: String,
        /// Payload handed to the started work.
        #[serde(with = "crate::machine::codec::bytes")]
        payload: Vec<u8>,
    },
    /// A durable timer: emit an event at `due_ms`, or `delay_ms` from now.
    CreateTimer {
        /// When, state-machine time; `delay_ms` from now when `None`.
        due_ms: Option<u64>,
        /// Delay from now.
        delay_ms: u64,
        /// The event's topic.
        topic: String,
        /// The event's dedup key.
        dedup_key: String,
        /// The event's payload.
        #[serde(with = "crate::machine::codec::bytes")]
        payload: Vec<u8>,
    },
    /// Cancel a pending timer.
    CancelTimer {
        /// The timer.
        id: u64,
    },
    /// Several commands in one log entry, applied in order as if proposed one after another
    /// at the same time; each gets its own response in [`Response::Batch`], so one rejected
    /// command does not affect the others. The leader packs concurrent proposals this way
    /// (one entry, one fsync, one replication message for many), and a worker's completions
    /// travel with its next lease. A batch inside a batch is rejected.
    Batch(Vec<Command>),
    /// Adds an API token (its hash; see `auth.rs`).
    CreateToken(super::auth::Token),
    /// Revokes an API token.
    RevokeToken {
        /// Its id.
        id: String,
    },
    /// Records node `node_id`'s bootstrap (admin) token by the hash of its secret.
    BootstrapToken {
        /// The node whose data dir holds the secret.
        node_id: u64,
        /// SHA-256 of the secret, hex.
        hash: String,
    },
    /// When tokens were last used: (id, time), reported by a node at most once a minute.
    TouchTokens(Vec<(String, u64)>),
    /// A write made through the API by `by` (the token that passed the auth gate); applied as
    /// `command`, then recorded in the audit (`audit.rs`). Holds one command, not a batch.
    By {
        /// The caller.
        by: super::audit::Principal,
        /// What it asked for.
        command: Box<Command>,
    },
    /// An operation carried out outside the state machine (a membership change, a backup),
    /// proposed once it is done so the audit records who did it; changes nothing else.
    Operation {
        /// Which.
        kind: Operation,
        /// What it applied to (`add node 4 ...`), at most `OPERATION_TARGET_BYTES_MAX`.
        target: String,
    },
    /// Creates a webhook (`webhooks.rs`).
    CreateWebhook {
        /// Where deliveries are POSTed.
        url: String,
        /// Topics it wants, or `*`.
        topics: Vec<String>,
        /// The signing secret (chosen by the API node when the caller gave none).
        secret: String,
        /// Attempts per delivery.
        max_attempts: u32,
    },
    /// Deletes a webhook and its deliveries.
    DeleteWebhook {
        /// The webhook.
        id: super::webhooks::WebhookId,
    },
    /// Queues a `webhook.test` delivery to a webhook.
    TestWebhook {
        /// The webhook.
        id: super::webhooks::WebhookId,
    },
    /// The outcome of one delivery attempt, proposed by the leader's deliverer.
    WebhookAttempt(super::webhooks::AttemptOutcome),
    /// The leader stopped hearing a member (`down`), or hears it again (`alerts.rs`).
    NodeHealth {
        /// The member.
        node_id: u64,
        /// Down or back up.
        down: bool,
    },
    /// Puts a cursor's value (an empty value deletes it), if it is at `expected_version`
    /// (`cursors.rs`).
    PutCursor {
        /// The cursor's name.
        name: String,
        /// The new value; empty deletes the cursor.
        #[serde(with = "super::codec::bytes")]
        value: Vec<u8>,
        /// The version the caller read (0 = absent); `None` puts whatever the version.
        expected_version: Option<u64>,
    },
    /// Add a job straight to dead letters with the failure it brings from another job system
    /// (an import, `jobs/dead.rs`): checked and counted like a submit, then dead in the same
    /// apply; `Submitted` like a submit (a known idempotency key creates nothing).
    SubmitDead {
        /// The job.
        spec: JobSpec,
        /// How it failed before it came here.
        dead: super::jobs::DeadLetter,
    },
}

/// Operations the audit records (see [`Command::Operation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// `ChangeMembership` (not its `progress` reads).
    ChangeMembership,
    /// `SaveSnapshot`.
    SaveSnapshot,
}

impl Command {
    /// The checks of a command that depend on nothing but the command (names, ranges), run at
    /// the API edge before it is proposed so a refusal writes nothing; apply checks them again.
    pub fn check_stateless(&self) -> Result<(), Rejection> {
        if let Command::By { by, command } = self {
            let long = by.token_id.len() > limits::TOKEN_ID_BYTES_MAX
                || by.name.len() > limits::TOKEN_NAME_BYTES_MAX;
            if long || matches!(**command, Command::By { .. } | Command::Batch(_)) {
                return Err(Rejection::Invalid {
                    field: "command".into(),
                    message: "a caller's write holds one command and a token's id and name".into(),
                });
            }
            return command.check_stateless();
        }
        use super::job::{validate_name, validate_queue_name};
        use super::limits;
        let rejected = |r: Response| match r {
            Response::Rejected(r) => r,
            other => Rejection::invalid("command", format!("{other:?}")),
        };
        match self {
            Command::Operation { target, .. }
                if target.len() > limits::OPERATION_TARGET_BYTES_MAX =>
            {
                Err(Rejection::invalid(
                    "target",
                    format!("at most {} bytes", limits::OPERATION_TARGET_BYTES_MAX),
                ))
            }
            Command::PauseQueue { queue, .. } => validate_queue_name("queue", queue),
            Command::SubmitDead { dead, .. } => dead.check(),
            Command::BulkJobs { ids, .. } => {
                in_range("ids", ids.len() as u64, 1, limits::BULK_JOBS_MAX as u64)
            }
            Command::SetQueuePolicy { queue, policy } => {
                validate_queue_name("queue", queue)?;
                policy.validate().map_err(rejected)
            }
            Command::Heartbeat { worker } => {
                super::jobs::Jobs::check_worker(worker).map_err(rejected)
            }
            Command::SetResource { name, capacity } => {
                validate_name("name", name, limits::RESOURCE_NAME_BYTES_MAX)?;
                in_range(
                    "capacity",
                    (*capacity).into(),
                    0,
                    limits::RESOURCE_CAPACITY_MAX.into(),
                )
            }
            Command::LockAcquire {
                resource,
                owner,
                ttl_ms,
            } => {
                validate_name("resource", resource, limits::RESOURCE_NAME_BYTES_MAX)?;
                validate_name("owner", owner, limits::WORKER_ID_BYTES_MAX)?;
                in_range(
                    "ttl_ms",
                    *ttl_ms,
                    limits::LOCK_TTL_MS_MIN,
                    limits::LOCK_TTL_MS_MAX,
                )
            }
            Command::LockRenew {
                resource, ttl_ms, ..
            } => {
                validate_name("resource", resource, limits::RESOURCE_NAME_BYTES_MAX)?;
                in_range(
                    "ttl_ms",
                    *ttl_ms,
                    limits::LOCK_TTL_MS_MIN,
                    limits::LOCK_TTL_MS_MAX,
                )
            }
            Command::LockRelease { resource, .. } => {
                validate_name("resource", resource, limits::RESOURCE_NAME_BYTES_MAX)
            }
            Command::Emit {
                topic,
                dedup_key,
                payload,
            }
            | Command::CreateTimer {
                topic,
                dedup_key,
                payload,
                ..
            } => super::events::Events::check_event(topic, dedup_key, payload).map_err(rejected),
            Command::CreateWebhook {
                url,
                topics,
                secret,
                max_attempts,
            } => super::webhooks::Webhooks::check(url, topics, secret, *max_attempts)
                .map_err(rejected),
            Command::PutCursor { name, value, .. } => super::cursors::Cursors::check(name, value),
            _ => Ok(()),
        }
    }

    /// Rough encoded size, for capping a batch: the variable-length fields plus a fixed part.
    pub fn weight(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + match self {
                Command::Submit { spec, .. } => spec.weight(),
                Command::SubmitDead { spec, dead } => {
                    spec.weight() + dead.error.len() + dead.output_tail.len() + dead.source.len()
                }
                Command::Complete { report, .. } => report.output_tail.len() + report.error.len(),
                Command::Checkpoint { data, .. } => data.len(),
                Command::Lease {
                    worker,
                    queues,
                    capabilities,
                    ..
                } => {
                    worker.id.len()
                        + queues.iter().map(String::len).sum::<usize>()
                        + capabilities.iter().map(String::len).sum::<usize>()
                }
                Command::Batch(commands) => commands.iter().map(Command::weight).sum(),
                Command::By { by, command } => by.token_id.len() + by.name.len() + command.weight(),
                Command::SubmitWorkflow(spec) => spec.weight(),
                Command::Emit { payload, .. } | Command::CreateTimer { payload, .. } => {
                    payload.len()
                }
                Command::PutCursor { name, value, .. } => name.len() + value.len(),
                Command::CreateSchedule(s) => match &s.target {
                    super::schedule::Target::Job(j) => j.weight(),
                    super::schedule::Target::Workflow(w) => w.weight(),
                },
                _ => 0,
            }
    }
}

/// What a bulk operation does to each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkAction {
    /// Run again now (as `Requeue` without changes).
    Retry,
    /// Cancel (as `Cancel`).
    Cancel,
    /// Remove a finished job now instead of at the end of its retention.
    Purge,
}

impl BulkAction {
    /// `retry`, `cancel` or `purge`.
    pub fn parse(name: &str) -> Option<BulkAction> {
        match name {
            "retry" => Some(BulkAction::Retry),
            "cancel" => Some(BulkAction::Cancel),
            "purge" => Some(BulkAction::Purge),
            _ => None,
        }
    }

    /// Whether the action takes a job in `state`.
    pub fn takes(self, state: super::JobState) -> bool {
        use super::JobState::{Cancelled, Dead, Leased, Ready, Scheduled, Succeeded};
        match self {
            BulkAction::Retry => matches!(state, Scheduled | Dead | Cancelled),
            BulkAction::Cancel => matches!(state, Scheduled | Ready | Leased),
            BulkAction::Purge => matches!(state, Succeeded | Dead | Cancelled),
        }
    }
}

/// A job granted by a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The job.
    pub job_id: JobId,
    /// Fencing token of the new lease.
    pub token: u64,
    /// Attempt number (over the job's whole life).
    pub attempt: u32,
    /// Lease expiry, state-machine time.
    pub expires_ms: u64,
    /// Lease ttl.
    pub ttl_ms: u64,
    /// The job's definition.
    pub spec: JobSpec,
    /// The checkpoint stored by an earlier attempt.
    #[serde(with = "crate::machine::codec::opt_bytes")]
    pub checkpoint: Option<Vec<u8>>,
}

/// The outcome of applying one command. Rejections are normal, deterministic outcomes: every
/// replica computes the same one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The job was created with this id, or, with `duplicate`, an earlier job with the same
    /// idempotency key has it.
    Submitted {
        /// Cluster-assigned id.
        id: JobId,
        /// The idempotency key matched an earlier submit; nothing was created.
        duplicate: bool,
    },
    /// The node's registration was recorded; `released` leases of its previous run ended.
    NodeRegistered {
        /// Leases of the previous run that were ended.
        released: u32,
    },
    /// Jobs granted by a lease (possibly none).
    Leased(Vec<Grant>),
    /// The worker's leases after a heartbeat: (job, token, expires_ms).
    Heartbeated(Vec<(JobId, u64, u64)>),
    /// An attempt ended; the job is now in `state`.
    Completed {
        /// New state.
        state: JobState,
    },
    /// A command on one job succeeded; the job is now in `state`.
    Done {
        /// New state.
        state: JobState,
    },
    /// Queue settings changed, or settings replaced.
    Ok,
    /// A bulk operation: the jobs changed, and how many were skipped.
    Bulk {
        /// Changed, in the order given.
        changed: Vec<JobId>,
        /// Not in a state the action takes.
        skipped: u64,
    },
    /// Dead jobs removed.
    Purged {
        /// How many.
        count: u64,
    },
    /// A workflow was created with this id.
    WorkflowSubmitted {
        /// Cluster-assigned id.
        id: WorkflowId,
    },
    /// A workflow operation succeeded; the workflow is now in `state`.
    WorkflowChanged {
        /// New state.
        state: WorkflowState,
    },
    /// A lock was granted or renewed.
    LockGranted {
        /// Fencing token (strictly increasing per resource).
        token: u64,
        /// Expiry, state-machine time.
        expires_ms: u64,
    },
    /// No unit of the resource is free.
    LockBusy {
        /// The resource's capacity.
        capacity: u32,
        /// Earliest expiry of a lock held, if any.
        next_expiry_ms: Option<u64>,
    },
    /// A schedule was created.
    ScheduleCreated {
        /// Its id.
        id: super::schedule::ScheduleId,
        /// Its first tick.
        next_fire_ms: Option<u64>,
    },
    /// A schedule operation succeeded; `started` runs were started by it.
    ScheduleChanged {
        /// Runs started (trigger, backfill).
        started: u32,
    },
    /// A timer was created.
    TimerCreated {
        /// Its id.
        id: u64,
        /// When it fires.
        due_ms: u64,
    },
    /// A trigger was created.
    TriggerCreated {
        /// Its id.
        id: super::events::TriggerId,
    },
    /// An event was emitted.
    Emitted {
        /// What it started.
        started: super::events::Started,
        /// The dedup key was seen within the window: nothing started.
        duplicate: bool,
    },
    /// One response per command of a [`Command::Batch`], in order.
    Batch(Vec<Response>),
    /// Due work processed by a Tick.
    Ticked {
        /// Items processed.
        work: u32,
    },
    /// A Raft-internal entry (blank or membership) with no application response.
    #[default]
    Internal,
    /// The command was refused and changed nothing.
    Rejected(Rejection),
    /// A webhook was created.
    WebhookCreated {
        /// Its id.
        id: super::webhooks::WebhookId,
    },
    /// A delivery was queued (`webhook test`).
    WebhookQueued {
        /// Its id.
        delivery: super::webhooks::DeliveryId,
    },
    /// A cursor was put; its new version (0 after a delete).
    CursorPut {
        /// The version.
        version: u64,
    },
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
    /// The job does not exist (never did, or was purged).
    NotFound {
        /// The job id.
        job_id: JobId,
    },
    /// Something other than a job does not exist (a workflow).
    Missing {
        /// What, e.g. `workflow 7`.
        what: String,
    },
    /// The command does not apply to the job as it is: a stale fencing token, a job already
    /// finished, a lease held by someone else.
    Precondition {
        /// What does not hold.
        message: String,
    },
    /// A limit of `limits.rs` is reached.
    Exhausted {
        /// Which limit, and its value.
        message: String,
    },
}

/// What every transition may read besides its own subsystem's state: state-machine time and
/// the settings in force. Copied into each call, so a subsystem holds no reference to the
/// machine.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// State-machine time of the command being applied.
    pub now_ms: u64,
    /// Cluster-wide settings.
    pub settings: Settings,
}

impl Rejection {
    /// The one constructor for "field X is invalid because Y".
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Rejection {
        Rejection::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The one range check: `value` within `min..=max`, or a rejection naming the field and the
/// range.
pub fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), Rejection> {
    if value < min || value > max {
        return Err(Rejection::invalid(
            field,
            format!("is {value}, must be {min}..={max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
impl Ctx {
    /// The context of a test at `now_ms` with the default settings.
    pub fn at(now_ms: u64) -> Ctx {
        Ctx {
            now_ms,
            settings: Settings::default(),
        }
    }
}

/// A rejection naming the field at fault, as a response.
pub(super) fn invalid(field: &str, message: impl Into<String>) -> Response {
    Response::Rejected(Rejection::invalid(field, message))
}

/// A rejection for a command that does not apply to the state as it is.
pub(super) fn precondition(message: impl Into<String>) -> Response {
    Response::Rejected(Rejection::Precondition {
        message: message.into(),
    })
}

/// A rejection for a limit reached.
pub(super) fn exhausted(message: impl Into<String>) -> Response {
    Response::Rejected(Rejection::Exhausted {
        message: message.into(),
    })
}
