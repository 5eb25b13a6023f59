//! Jobs: what a client submits ([`JobSpec`]), what the state machine keeps ([`Job`]), and the
//! checks every field passes before it is proposed (and again when applied).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{in_range, Rejection};
use super::limits;

/// Cluster-assigned job id: a sequence number assigned in log order, so it is the same on
/// every replica and increases with submission order.
pub type JobId = u64;

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// A process started by a node's worker: argv[0] is the program.
    Shell {
        /// Program and arguments.
        argv: Vec<String>,
        /// Extra environment variables.
        env: BTreeMap<String, String>,
        /// Working directory; the worker's own when `None`.
        cwd: Option<String>,
    },
    /// An opaque payload for an external worker that leases jobs over gRPC.
    External {
        /// Bytes handed to the worker as is.
        #[serde(with = "crate::machine::codec::bytes")]
        payload: Vec<u8>,
    },
}

/// Retry backoff: attempt n (1-based) waits `min(cap, base * factor^(n-1))`, and with jitter
/// a uniformly drawn share of it between one half and all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base_ms: u64,
    /// Growth per further failure.
    pub factor: u32,
    /// Largest delay.
    pub cap_ms: u64,
    /// Draw the delay from [delay/2, delay] with a PRNG seeded by (job id, attempt).
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1_000,
            factor: 2,
            cap_ms: 16_000,
            jitter: true,
        }
    }
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Queue name, `[A-Za-z0-9_.-]{1,128}`.
    pub queue: String,
    /// 1..=10, 10 most urgent.
    pub priority: u32,
    /// What to run.
    pub kind: JobKind,
    /// Attempts before the job is dead-lettered.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Longest run of one attempt; the worker kills it past this (a transient failure).
    pub timeout_ms: Option<u64>,
    /// Lease time-to-live; a worker heartbeats every ttl/3 to keep it.
    pub lease_ttl_ms: u64,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// Capabilities a worker must offer to lease the job.
    pub required_capabilities: Vec<String>,
    /// Exit codes that mean "do not retry": the job goes straight to dead letters.
    pub permanent_exit_codes: Vec<i32>,
    /// A repeat submit with the same key within the window returns the first job.
    pub idempotency_key: Option<String>,
    /// SLA deadline (ms since the epoch): a job unfinished by then is flagged and counted.
    pub deadline_ms: Option<u64>,
    /// Resources the job needs while it runs (all acquired with its lease).
    pub resources: Vec<super::resources::Need>,
}

impl JobSpec {
    /// Whether the job runs a command (a node's executor can run it).
    pub fn is_shell(&self) -> bool {
        matches!(self.kind, JobKind::Shell { .. })
    }

    /// Rough encoded size: the variable-length fields.
    pub fn weight(&self) -> usize {
        let strings = |v: &[String]| v.iter().map(|s| s.len() + 8).sum::<usize>();
        let kind = match &self.kind {
            JobKind::Shell { argv, env, cwd } => {
                strings(argv)
                    + env
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 16)
                        .sum::<usize>()
                    + cwd.as_ref().map_or(0, String::len)
            }
            JobKind::External { payload } => payload.len(),
        };
        self.queue.len()
            + kind
            + strings(&self.tags)
            + strings(&self.required_capabilities)
            + self.idempotency_key.as_ref().map_or(0, String::len)
            + self
                .resources
                .iter()
                .map(|n| n.resource.len() + 8)
                .sum::<usize>()
    }

    /// A spec with every option at its default.
    pub fn new(queue: impl Into<String>, kind: JobKind) -> JobSpec {
        JobSpec {
            queue: queue.into(),
            priority: limits::PRIORITY_DEFAULT,
            kind,
            max_attempts: limits::MAX_ATTEMPTS_DEFAULT,
            backoff: Backoff::default(),
            timeout_ms: None,
            lease_ttl_ms: limits::LEASE_TTL_MS_DEFAULT,
            tags: Vec::new(),
            required_capabilities: Vec::new(),
            permanent_exit_codes: Vec::new(),
            idempotency_key: None,
            deadline_ms: None,
            resources: Vec::new(),
        }
    }

    /// A shell job with default options.
    pub fn shell(queue: impl Into<String>, argv: &[&str]) -> JobSpec {
        JobSpec::new(
            queue,
            JobKind::Shell {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                env: BTreeMap::new(),
                cwd: None,
            },
        )
    }

    /// Bytes this spec takes in a lease response (roughly: its variable-size fields).
    pub fn size_bytes(&self) -> usize {
        let kind = match &self.kind {
            JobKind::Shell { argv, env, cwd } => {
                argv.iter().map(String::len).sum::<usize>()
                    + env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                    + cwd.as_ref().map_or(0, String::len)
            }
            JobKind::External { payload } => payload.len(),
        };
        256 + self.queue.len() + kind + self.tags.iter().map(String::len).sum::<usize>()
    }
}

