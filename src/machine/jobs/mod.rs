//! The jobs subsystem: every job held, the indexes over them, and idempotency keys.
//!
//! It owns the job lifecycle: a job moves between states only through the methods here, which
//! keep the indexes in step (`update` takes a job out of the index, changes it and puts it
//! back). It knows nothing of workflows, queue controls, resources or events: what they need
//! to hear goes out as [`Effect`]s (`JobLeased`, `JobFinished`, `AttemptEnded`), which
//! [`super::Machine`] hands to them, and what a lease must ask of them (a paused queue, a
//! resource with room) is decided by the machine before it calls [`Jobs::grant`].
//!
//! ## Invariants ([`Jobs::check_invariants`])
//!
//! - Every job id is below `next_id`; every token below `next_token`.
//! - The indexes equal the ones rebuilt from the jobs alone.
//! - A job has a lease exactly when it is `leased`; its newest attempt carries that token and
//!   is open; no other attempt is open; tokens of its attempts increase.
//! - `attempts_used <= attempts_total`, and no more than `max_attempts` attempts are used.
//! - Terminal jobs have `finished_ms`; others do not.
//! - Every idempotency key has exactly one expiry entry.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::backoff::retry_delay_ms;
use super::command::{
    invalid, precondition, Ctx, Grant, JobChanges, Rejection, Report, Response, WorkerRef,
};
use super::effect::Effect;
use super::index::{Index, QueueStats};
use super::job::{
    tail, Attempt, ErrorClass, Job, JobId, JobKind, JobSpec, JobState, Lease, Outcome,
};
use super::keys::ExpiringKeys;
use super::limits;
use super::store::JobRecords;
use super::workflow::StepRef;

mod check;
mod dead;
mod tier;

pub use dead::DeadLetter;

/// The jobs subsystem: every job held, its indexes, and idempotency keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jobs {
    /// Next job id to assign.
    next_id: JobId,
    /// Next enqueue sequence number (FIFO tie-break in the ready index).
    next_seq: u64,
    /// Next fencing token.
    next_token: u64,
    /// Every job held, by id.
    records: JobRecords,
    /// Indexes over `records`.
    index: Index,
    /// Idempotency key -> first job, until the window passes.
    idempotency: ExpiringKeys<JobId>,
    /// Jobs finished during the apply under way, to move to the cold tier at its end.
    #[serde(skip)]
    retiring: Vec<JobId>,
}

impl Jobs {
    /// No jobs; ids, sequence numbers and tokens start at 1.
    pub fn new() -> Jobs {
        Jobs {
            next_id: 1,
            next_seq: 1,
            next_token: 1,
            ..Jobs::default()
        }
    }

