//! The job lifecycle: every command that changes jobs, and the helpers that move a job between
//! states while keeping the indexes in step.

use super::backoff::retry_delay_ms;
use super::command::{Grant, JobChanges, Rejection, Report, Response, Settings, WorkerRef};
use super::job::{
    tail, validate_name, validate_queue_name, Attempt, ErrorClass, Job, JobId, JobKind, JobSpec,
    JobState, Lease, Outcome,
};
use super::{limits, Machine, NodeRecord};

/// A rejection naming the field at fault.
pub(super) fn invalid(field: &str, message: impl Into<String>) -> Response {
    Response::Rejected(Rejection::Invalid {
        field: field.into(),
        message: message.into(),
    })
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

impl Machine {
    /// Changes a job through `f`, keeping the indexes in step.
    fn update<T>(&mut self, id: JobId, f: impl FnOnce(&mut Job) -> T) -> T {
        let job = self.jobs.get_mut(&id).expect("update of an unknown job");
        self.index.remove(job);
        let result = f(job);
        self.index.add(job);
        result
    }

    fn remove_job(&mut self, id: JobId) {
        let job = self.jobs.remove(&id).expect("removal of an unknown job");
        self.index.remove(&job);
    }

    /// Rank in the ready index for a job of `priority` that becomes ready now.
    fn rank(&self, priority: u32) -> u64 {
        let levels = u64::from(limits::PRIORITY_MAX - priority.min(limits::PRIORITY_MAX));
        self.now_ms
            .saturating_add(levels.saturating_mul(self.settings.priority_aging_ms))
    }

    fn make_ready(&mut self, id: JobId) {
        let priority = self.jobs[&id].spec.priority;
        let rank = self.rank(priority);
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = self.now_ms;
        self.update(id, |job| {
            job.state = JobState::Ready;
            job.rank = rank;
            job.seq = seq;
            // Ready early (a retry now): the start time shown is when it became ready.
            job.run_at_ms = job.run_at_ms.min(now);
        });
    }

    fn finish(&mut self, id: JobId, state: JobState, error: Option<String>) {
        assert!(state.is_terminal(), "finish into {state:?}");
        let now = self.now_ms;
        let retention = if state == JobState::Dead {
            self.settings.dead_retention_ms
        } else {
            self.settings.finished_retention_ms
        };
        self.update(id, |job| {
            job.state = state;
            job.lease = None;
            job.finished_ms = Some(now);
            job.purge_at_ms = Some(now.saturating_add(retention));
            // A success clears the error of earlier failed attempts (they keep their own).
            job.error = error;
        });
        if let Some(link) = self.jobs[&id].step {
            self.step_job_finished(link, id);
        }
        // No allocation on the hot path unless someone subscribed to a topic.
        if !self.topics.is_empty() {
            let depth = self.jobs.get(&id).map_or(0, |j| j.depth);
            self.transition_event(
                &format!("job.{}", state.name()),
                format!("job:{id}:{now}"),
                depth,
            );
        }
    }

    /// Closes the open attempt of a leased job. The job keeps its lease and state `Leased`
    /// until the caller moves it on (the index files a leased job under its lease, so both
    /// change in one update).
    fn end_attempt(&mut self, id: JobId, outcome: Outcome) {
        let now = self.now_ms;
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
            attempt.ended_ms = Some(now);
            attempt.outcome = Some(outcome);
        });
    }

    /// After a failed attempt: dead-letter it (permanent, or out of attempts), or schedule
    /// the retry after its backoff.
    fn after_failure(&mut self, id: JobId, class: ErrorClass, error: String) {
        let job = &self.jobs[&id];
        if class == ErrorClass::Permanent || job.attempts_used >= job.spec.max_attempts {
            let why = if class == ErrorClass::Permanent {
                format!("permanent failure: {error}")
            } else {
                format!("{} attempts failed; last: {error}", job.attempts_used)
            };
            self.finish(id, JobState::Dead, Some(why));
            return;
        }
        let delay = retry_delay_ms(&job.spec.backoff, id, job.attempts_used);
        let run_at = self.now_ms.saturating_add(delay);
        self.update(id, |job| {
            job.state = JobState::Scheduled;
            job.lease = None;
            job.run_at_ms = run_at;
            job.error = Some(error);
        });
    }

    /// Ends a lease as lost (expired, or its node restarted): a transient failure.
    fn lose_lease(&mut self, id: JobId, why: &str) {
        if !self.controls.is_empty() {
            let queue = self.jobs[&id].spec.queue.clone();
            self.queue_outcome(&queue, id, false);
        }
        self.end_attempt(
            id,
            Outcome {
                error_class: Some(ErrorClass::LostLease),
                exit_code: None,
                error: why.to_string(),
                output_tail: String::new(),
            },
        );
        self.after_failure(id, ErrorClass::LostLease, why.to_string());
    }

    /// Adds a job, valid and within limits, scheduled for `run_at` (ready at once when due),
    /// linked to a workflow step if `step` is set. Returns its id.
    pub(super) fn insert_job(
        &mut self,
        spec: &JobSpec,
        run_at: u64,
        step: Option<super::workflow::StepRef>,
    ) -> JobId {
        let now = self.now_ms;
        let id = self.next_job_id;
        self.next_job_id += 1;
        let job = Job {
            id,
            spec: spec.clone(),
            created_ms: now,
            state: JobState::Scheduled,
            run_at_ms: run_at,
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
            step,
            depth: 0,
        };
        self.index.add(&job);
        let previous = self.jobs.insert(id, job);
        assert!(previous.is_none(), "job id {id} assigned twice");
        if run_at <= now {
            self.make_ready(id);
        }
        id
    }

    pub(super) fn submit(
        &mut self,
        spec: &JobSpec,
        delay_ms: u64,
        run_at_ms: Option<u64>,
    ) -> Response {
        if let Err(rejection) = spec.validate() {
            return Response::Rejected(rejection);
        }
        if delay_ms > limits::DELAY_MS_MAX {
            return invalid(
                "delay_ms",
                format!("is {delay_ms}, the limit is {}", limits::DELAY_MS_MAX),
            );
        }
        // DELAY_MS_MAX bounds absolute times too, measured from state-machine time.
        let horizon = self.now_ms.saturating_add(limits::DELAY_MS_MAX);
        for (field, at) in [("run_at_ms", run_at_ms), ("deadline_ms", spec.deadline_ms)] {
            if let Some(at) = at.filter(|at| *at > horizon) {
                return invalid(
                    field,
                    format!("is {at}, more than DELAY_MS_MAX after now (limit {horizon})"),
                );
            }
        }
        if let Err(r) = self.check_needs("", spec) {
            return r;
        }
        if let Some(key) = &spec.idempotency_key {
            if let Some((id, _)) = self.idempotency.get(key) {
                return Response::Submitted {
                    id: *id,
                    duplicate: true,
                };
            }
        }
        if self.jobs.len() >= limits::JOBS_MAX {
            return exhausted(format!(
                "the cluster holds {} jobs, the limit (JOBS_MAX)",
                limits::JOBS_MAX
            ));
        }
        if self.index.bytes + spec.weight() as u64 > limits::JOBS_BYTES_MAX {
            return exhausted(format!(
                "the jobs held take about {} bytes, the limit (JOBS_BYTES_MAX {})",
                self.index.bytes,
                limits::JOBS_BYTES_MAX
            ));
        }
        let (stats, _) = self.queue(&spec.queue);
        if stats.total() >= limits::QUEUE_JOBS_MAX {
            return exhausted(format!(
                "queue {} holds {} jobs, the limit (QUEUE_JOBS_MAX)",
                spec.queue,
                limits::QUEUE_JOBS_MAX
            ));
        }
        if stats.total() == 0 && self.queue_names().len() >= limits::QUEUES_MAX {
            return exhausted(format!(
                "{} queues exist, the limit (QUEUES_MAX)",
                limits::QUEUES_MAX
            ));
        }
        let now = self.now_ms;
        let run_at = run_at_ms.unwrap_or(now.saturating_add(delay_ms));
        let id = self.insert_job(spec, run_at, None);
        if let Some(key) = &spec.idempotency_key {
            let expires = now.saturating_add(self.settings.idempotency_window_ms);
            self.idempotency.insert(key.clone(), (id, expires));
            self.idempotency_expiry.insert((expires, key.clone()));
        }
        Response::Submitted {
            id,
            duplicate: false,
        }
    }

    pub(super) fn register_node(&mut self, node_id: u64, incarnation: u64) -> Response {
        let now = self.now_ms;
        if !self.nodes.contains_key(&node_id) && self.nodes.len() >= limits::NODES_MAX {
            return exhausted(format!(
                "{} nodes registered, the limit (NODES_MAX)",
                limits::NODES_MAX
            ));
        }
        let record = self.nodes.entry(node_id).or_insert(NodeRecord {
            incarnation,
            first_registered_ms: now,
            registered_ms: now,
        });
        record.incarnation = incarnation;
        record.registered_ms = now;
        let stale: Vec<JobId> = self
            .index
            .lease_expiry
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| {
                self.jobs[id]
                    .lease
                    .as_ref()
                    .and_then(|l| l.node)
                    .is_some_and(|run| run.node_id == node_id && run.incarnation != incarnation)
            })
            .collect();
        for id in &stale {
            self.lose_lease(*id, &format!("node {node_id} restarted"));
        }
        Response::NodeRegistered {
            released: stale.len() as u32,
        }
    }

    fn validate_worker(&self, worker: &str) -> Result<(), Response> {
        validate_name("worker", worker, limits::WORKER_ID_BYTES_MAX).map_err(Response::Rejected)
    }

    pub(super) fn lease(
        &mut self,
        worker: &WorkerRef,
        queues: &[String],
        capabilities: &[String],
        max: u32,
        ttl_ms: Option<u64>,
    ) -> Response {
        if let Err(r) = self.validate_worker(&worker.id) {
            return r;
        }
        if let Some(run) = worker.node {
            // A lease asked for by a node's previous run, applied after its new run registered,
            // would hold a job until expiry for a process that is gone.
            if let Some(record) = self.nodes.get(&run.node_id) {
                if run.incarnation < record.incarnation {
                    return precondition(format!(
                        "node {} incarnation {} was replaced by incarnation {}",
                        run.node_id, run.incarnation, record.incarnation
                    ));
                }
            }
        }
        if !(1..=limits::LEASE_BATCH_MAX).contains(&max) {
            return invalid(
                "max",
                format!("is {max}, must be 1..={}", limits::LEASE_BATCH_MAX),
            );
        }
        if let Some(ttl) = ttl_ms {
            if !(limits::LEASE_TTL_MS_MIN..=limits::LEASE_TTL_MS_MAX).contains(&ttl) {
                return invalid(
                    "ttl_ms",
                    format!(
                        "is {ttl}, must be {}..={}",
                        limits::LEASE_TTL_MS_MIN,
                        limits::LEASE_TTL_MS_MAX
                    ),
                );
            }
        }
        if queues.len() > limits::LEASE_QUEUES_MAX {
            return invalid(
                "queues",
                format!("names more than {}", limits::LEASE_QUEUES_MAX),
            );
        }
        for (i, q) in queues.iter().enumerate() {
            if let Err(r) = validate_queue_name(&format!("queues[{i}]"), q) {
                return Response::Rejected(r);
            }
        }
        if capabilities.len() > limits::CAPABILITIES_MAX {
            return invalid(
                "capabilities",
                format!("names more than {}", limits::CAPABILITIES_MAX),
            );
        }
        let queues: Vec<String> = if queues.is_empty() {
            self.index.ready.keys().cloned().collect()
        } else {
            queues.to_vec()
        };
        let mut grants = Vec::new();
        let mut bytes = 0;
        while grants.len() < max as usize && bytes < limits::LEASE_RESPONSE_BYTES_MAX {
            let Some(id) = self.best_ready(&queues, capabilities, worker.node.is_some()) else {
                break;
            };
            let grant = self.grant(id, worker, ttl_ms);
            bytes += grant.spec.size_bytes() + grant.checkpoint.as_ref().map_or(0, Vec::len);
            grants.push(grant);
        }
        Response::Leased(grants)
    }

    /// The ready job that leases next among `queues`: the smallest key among each unpaused
    /// queue's first job (within `LEASE_SCAN_MAX`) whose required capabilities are offered.
    /// A node's own executor (`shell_only`) runs shell jobs only; external jobs wait for an
    /// external worker.
    pub(super) fn best_ready(
        &self,
        queues: &[String],
        capabilities: &[String],
        shell_only: bool,
    ) -> Option<JobId> {
        let mut best: Option<(u64, u64, JobId)> = None;
        for queue in queues {
            if self.paused.contains(queue) || !self.queue_open(queue) {
                continue;
            }
            let Some(ready) = self.index.ready.get(queue) else {
                continue;
            };
            let candidate = ready
                .iter()
                .take(limits::LEASE_SCAN_MAX)
                .find(|(_, _, id)| {
                    let spec = &self.jobs[id].spec;
                    let runnable = !shell_only || matches!(spec.kind, JobKind::Shell { .. });
                    runnable
                        && spec
                            .required_capabilities
                            .iter()
                            .all(|c| capabilities.contains(c))
                        && self.fits(&self.jobs[id])
                });
            if let Some(key) = candidate {
                if best.is_none_or(|b| *key < b) {
                    best = Some(*key);
                }
            }
        }
        best.map(|(_, _, id)| id)
    }

    fn grant(&mut self, id: JobId, worker: &WorkerRef, ttl_ms: Option<u64>) -> Grant {
        let token = self.next_token;
        self.next_token += 1;
        let now = self.now_ms;
        let (grant, link) = self.update(id, |job| {
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
            let grant = Grant {
                job_id: id,
                token,
                attempt: job.attempts_total,
                expires_ms,
                ttl_ms: ttl,
                spec: job.spec.clone(),
                checkpoint: job.checkpoint.clone(),
            };
            (grant, job.step)
        });
        if let Some(link) = link {
            self.step_job_leased(link, id);
        }
        self.queue_leased(&grant.spec.queue, id);
        grant
    }

    pub(super) fn heartbeat(&mut self, worker: &str) -> Response {
        if let Err(r) = self.validate_worker(worker) {
            return r;
        }
        let ids: Vec<JobId> = self
            .index
            .worker_leases
            .get(worker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let now = self.now_ms;
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

    /// Checks that `token` is the live lease of job `id`.
    #[cfg_attr(feature = "bug-skip-fencing", allow(unreachable_patterns))]
    fn check_lease(&self, id: JobId, token: u64) -> Result<(), Response> {
        let job = self
            .jobs
            .get(&id)
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

    pub(super) fn complete(&mut self, id: JobId, token: u64, report: &Report) -> Response {
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
        let permanent_exit = report
            .exit_code
            .is_some_and(|c| self.jobs[&id].spec.permanent_exit_codes.contains(&c));
        let class = match report.error_class {
            Some(_) if permanent_exit => Some(ErrorClass::Permanent),
            other => other,
        };
        let error = tail(&report.error, limits::ERROR_BYTES_MAX);
        if !self.controls.is_empty() {
            let queue = self.jobs[&id].spec.queue.clone();
            self.queue_outcome(&queue, id, class.is_none());
        }
        self.end_attempt(
            id,
            Outcome {
                error_class: class,
                exit_code: report.exit_code,
                error: error.clone(),
                output_tail: tail(&report.output_tail, limits::OUTPUT_TAIL_BYTES_MAX),
            },
        );
        match class {
            None => self.finish(id, JobState::Succeeded, None),
            Some(class) => self.after_failure(id, class, error),
        }
        Response::Completed {
            state: self.jobs[&id].state,
        }
    }

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

    pub(super) fn release(&mut self, id: JobId, token: u64) -> Response {
        if let Err(r) = self.check_lease(id, token) {
            return r;
        }
        self.end_attempt(
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
        self.make_ready(id);
        Response::Done {
            state: JobState::Ready,
        }
    }

    pub(super) fn cancel(&mut self, id: JobId) -> Response {
        let Some(job) = self.jobs.get(&id) else {
            return Response::Rejected(Rejection::NotFound { job_id: id });
        };
        if job.state.is_terminal() {
            return precondition(format!("job {id} is already {}", job.state.name()));
        }
        if job.state == JobState::Leased {
            self.end_attempt(
                id,
                Outcome {
                    error_class: Some(ErrorClass::Cancelled),
                    exit_code: None,
                    error: "cancelled while running".into(),
                    output_tail: String::new(),
                },
            );
        }
        self.finish(id, JobState::Cancelled, Some("cancelled".into()));
        // A bug planted for the model test, off unless a test turns it on (planted.rs).
        #[cfg(test)]
        super::planted::after_cancel(&mut self.index, &self.jobs[&id]);
        Response::Done {
            state: JobState::Cancelled,
        }
    }

    pub(super) fn requeue(&mut self, id: JobId, changes: &JobChanges) -> Response {
        let Some(job) = self.jobs.get(&id) else {
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
        self.make_ready(id);
        Response::Done {
            state: JobState::Ready,
        }
    }

    pub(super) fn pause_queue(&mut self, queue: &str, paused: bool) -> Response {
        if let Err(r) = validate_queue_name("queue", queue) {
            return Response::Rejected(r);
        }
        if paused {
            let known = self.index.queues.contains_key(queue) || self.paused.contains(queue);
            if !known && self.queue_names().len() >= limits::QUEUES_MAX {
                return exhausted(format!("{} queues exist, the limit", limits::QUEUES_MAX));
            }
            self.paused.insert(queue.to_string());
        } else {
            self.paused.remove(queue);
        }
        Response::Ok
    }

    pub(super) fn purge_dead(&mut self, queue: Option<&str>) -> Response {
        let ids: Vec<JobId> = match queue {
            Some(q) => self
                .index
                .dead
                .get(q)
                .into_iter()
                .flatten()
                .copied()
                .collect(),
            None => self.index.dead.values().flatten().copied().collect(),
        };
        let count = ids.len().min(limits::PURGE_BATCH_MAX);
        for id in ids.into_iter().take(count) {
            self.remove_job(id);
        }
        Response::Purged {
            count: count as u64,
        }
    }

    pub(super) fn configure(&mut self, settings: &Settings) -> Response {
        let day = 24 * 3_600_000;
        let checks = [
            (
                "dead_retention_ms",
                settings.dead_retention_ms,
                60_000,
                3_650 * day,
            ),
            (
                "finished_retention_ms",
                settings.finished_retention_ms,
                0,
                3_650 * day,
            ),
            (
                "idempotency_window_ms",
                settings.idempotency_window_ms,
                1_000,
                365 * day,
            ),
            (
                "priority_aging_ms",
                settings.priority_aging_ms,
                1,
                365 * day,
            ),
        ];
        for (field, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return invalid(field, format!("is {value}, must be {min}..={max}"));
            }
        }
        self.settings = *settings;
        Response::Ok
    }

    /// Processes everything due at `now_ms`, at most `TICK_WORK_MAX` items.
    pub(super) fn tick(&mut self) -> Response {
        let now = self.now_ms;
        let mut work = 0;
        while work < limits::TICK_WORK_MAX {
            if let Some(&(at, id)) = self.index.scheduled.first().filter(|(t, _)| *t <= now) {
                debug_assert!(at <= now);
                self.make_ready(id);
            } else if let Some(&(_, id)) =
                self.index.lease_expiry.first().filter(|(t, _)| *t <= now)
            {
                self.lose_lease(id, "lease expired (worker gone or too slow to heartbeat)");
            } else if let Some(&(_, id)) = self.index.deadlines.first().filter(|(t, _)| *t <= now) {
                self.update(id, |job| job.deadline_missed = true);
            } else if let Some(&(_, id)) = self.index.purge.first().filter(|(t, _)| *t <= now) {
                self.remove_job(id);
            } else if let Some((at, name, token)) = self
                .lock_expiry
                .first()
                .filter(|(t, _, _)| *t <= now)
                .cloned()
            {
                self.drop_lock(at, &name, token);
            } else if self.fire_timer()
                || self.tick_controls()
                || self.tick_schedules()
                || self.expire_event_key()
            {
            } else if let Some(&(at, id)) = self.workflow_purge.first().filter(|(t, _)| *t <= now) {
                self.purge_workflow(at, id);
            } else if let Some((at, key)) = self
                .idempotency_expiry
                .first()
                .filter(|(t, _)| *t <= now)
                .cloned()
            {
                self.idempotency_expiry.remove(&(at, key.clone()));
                self.idempotency.remove(&key);
            } else {
                break;
            }
            work += 1;
        }
        Response::Ticked { work: work as u32 }
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