/// Where a job is in its lifecycle.
///
/// `scheduled` (waiting for `run_at` or a retry backoff) → `ready` → `leased` → `succeeded`,
/// or back to `scheduled` after a transient failure while attempts remain, or `dead` (dead
/// letters) after a permanent failure or the last attempt; `cancelled` by an operator. A failed
/// attempt is recorded on the job (outcome `failed`) rather than being a state a job rests in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for its time (delay, run_at, retry backoff).
    Scheduled,
    /// In its queue's ready index, waiting to be leased.
    Ready,
    /// Held by a worker under a lease.
    Leased,
    /// Finished successfully (terminal).
    Succeeded,
    /// Dead-lettered: failed permanently or ran out of attempts (terminal until requeued).
    Dead,
    /// Cancelled by an operator (terminal until requeued).
    Cancelled,
}

impl JobState {
    /// Every state, in order; index with `as usize`.
    pub const ALL: [JobState; 6] = [
        JobState::Scheduled,
        JobState::Ready,
        JobState::Leased,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// Lower-case name used in the API and CLI.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Ready => "ready",
            JobState::Leased => "leased",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a name from [`JobState::name`].
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the job is finished (no worker will run it unless it is requeued).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }
}

/// Why an attempt ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Retried with backoff while attempts remain (non-zero exit not listed as permanent, or
    /// reported transient by a worker).
    Transient,
    /// Not retried: straight to dead letters.
    Permanent,
    /// Ran past its timeout and was killed (transient).
    Timeout,
    /// The lease expired or its node restarted (transient).
    LostLease,
    /// Handed back by a worker shutting down; not counted as an attempt.
    Released,
    /// Cancelled by an operator while running.
    Cancelled,
}

impl ErrorClass {
    /// Lower-case name used in the API and CLI.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Timeout => "timeout",
            ErrorClass::LostLease => "lost_lease",
            ErrorClass::Released => "released",
            ErrorClass::Cancelled => "cancelled",
        }
    }
}

/// How an attempt ended, as reported by its worker or decided by the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `None` for success.
    pub error_class: Option<ErrorClass>,
    /// Process exit code, for shell jobs that exited.
    pub exit_code: Option<i32>,
    /// Error description (bounded).
    pub error: String,
    /// End of stdout/stderr (bounded).
    pub output_tail: String,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based attempt number over the job's whole life.
    pub number: u32,
    /// Fencing token of the lease this attempt ran under.
    pub token: u64,
    /// Worker that held the lease.
    pub worker: String,
    /// Node whose executor ran it, for node-local workers.
    pub node: Option<u64>,
    /// Lease grant time.
    pub started_ms: u64,
    /// End time, once ended.
    pub ended_ms: Option<u64>,
    /// How it ended, once ended.
    pub outcome: Option<Outcome>,
}

/// The process run of a node, for leases held by a node's own executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRun {
    /// Node id.
    pub node_id: u64,
    /// Incarnation of the node process.
    pub incarnation: u64,
}

/// A live lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Fencing token: strictly increasing across all grants.
    pub token: u64,
    /// Holder.
    pub worker: String,
    /// Node process of a node-local worker.
    pub node: Option<NodeRun>,
    /// Expiry in state-machine time.
    pub expires_ms: u64,
    /// Lease length, reapplied by each heartbeat.
    pub ttl_ms: u64,
}