    /// A job by id.
    pub fn get(&self, id: JobId) -> Option<Cow<'_, Job>> {
        self.records.get(id)
    }

    /// Number of jobs held in memory (live ones, and finished ones when there is no cold
    /// tier): what `JOBS_MAX` bounds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no job is held in memory.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Number of jobs held, in memory and in the cold tier.
    pub fn total(&self) -> u64 {
        self.index.queues.values().map(QueueStats::total).sum()
    }

    /// Every job in id order, after `after`.
    pub fn after(&self, after: JobId) -> impl Iterator<Item = Cow<'_, Job>> + '_ {
        self.records.after(after)
    }

    /// The job records (the cold tier and the index applied, for the node).
    pub fn records(&self) -> &JobRecords {
        &self.records
    }

    /// The job records, to attach a cold tier or set the index applied.
    pub fn records_mut(&mut self) -> &mut JobRecords {
        &mut self.records
    }

    /// The id the next job gets, and the next fencing token.
    pub fn next_ids(&self) -> (JobId, u64) {
        (self.next_id, self.next_token)
    }

    /// Idempotency keys held: key -> (job, expiry).
    pub fn idempotency_keys(&self) -> &ExpiringKeys<JobId> {
        &self.idempotency
    }

    /// The indexes (read-only: other subsystems and the machine's queries read them).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Counters of a queue (zero when it holds no job).
    pub fn stats(&self, queue: &str) -> QueueStats {
        self.index.queues.get(queue).cloned().unwrap_or_default()
    }

    /// Whether a queue has ready jobs.
    pub fn has_ready(&self, queue: &str) -> bool {
        self.index.ready.get(queue).is_some_and(|r| !r.is_empty())
    }

    /// Earliest time a job-side timer falls due (start, lease expiry, deadline, purge,
    /// idempotency key expiry).
    pub fn next_due(&self) -> Option<u64> {
        let idem = self.idempotency.next_due();
        let cold = self.records.cold_purge_first().map(|(t, _)| t);
        [self.index.next_due(), idem, cold]
            .into_iter()
            .flatten()
            .min()
    }

    /// Changes a job through `f`, keeping the indexes in step.
    fn update<T>(&mut self, id: JobId, f: impl FnOnce(&mut Job) -> T) -> T {
        self.warm(id);
        let job = self.records.get_mut(id).expect("update of an unknown job");
        self.index.remove(job);
        let result = f(job);
        self.index.add(job);
        result
    }

    /// Removes a job (purged).
    fn remove(&mut self, id: JobId) {
        if let Some(job) = self.records.remove(id) {
            self.index.remove(&job);
        } else {
            let job = self
                .records
                .take_cold(id)
                .expect("removal of an unknown job");
            self.index.remove_counts(&job);
        }
    }

    /// Removes a finished job now (a bulk purge); `Done` with the state it had, or a
    /// rejection for a job that is unknown or not finished.
    pub(super) fn purge_finished(&mut self, id: JobId) -> Response {
        let Some(state) = self.get(id).map(|j| j.state) else {
            return Response::Rejected(Rejection::NotFound { job_id: id });
        };
        if !state.is_terminal() {
            return precondition(format!("job {id} is {}, not finished", state.name()));
        }
        self.remove(id);
        Response::Done { state }
    }

    /// Removes job `id` whose retention ended at `t`: from the cold tier by its purge note
    /// when it is there (the job itself is not read), otherwise as [`Jobs::remove`].
    fn purge(&mut self, t: u64, id: JobId) {
        if self.records.hot(id).is_none() {
            if let Some(note) = self.records.purge_cold(t, id) {
                self.index
                    .remove_counts_of(&note.queue, note.state, note.deadline_missed);
                return;
            }
        }
        self.remove(id);
    }

    /// Sets the event-chain depth of a job started by an event.
    pub(super) fn set_depth(&mut self, id: JobId, depth: u8) {
        self.records
            .get_mut(id)
            .expect("job of a started event")
            .depth = depth;
    }

    /// Rank in the ready index for a job of `priority` that becomes ready now.
    fn rank(ctx: Ctx, priority: u32) -> u64 {
        let levels = u64::from(limits::PRIORITY_MAX - priority.min(limits::PRIORITY_MAX));
        ctx.now_ms
            .saturating_add(levels.saturating_mul(ctx.settings.priority_aging_ms))
    }

    fn make_ready(&mut self, ctx: Ctx, id: JobId) {
        let rank = Jobs::rank(ctx, self.records.expect(id).spec.priority);
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = ctx.now_ms;
        self.update(id, |job| {
            job.state = JobState::Ready;
            job.rank = rank;
            job.seq = seq;
            // Ready early (a retry now): the start time shown is when it became ready.
            job.run_at_ms = job.run_at_ms.min(now);
        });
    }

    fn finish(
        &mut self,
        ctx: Ctx,
        fx: &mut Vec<Effect>,
        id: JobId,
        state: JobState,
        error: Option<String>,
    ) {
        assert!(state.is_terminal(), "finish into {state:?}");
        let now = ctx.now_ms;
        let retention = if state == JobState::Dead {
            ctx.settings.dead_retention_ms
        } else {
            ctx.settings.finished_retention_ms
        };
        self.update(id, |job| {
            job.state = state;
            job.lease = None;
            job.finished_ms = Some(now);
            job.purge_at_ms = Some(now.saturating_add(retention));
            // A success clears the error of earlier failed attempts (they keep their own).
            job.error = error;
        });
        self.retiring.push(id);
        fx.push(Effect::JobFinished { id, state });
    }

    /// Closes the open attempt of a leased job. The job keeps its lease and state `Leased`
    /// until the caller moves it on (the index files a leased job under its lease, so both
    /// change in one update).
    fn end_attempt(&mut self, ctx: Ctx, id: JobId, outcome: Outcome) {
        self.update(id, |job| {
            let token = job
                .lease
                .as_ref()
                .expect("end_attempt without a lease")
                .token;
            let attempt = job
                .attempts
                .iter_mut()
                .rev()
                .find(|a| a.token == token)
                .expect("open attempt of the lease");
            attempt.ended_ms = Some(ctx.now_ms);
            attempt.outcome = Some(outcome);
        });
    }

    /// After a failed attempt: dead-letter it (permanent, or out of attempts), or schedule
    /// the retry after its backoff.
    fn after_failure(
        &mut self,
        ctx: Ctx,
        fx: &mut Vec<Effect>,
        id: JobId,
        class: ErrorClass,
        error: String,
    ) {
        let job = &self.records.expect(id);
        if class == ErrorClass::Permanent || job.attempts_used >= job.spec.max_attempts {
            let why = if class == ErrorClass::Permanent {
                format!("permanent failure: {error}")
            } else {
                format!("{} attempts failed; last: {error}", job.attempts_used)
            };
            self.finish(ctx, fx, id, JobState::Dead, Some(why));
            return;
        }
        let delay = retry_delay_ms(&job.spec.backoff, id, job.attempts_used);
        let run_at = ctx.now_ms.saturating_add(delay);
        self.update(id, |job| {
            job.state = JobState::Scheduled;
            job.lease = None;
            job.run_at_ms = run_at;
            job.error = Some(error);
        });
    }

    /// Ends a lease as lost (expired, or its node restarted): a transient failure.
    pub(super) fn lose_lease(&mut self, ctx: Ctx, fx: &mut Vec<Effect>, id: JobId, why: &str) {
        fx.push(Effect::AttemptEnded { id, ok: false });
        self.end_attempt(
            ctx,
            id,
            Outcome {
                error_class: Some(ErrorClass::LostLease),
                exit_code: None,
                error: why.to_string(),
                output_tail: String::new(),
            },
        );
        self.after_failure(ctx, fx, id, ErrorClass::LostLease, why.to_string());
    }

    /// Adds a job, valid and within limits, scheduled for `run_at` (ready at once when due),
    /// linked to a workflow step if `step` is set. Returns its id.
    pub(super) fn insert(
        &mut self,
        ctx: Ctx,
        spec: &JobSpec,
        run_at: u64,
        step: Option<StepRef>,
    ) -> JobId {
        let now = ctx.now_ms;
        let id = self.next_id;
        self.next_id += 1;
        let mut job = Job::new(id, spec.clone(), now, run_at);
        job.step = step;
        self.index.add(&job);
        let previous = self.records.insert(job);
        assert!(previous.is_none(), "job id {id} assigned twice");
        if run_at <= now {
            self.make_ready(ctx, id);
        }
        id
    }

    /// The job an idempotency key already maps to, within its window.
    pub(super) fn duplicate(&self, spec: &JobSpec) -> Option<JobId> {
        let key = spec.idempotency_key.as_ref()?;
        self.idempotency.get(key).copied()
    }

    /// Adds a checked job submitted by a client (or started by a schedule or trigger) and
    /// records its idempotency key.
    pub(super) fn submit(
        &mut self,
        ctx: Ctx,
        spec: &JobSpec,
        delay_ms: u64,
        run_at_ms: Option<u64>,
    ) -> JobId {
        let now = ctx.now_ms;
        let run_at = run_at_ms.unwrap_or(now.saturating_add(delay_ms));
        let id = self.insert(ctx, spec, run_at, None);
        if let Some(key) = &spec.idempotency_key {
            let expires = now.saturating_add(ctx.settings.idempotency_window_ms);
            self.idempotency.insert(key.clone(), id, expires);
        }
        id
    }

    /// The first ready job of `queue` (within `LEASE_SCAN_MAX`) that a worker offering
    /// `capabilities` may run (`shell_only`: a node's own executor runs shell jobs only) and
    /// that `fits` (resources), as its ready key.
    pub(super) fn first_leasable(
        &self,
        queue: &str,
        capabilities: &[String],
        shell_only: bool,
        fits: impl Fn(&Job) -> bool,
    ) -> Option<(u64, u64, JobId)> {
        // A node's executor looks among the shell jobs only (their own index), so external
        // jobs waiting ahead cost it nothing.
        let ready = if shell_only {
            self.index.ready_shell.get(queue)?
        } else {
            self.index.ready.get(queue)?
        };
        ready
            .iter()
            .take(limits::LEASE_SCAN_MAX)
            .find(|(_, _, id)| {
                let job = &self.records.expect(*id);
                let spec = &job.spec;
                spec.required_capabilities
                    .iter()
                    .all(|c| capabilities.contains(c))
                    && fits(job)
            })
            .copied()
    }

    /// Leases a ready job to `worker` under the next fencing token.
    pub(super) fn grant(
        &mut self,
        ctx: Ctx,
        fx: &mut Vec<Effect>,
        id: JobId,
        worker: &WorkerRef,
        ttl_ms: Option<u64>,
    ) -> Grant {
        let token = self.next_token;
        self.next_token += 1;
        let now = ctx.now_ms;
        let grant = self.update(id, |job| {
            let ttl = ttl_ms.unwrap_or(job.spec.lease_ttl_ms);
            let expires_ms = now.saturating_add(ttl);
            job.state = JobState::Leased;
            job.lease = Some(Lease {
                token,
                worker: worker.id.clone(),
                node: worker.node,
                expires_ms,
                ttl_ms: ttl,
            });
            job.attempts_used += 1;
            job.attempts_total += 1;
            job.attempts.push(Attempt {
                number: job.attempts_total,
                token,
                worker: worker.id.clone(),
                node: worker.node.map(|n| n.node_id),
                started_ms: now,
                ended_ms: None,
                outcome: None,
            });
            if job.attempts.len() > limits::ATTEMPTS_KEPT_MAX {
                job.attempts.remove(0);
            }
            Grant {
                job_id: id,
                token,
                attempt: job.attempts_total,
                expires_ms,
                ttl_ms: ttl,
                spec: job.spec.clone(),
                checkpoint: job.checkpoint.clone(),
            }
        });
        fx.push(Effect::JobLeased { id });
        grant
    }

    /// Extends every lease of a worker by its ttl.
    pub(super) fn heartbeat(&mut self, ctx: Ctx, worker: &str) -> Response {
        if let Err(r) = Jobs::check_worker(worker) {
            return r;
        }
        let ids: Vec<JobId> = self
            .index
            .worker_leases
            .get(worker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let now = ctx.now_ms;
        let held = ids
            .into_iter()
            .map(|id| {
                self.update(id, |job| {
                    let lease = job.lease.as_mut().expect("indexed lease");
                    lease.expires_ms = now.saturating_add(lease.ttl_ms);
                    (id, lease.token, lease.expires_ms)
                })
            })
            .collect();
        Response::Heartbeated(held)
    }

    /// Leases a worker holds: (job, token).
    pub fn leases_of(&self, worker: &str) -> Vec<(JobId, u64)> {
        self.index
            .worker_leases
            .get(worker)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                let lease = self.records.hot(*id)?.lease.as_ref()?;
                Some((*id, lease.token))
            })
            .collect()
    }

    /// Leased jobs of node `node_id` granted to a run other than `incarnation`.
    pub(super) fn leases_of_other_runs(&self, node_id: u64, incarnation: u64) -> Vec<JobId> {
        self.index
            .lease_expiry
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| {
                self.records
                    .expect(*id)
                    .lease
                    .as_ref()
                    .and_then(|l| l.node)
                    .is_some_and(|run| run.node_id == node_id && run.incarnation != incarnation)
            })
            .collect()
    }

    /// Checks that `token` is the live lease of job `id`.
    #[cfg_attr(feature = "bug-skip-fencing", allow(unreachable_patterns))]
    fn check_lease(&self, id: JobId, token: u64) -> Result<(), Response> {
        let job = self
            .records
            .get(id)
            .ok_or(Response::Rejected(Rejection::NotFound { job_id: id }))?;
        match &job.lease {
            Some(lease) if lease.token == token => Ok(()),
            // The deliberate bug of the `bug-skip-fencing` test feature (see Cargo.toml).
            #[cfg(feature = "bug-skip-fencing")]
            Some(_) => Ok(()),
            Some(lease) => Err(precondition(format!(
                "stale fencing token {token}: job {id} is leased under token {}",
                lease.token
            ))),
            None => Err(precondition(format!(
                "stale fencing token {token}: job {id} is {}, not leased",
                job.state.name()
            ))),
        }
    }

    /// Ends the attempt of lease `token` as the worker reports it.
    pub(super) fn complete(
        &mut self,
        ctx: Ctx,
        fx: &mut Vec<Effect>,
        id: JobId,
        token: u64,
        report: &Report,
    ) -> Response {
        if let Err(r) = self.check_lease(id, token) {
            return r;
        }
        if matches!(
            report.error_class,
            Some(ErrorClass::LostLease | ErrorClass::Released | ErrorClass::Cancelled)
        ) {
            return invalid(
                "error_class",
                "a worker reports transient, permanent or timeout",
            );
        }
        let permanent_exit = report.exit_code.is_some_and(|c| {
            self.records
                .expect(id)
                .spec
                .permanent_exit_codes
                .contains(&c)
        });
        let class = match report.error_class {
            Some(_) if permanent_exit => Some(ErrorClass::Permanent),
            other => other,
        };
        let error = tail(&report.error, limits::ERROR_BYTES_MAX);
        fx.push(Effect::AttemptEnded {
            id,
            ok: class.is_none(),
        });
        self.end_attempt(
            ctx,
            id,
            Outcome {
                error_class: class,
                exit_code: report.exit_code,
                error: error.clone(),
                output_tail: tail(&report.output_tail, limits::OUTPUT_TAIL_BYTES_MAX),
            },
        );
        match class {
            None => self.finish(ctx, fx, id, JobState::Succeeded, None),
            Some(class) => self.after_failure(ctx, fx, id, class, error),
        }
        Response::Completed {
            state: self.records.expect(id).state,
        }
    }

    /// Stores a leased job's checkpoint.
    pub(super) fn checkpoint(&mut self, id: JobId, token: u64, data: &[u8]) -> Response {
        if data.len() > limits::CHECKPOINT_BYTES_MAX {
            return invalid(
                "data",
                format!(
                    "is {} bytes, the limit is {}",
                    data.len(),
                    limits::CHECKPOINT_BYTES_MAX
                ),
            );
        }
        if let Err(r) = self.check_lease(id, token) {
            return r;
        }
        self.update(id, |job| job.checkpoint = Some(data.to_vec()));
        Response::Done {
            state: JobState::Leased,
        }
    }

    /// A worker hands a lease back: the attempt does not count, the job is ready again.
    pub(super) fn release(&mut self, ctx: Ctx, id: JobId, token: u64) -> Response {
        if let Err(r) = self.check_lease(id, token) {
            return r;
        }
        self.end_attempt(
            ctx,
            id,
            Outcome {
                error_class: Some(ErrorClass::Released),
                exit_code: None,
                error: "handed back by its worker".into(),
                output_tail: String::new(),
            },
        );
        // The job leaves `Leased` in the same update that drops the lease (the index files a
        // leased job under its lease); `make_ready` moves it on at once.
        self.update(id, |job| {
            job.state = JobState::Scheduled;
            job.lease = None;
            job.attempts_used -= 1;
        });
        self.make_ready(ctx, id);
        Response::Done {
            state: JobState::Ready,
        }
    }

    /// Cancels a job that has not ended (a running attempt ends as cancelled).
    pub(super) fn cancel(&mut self, ctx: Ctx, fx: &mut Vec<Effect>, id: JobId) -> Response {
        let Some(job) = self.records.get(id) else {
            return Response::Rejected(Rejection::NotFound { job_id: id });
        };
        if job.state.is_terminal() {
            return precondition(format!("job {id} is already {}", job.state.name()));
        }
        if job.state == JobState::Leased {
            self.end_attempt(
                ctx,
                id,
                Outcome {
                    error_class: Some(ErrorClass::Cancelled),
                    exit_code: None,
                    error: "cancelled while running".into(),
                    output_tail: String::new(),
                },
            );
        }
        self.finish(ctx, fx, id, JobState::Cancelled, Some("cancelled".into()));
        // A bug planted for the model test, off unless a test turns it on (planted.rs).
        #[cfg(test)]
        super::planted::after_cancel(&mut self.index, &self.records.expect(id));
        Response::Done {
            state: JobState::Cancelled,
        }
    }

    /// Runs a scheduled, dead or cancelled job again now, with changed parameters.
    pub(super) fn requeue(&mut self, ctx: Ctx, id: JobId, changes: &JobChanges) -> Response {
        let Some(job) = self.records.get(id) else {
            return Response::Rejected(Rejection::NotFound { job_id: id });
        };
        if !matches!(
            job.state,
            JobState::Scheduled | JobState::Dead | JobState::Cancelled
        ) {
            return precondition(format!(
                "job {id} is {}; only scheduled, dead or cancelled jobs can be retried",
                job.state.name()
            ));
        }
        if let Some(link) = job.step {
            return precondition(format!(
                "job {id} runs a step of workflow {}; retry the step with `dag retry`",
                link.workflow
            ));
        }
        let mut spec = job.spec.clone();
        if let Err(r) = apply_changes(&mut spec, changes) {
            return r;
        }
        if let Err(rejection) = spec.validate() {
            return Response::Rejected(rejection);
        }
        let restart = job.state.is_terminal();
        // A scheduled job keeps the attempts it used, so its next lease must stay in budget.
        if !restart && spec.max_attempts <= job.attempts_used {
            return invalid(
                "max_attempts",
                format!(
                    "is {}, but job {id} has used {} attempts and would run again",
                    spec.max_attempts, job.attempts_used
                ),
            );
        }
        self.update(id, |job| {
            job.spec = spec;
            if restart {
                job.state = JobState::Scheduled;
                job.attempts_used = 0;
                job.finished_ms = None;
                job.purge_at_ms = None;
                job.error = None;
            }
        });
        self.make_ready(ctx, id);
        Response::Done {
            state: JobState::Ready,
        }
    }

    /// Removes dead jobs of a queue (or all), at most `PURGE_BATCH_MAX`.
    pub(super) fn purge_dead(&mut self, queue: Option<&str>) -> Response {
        let ids = self.dead(queue, None, limits::PURGE_BATCH_MAX);
        let count = ids.len();
        for (_, id) in ids {
            self.remove(id);
        }
        Response::Purged {
            count: count as u64,
        }
    }

    /// Does one item of job-side work due by now, in order: a scheduled start, a lease
    /// expiry, a missed deadline, a purge. Returns whether it did any.
    pub(super) fn tick_one(&mut self, ctx: Ctx, fx: &mut Vec<Effect>) -> bool {
        let now = ctx.now_ms;
        if let Some(&(_, id)) = self.index.scheduled.first().filter(|(t, _)| *t <= now) {
            self.make_ready(ctx, id);
        } else if let Some(&(_, id)) = self.index.lease_expiry.first().filter(|(t, _)| *t <= now) {
            self.lose_lease(
                ctx,
                fx,
                id,
                "lease expired (worker gone or too slow to heartbeat)",
            );
        } else if let Some(&(_, id)) = self.index.deadlines.first().filter(|(t, _)| *t <= now) {
            self.update(id, |job| job.deadline_missed = true);
            fx.push(Effect::DeadlineMissed { id });
        } else if let Some((t, id)) = [
            self.index.purge.first().copied(),
            self.records.cold_purge_first(),
        ]
        .into_iter()
        .flatten()
        .min()
        .filter(|(t, _)| *t <= now)
        {
            self.purge(t, id);
        } else {
            return false;
        }
        true
    }

    /// Forgets one idempotency key whose window passed; returns whether it did.
    pub(super) fn expire_key(&mut self, now_ms: u64) -> bool {
        self.idempotency.expire_one(now_ms)
    }
}

fn apply_changes(spec: &mut JobSpec, changes: &JobChanges) -> Result<(), Response> {
    if let Some(p) = changes.priority {
        spec.priority = p;
    }
    if let Some(m) = changes.max_attempts {
        spec.max_attempts = m;
    }
    if changes.argv.is_none() && changes.env.is_none() {
        return Ok(());
    }
    let JobKind::Shell { argv, env, .. } = &mut spec.kind else {
        return Err(invalid("argv", "the job is not a shell job"));
    };
    if let Some(new_argv) = &changes.argv {
        *argv = new_argv.clone();
    }
    for (k, v) in changes.env.iter().flatten() {
        env.insert(k.clone(), v.clone());
    }
    Ok(())
}