/// A job held by the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Cluster-assigned id.
    pub id: JobId,
    /// The definition (changed only by a requeue with new parameters).
    pub spec: JobSpec,
    /// State-machine time of the submit.
    pub created_ms: u64,
    /// Lifecycle state.
    pub state: JobState,
    /// When a `scheduled` job becomes ready.
    pub run_at_ms: u64,
    /// Rank in the ready index: enqueue time pushed back by lower priority (priority aging).
    pub rank: u64,
    /// Enqueue sequence number: FIFO among equal ranks.
    pub seq: u64,
    /// Attempts started since submit or the last requeue (counted against `max_attempts`).
    pub attempts_used: u32,
    /// Attempts started over the job's whole life.
    pub attempts_total: u32,
    /// The newest attempt records (at most `ATTEMPTS_KEPT_MAX`).
    pub attempts: Vec<Attempt>,
    /// The live lease, exactly when `leased`.
    pub lease: Option<Lease>,
    /// The last checkpoint a worker stored, handed to the next attempt.
    #[serde(with = "crate::machine::codec::opt_bytes")]
    pub checkpoint: Option<Vec<u8>>,
    /// When the job reached a terminal state.
    pub finished_ms: Option<u64>,
    /// Last error, for dead and failed jobs.
    pub error: Option<String>,
    /// The SLA deadline passed while the job was unfinished.
    pub deadline_missed: bool,
    /// When a terminal job is removed (retention).
    pub purge_at_ms: Option<u64>,
    /// The workflow step the job runs, for step and compensation jobs.
    pub step: Option<super::workflow::StepRef>,
    /// Links of event-triggered work that led to this job (0 when submitted directly).
    pub depth: u8,
}

impl Job {
    /// A new job, scheduled for `run_at_ms`, with no attempt, lease or step.
    pub fn new(id: JobId, spec: JobSpec, created_ms: u64, run_at_ms: u64) -> Job {
        Job {
            id,
            spec,
            created_ms,
            state: JobState::Scheduled,
            run_at_ms,
            rank: 0,
            seq: 0,
            attempts_used: 0,
            attempts_total: 0,
            attempts: Vec::new(),
            lease: None,
            checkpoint: None,
            finished_ms: None,
            error: None,
            deadline_missed: false,
            purge_at_ms: None,
            step: None,
            depth: 0,
        }
    }
}

/// Checks a queue name: `[A-Za-z0-9_.-]{1,128}`.
pub fn validate_queue_name(field: &str, queue: &str) -> Result<(), Rejection> {
    validate_name(field, queue, limits::QUEUE_NAME_BYTES_MAX)
}

/// Checks a name (queue, tag, capability, worker id): non-empty, bounded, `[A-Za-z0-9_.:-]`.
pub fn validate_name(field: &str, name: &str, max: usize) -> Result<(), Rejection> {
    if name.is_empty() {
        return Err(Rejection::invalid(field, "must not be empty"));
    }
    if name.len() > max {
        return Err(Rejection::invalid(
            field,
            format!("is {} bytes, the limit is {max}", name.len()),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Rejection::invalid(
            field,
            format!("has the character {c:?}; allowed are A-Z a-z 0-9 _ . -"),
        ));
    }
    Ok(())
}

fn validate_names(field: &str, names: &[String], count_max: usize) -> Result<(), Rejection> {
    if names.len() > count_max {
        return Err(Rejection::invalid(
            field,
            format!("has {} entries, the limit is {count_max}", names.len()),
        ));
    }
    for (i, n) in names.iter().enumerate() {
        validate_name(&format!("{field}[{i}]"), n, limits::TAG_BYTES_MAX)?;
    }
    Ok(())
}

impl JobSpec {
    /// Checks every field against its rule and limit. Run by the server before proposing and
    /// again by apply, so a bad spec can never enter the state even if a check is skipped.
    pub fn validate(&self) -> Result<(), Rejection> {
        if self.resources.len() > limits::RESOURCES_PER_JOB_MAX {
            return Err(Rejection::invalid(
                "resources",
                format!(
                    "has {} entries, the limit is {}",
                    self.resources.len(),
                    limits::RESOURCES_PER_JOB_MAX
                ),
            ));
        }
        for (i, need) in self.resources.iter().enumerate() {
            let field = format!("resources[{i}]");
            need.validate(&field)?;
            if self.resources[..i]
                .iter()
                .any(|n| n.resource == need.resource)
            {
                return Err(Rejection::invalid(
                    &field,
                    format!("{} is listed twice", need.resource),
                ));
            }
        }
        validate_queue_name("queue", &self.queue)?;
        in_range(
            "priority",
            self.priority.into(),
            limits::PRIORITY_MIN.into(),
            limits::PRIORITY_MAX.into(),
        )?;
        self.validate_kind()?;
        in_range(
            "max_attempts",
            self.max_attempts.into(),
            1,
            limits::MAX_ATTEMPTS_MAX.into(),
        )?;
        in_range(
            "backoff.base_ms",
            self.backoff.base_ms,
            0,
            limits::BACKOFF_MS_MAX,
        )?;
        in_range(
            "backoff.factor",
            self.backoff.factor.into(),
            1,
            limits::BACKOFF_FACTOR_MAX.into(),
        )?;
        in_range(
            "backoff.cap_ms",
            self.backoff.cap_ms,
            self.backoff.base_ms,
            limits::BACKOFF_MS_MAX,
        )?;
        if let Some(t) = self.timeout_ms {
            in_range("timeout_ms", t, 1, limits::TIMEOUT_MS_MAX)?;
        }
        in_range(
            "lease_ttl_ms",
            self.lease_ttl_ms,
            limits::LEASE_TTL_MS_MIN,
            limits::LEASE_TTL_MS_MAX,
        )?;
        validate_names("tags", &self.tags, limits::TAGS_MAX)?;
        validate_names(
            "required_capabilities",
            &self.required_capabilities,
            limits::CAPABILITIES_MAX,
        )?;
        if self.permanent_exit_codes.len() > 256 {
            return Err(Rejection::invalid(
                "permanent_exit_codes",
                "has more than 256 entries",
            ));
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > limits::IDEMPOTENCY_KEY_BYTES_MAX {
                return Err(Rejection::invalid(
                    "idempotency_key",
                    format!(
                        "is {} bytes, must be 1..={}",
                        key.len(),
                        limits::IDEMPOTENCY_KEY_BYTES_MAX
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_kind(&self) -> Result<(), Rejection> {
        match &self.kind {
            JobKind::Shell { argv, env, cwd } => {
                validate_argv(argv)?;
                if env.len() > limits::ENV_VARS_MAX {
                    return Err(Rejection::invalid(
                        "shell.env",
                        format!(
                            "has {} variables, the limit is {}",
                            env.len(),
                            limits::ENV_VARS_MAX
                        ),
                    ));
                }
                let bytes: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
                if bytes > limits::ENV_BYTES_MAX {
                    return Err(Rejection::invalid(
                        "shell.env",
                        format!("is {bytes} bytes, the limit is {}", limits::ENV_BYTES_MAX),
                    ));
                }
                for k in env.keys() {
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        return Err(Rejection::invalid(
                            "shell.env",
                            format!("{k:?} is not a variable name"),
                        ));
                    }
                }
                if env.values().any(|v| v.contains('\0')) {
                    return Err(Rejection::invalid(
                        "shell.env",
                        "a value contains a NUL byte",
                    ));
                }
                if let Some(cwd) = cwd {
                    if cwd.is_empty() || cwd.len() > limits::CWD_BYTES_MAX || cwd.contains('\0') {
                        return Err(Rejection::invalid(
                            "shell.cwd",
                            format!("must be 1..={} bytes without NUL", limits::CWD_BYTES_MAX),
                        ));
                    }
                }
            }
            JobKind::External { payload } => {
                if payload.len() > limits::PAYLOAD_BYTES_MAX {
                    return Err(Rejection::invalid(
                        "payload",
                        format!(
                            "is {} bytes, the limit is {}",
                            payload.len(),
                            limits::PAYLOAD_BYTES_MAX
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn validate_argv(argv: &[String]) -> Result<(), Rejection> {
    if argv.is_empty() {
        return Err(Rejection::invalid(
            "shell.argv",
            "must name a program (argv is empty)",
        ));
    }
    if argv[0].is_empty() {
        return Err(Rejection::invalid(
            "shell.argv[0]",
            "program name must not be empty",
        ));
    }
    if argv.len() > limits::ARGV_ITEMS_MAX {
        return Err(Rejection::invalid(
            "shell.argv",
            format!(
                "has {} items, the limit is {}",
                argv.len(),
                limits::ARGV_ITEMS_MAX
            ),
        ));
    }
    let bytes: usize = argv.iter().map(String::len).sum();
    if bytes > limits::ARGV_BYTES_MAX {
        return Err(Rejection::invalid(
            "shell.argv",
            format!(
                "is {bytes} bytes in total, the limit is {}",
                limits::ARGV_BYTES_MAX
            ),
        ));
    }
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        return Err(Rejection::invalid(
            format!("shell.argv[{i}]"),
            "contains a NUL byte",
        ));
    }
    Ok(())
}

/// Keeps the last `max` bytes of `text`, cut on a character boundary.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<(), Rejection>) -> String {
        match r {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// Each rule rejects with the field it is about, and a good spec passes.
    #[test]
    fn validate_names_the_field() {
        assert_eq!(
            JobSpec::shell("q-1.a_b", &["echo", "hi"]).validate(),
            Ok(())
        );
        assert_eq!(field_of(JobSpec::shell("", &["echo"]).validate()), "queue");
        assert_eq!(
            field_of(JobSpec::shell("a b", &["echo"]).validate()),
            "queue"
        );
        assert_eq!(
            field_of(JobSpec::shell("q".repeat(129), &["echo"]).validate()),
            "queue"
        );
        assert_eq!(
            JobSpec::shell("q".repeat(128), &["echo"]).validate(),
            Ok(())
        );
        assert_eq!(field_of(JobSpec::shell("q", &[]).validate()), "shell.argv");
        assert_eq!(
            field_of(JobSpec::shell("q", &[""]).validate()),
            "shell.argv[0]"
        );
        let big = "x".repeat(limits::ARGV_BYTES_MAX);
        assert_eq!(
            field_of(JobSpec::shell("q", &["echo", &big]).validate()),
            "shell.argv"
        );
        type Change = Box<dyn Fn(&mut JobSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.priority = 11), "priority"),
            (Box::new(|s| s.priority = 0), "priority"),
            (Box::new(|s| s.max_attempts = 0), "max_attempts"),
            (Box::new(|s| s.timeout_ms = Some(0)), "timeout_ms"),
            (Box::new(|s| s.lease_ttl_ms = 10), "lease_ttl_ms"),
            (Box::new(|s| s.backoff.factor = 0), "backoff.factor"),
            (Box::new(|s| s.backoff.cap_ms = 1), "backoff.cap_ms"),
            (Box::new(|s| s.tags = vec!["a b".into()]), "tags[0]"),
            (
                Box::new(|s| s.required_capabilities = vec!["".into()]),
                "required_capabilities[0]",
            ),
            (
                Box::new(|s| s.idempotency_key = Some(String::new())),
                "idempotency_key",
            ),
        ];
        for (change, field) in cases {
            let mut spec = JobSpec::shell("q", &["echo"]);
            change(&mut spec);
            assert_eq!(field_of(spec.validate()), field);
        }
        let ext = JobSpec::new(
            "q",
            JobKind::External {
                payload: vec![0; limits::PAYLOAD_BYTES_MAX + 1],
            },
        );
        assert_eq!(field_of(ext.validate()), "payload");
    }

    /// The tail keeps the end of the text and never splits a character.
    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail("hello", 10), "hello");
        assert_eq!(tail("hello", 3), "llo");
        assert_eq!(tail("héllo", 4), "llo");
    }
}
