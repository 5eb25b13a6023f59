//! The generated gRPC types, and every conversion between wire and domain types.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::machine::controls::{BreakerConfig, QueueControl, QueuePolicy, Rate};
use crate::machine::resources::{Need, ResourceView};
use crate::machine::{
    limits, Attempt, Backoff, Condition, Dependency, ErrorClass, FailurePolicy, Grant, Job,
    JobChanges, JobKind, JobSpec, JobState, QueueStats, Report, StepSpec, Workflow, WorkflowOp,
    WorkflowSpec, WorkflowState,
};

/// Generated from `proto/raftline/v1/*.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("raftline.v1");
}

fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
}

/// A submit request as the machine's command arguments: (spec, delay_ms, run_at_ms). Field
/// checks happen in [`JobSpec::validate`]; zero values mean "the default".
pub fn submit(req: pb::SubmitRequest) -> Result<(JobSpec, u64, Option<u64>), Error> {
    let kind = match req.kind {
        Some(pb::submit_request::Kind::Shell(shell)) => JobKind::Shell {
            argv: shell.argv,
            env: shell.env.into_iter().collect(),
            cwd: (!shell.cwd.is_empty()).then_some(shell.cwd),
        },
        Some(pb::submit_request::Kind::Payload(payload)) => JobKind::External { payload },
        None => return Err(invalid("kind", "set either shell (argv) or payload")),
    };
    let mut spec = JobSpec::new(req.queue, kind);
    if req.priority != 0 {
        spec.priority = req.priority;
    }
    if req.max_attempts != 0 {
        spec.max_attempts = req.max_attempts;
    }
    if let Some(b) = req.backoff {
        spec.backoff = Backoff {
            base_ms: b.base_ms,
            factor: b.factor,
            cap_ms: b.cap_ms,
            jitter: !b.no_jitter,
        };
    }
    spec.timeout_ms = req.timeout_ms;
    if req.lease_ttl_ms != 0 {
        spec.lease_ttl_ms = req.lease_ttl_ms;
    }
    spec.idempotency_key = (!req.idempotency_key.is_empty()).then_some(req.idempotency_key);
    spec.tags = req.tags;
    spec.required_capabilities = req.required_capabilities;
    spec.permanent_exit_codes = req.permanent_exit_codes;
    spec.deadline_ms = req.deadline_ms;
    spec.resources = req
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| Need::parse(&format!("resources[{i}]"), r))
        .collect::<Result<_, _>>()?;
    Ok((spec, req.delay_ms, req.run_at_ms))
}

/// A retry request as job changes.
pub fn changes(req: &pb::RetryJobRequest) -> JobChanges {
    JobChanges {
        argv: (!req.argv.is_empty()).then(|| req.argv.clone()),
        env: (!req.env.is_empty()).then(|| {
            let sorted: BTreeMap<_, _> = req.env.clone().into_iter().collect();
            sorted.into_iter().collect()
        }),
        priority: req.priority,
        max_attempts: req.max_attempts,
    }
}

/// A worker's completion as a report.
pub fn report(req: &pb::CompleteRequest) -> Result<Report, Error> {
    let error_class = if req.success {
        None
    } else {
        Some(match req.error_class.as_str() {
            "" | "transient" => ErrorClass::Transient,
            "permanent" => ErrorClass::Permanent,
            "timeout" => ErrorClass::Timeout,
            other => {
                return Err(invalid(
                    "error_class",
                    &format!("{other:?} is not one of transient, permanent, timeout"),
                ))
            }
        })
    };
    Ok(Report {
        error_class,
        exit_code: req.exit_code,
        error: req.error.clone(),
        output_tail: req.output_tail.clone(),
    })
}

/// Parses a state name for list filters.
pub fn state(name: &str) -> Result<Option<JobState>, Error> {
    if name.is_empty() {
        return Ok(None);
    }
    JobState::parse(name).map(Some).ok_or_else(|| {
        invalid(
            "state",
            &format!("{name:?} is not one of scheduled, ready, leased, succeeded, dead, cancelled"),
        )
    })
}

fn shell(kind: &JobKind) -> pb::job::Kind {
    match kind {
        JobKind::Shell { argv, env, cwd } => pb::job::Kind::Shell(pb::ShellCommand {
            argv: argv.clone(),
            env: env.clone().into_iter().collect(),
            cwd: cwd.clone().unwrap_or_default(),
        }),
        JobKind::External { payload } => pb::job::Kind::Payload(payload.clone()),
    }
}

fn attempt(a: &Attempt) -> pb::Attempt {
    let outcome = a.outcome.as_ref();
    pb::Attempt {
        number: a.number,
        token: a.token,
        worker: a.worker.clone(),
        node: a.node,
        started_ms: a.started_ms,
        ended_ms: a.ended_ms,
        result: match outcome {
            None => "running",
            Some(o) if o.error_class.is_none() => "succeeded",
            Some(_) => "failed",
        }
        .into(),
        error_class: outcome
            .and_then(|o| o.error_class)
            .map_or("", ErrorClass::name)
            .into(),
        exit_code: outcome.and_then(|o| o.exit_code),
        error: outcome.map(|o| o.error.clone()).unwrap_or_default(),
        output_tail: outcome.map(|o| o.output_tail.clone()).unwrap_or_default(),
    }
}

/// The wire fields that come from a job's definition alone.
fn from_spec(id: u64, s: &JobSpec) -> pb::Job {
    pb::Job {
        id,
        queue: s.queue.clone(),
        priority: s.priority,
        kind: Some(shell(&s.kind)),
        max_attempts: s.max_attempts,
        tags: s.tags.clone(),
        required_capabilities: s.required_capabilities.clone(),
        permanent_exit_codes: s.permanent_exit_codes.clone(),
        timeout_ms: s.timeout_ms,
        lease_ttl_ms: s.lease_ttl_ms,
        deadline_ms: s.deadline_ms,
        idempotency_key: s.idempotency_key.clone().unwrap_or_default(),
        resources: s.resources.iter().map(Need::text).collect(),
        ..Default::default()
    }
}

/// A job as sent to clients.
pub fn job(job: &Job) -> pb::Job {
    pb::Job {
        created_ms: job.created_ms,
        state: job.state.name().to_string(),
        attempts_used: job.attempts_used,
        attempts_total: job.attempts_total,
        attempts: job.attempts.iter().map(attempt).collect(),
        run_at_ms: job.run_at_ms,
        finished_ms: job.finished_ms,
        error: job.error.clone().unwrap_or_default(),
        deadline_missed: job.deadline_missed,
        lease_token: job.lease.as_ref().map(|l| l.token),
        lease_worker: job
            .lease
            .as_ref()
            .map(|l| l.worker.clone())
            .unwrap_or_default(),
        lease_expires_ms: job.lease.as_ref().map(|l| l.expires_ms),
        has_checkpoint: job.checkpoint.is_some(),
        ..from_spec(job.id, &job.spec)
    }
}

/// A lease grant as sent to a worker (built from the grant alone: a follower serving the call
/// may not have applied the lease yet).
pub fn leased(grant: &Grant) -> pb::LeasedJob {
    let job = pb::Job {
        state: JobState::Leased.name().to_string(),
        attempts_total: grant.attempt,
        lease_token: Some(grant.token),
        lease_expires_ms: Some(grant.expires_ms),
        has_checkpoint: grant.checkpoint.is_some(),
        ..from_spec(grant.job_id, &grant.spec)
    };
    pb::LeasedJob {
        job: Some(job),
        token: grant.token,
        attempt: grant.attempt,
        expires_ms: grant.expires_ms,
        ttl_ms: grant.ttl_ms,
        checkpoint: grant.checkpoint.clone(),
    }
}

/// A queue's counters, policy and breaker.
pub fn queue(
    name: &str,
    stats: &QueueStats,
    paused: bool,
    control: Option<&QueueControl>,
) -> pb::QueueInfo {
    let c = |s: JobState| stats.counts[s as usize];
    let policy = control.map(|c| c.policy).unwrap_or_default();
    let rate = policy.rate;
    let breaker = policy.breaker;
    let state = control.filter(|_| breaker.is_some()).map(|c| c.breaker);
    pb::QueueInfo {
        rate_count: rate.map_or(0, |r| r.count),
        rate_per_ms: rate.map_or(0, |r| r.per_ms),
        concurrency: policy.concurrency.unwrap_or(0),
        breaker_threshold_pct: breaker.map_or(0, |b| b.threshold_pct),
        breaker_window: breaker.map_or(0, |b| b.window),
        breaker_cooldown_ms: breaker.map_or(0, |b| b.cooldown_ms),
        breaker_state: state.map_or("", |s| s.name()).into(),
        breaker_open_until_ms: match state {
            Some(crate::machine::controls::BreakerState::Open { until_ms }) => Some(until_ms),
            _ => None,
        },
        breaker_transitions: control
            .map(|c| {
                c.transitions
                    .iter()
                    .map(|(at, s)| pb::BreakerTransition {
                        at_ms: *at,
                        state: s.name().into(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        recent_failures: control.map_or(0, |c| c.outcomes.iter().filter(|o| !**o).count() as u32),
        recent_outcomes: control.map_or(0, |c| c.outcomes.len() as u32),
        queue: name.to_string(),
        paused,
        scheduled: c(JobState::Scheduled),
        ready: c(JobState::Ready),
        leased: c(JobState::Leased),
        succeeded: c(JobState::Succeeded),
        dead: c(JobState::Dead),
        cancelled: c(JobState::Cancelled),
        deadline_missed: stats.deadline_missed,
    }
}

/// Clamps a list limit: 0 means 100.
pub fn list_limit(limit: u32) -> usize {
    match limit {
        0 => 100,
        n => n.min(limits::LIST_LIMIT_MAX) as usize,
    }
}

/// A step's job template: a submit request without the per-submit fields. `field` prefixes
/// error field names (`steps[NAME].` or `steps[NAME].compensate.`).
fn step_template(prefix: &str, req: pb::SubmitRequest) -> Result<JobSpec, Error> {
    let named = |field: &str| format!("{prefix}{field}");
    for (field, set) in [
        ("delay_ms", req.delay_ms != 0),
        ("run_at_ms", req.run_at_ms.is_some()),
        ("idempotency_key", !req.idempotency_key.is_empty()),
    ] {
        if set {
            return Err(invalid(&named(field), "is not allowed in a workflow step"));
        }
    }
    let (spec, _, _) = submit(req).map_err(|e| e.within(prefix))?;
    Ok(spec)
}

/// A workflow submit request as the machine's spec, checked whole ([`WorkflowSpec::validate`]).
pub fn workflow_spec(req: pb::SubmitWorkflowRequest) -> Result<WorkflowSpec, Error> {
    let failure_policy = match req.failure_policy.as_str() {
        "" => FailurePolicy::FailFast,
        name => FailurePolicy::parse(name).ok_or_else(|| {
            invalid(
                "failure_policy",
                &format!("{name:?} is not one of fail_fast, continue"),
            )
        })?,
    };
    let mut steps = Vec::with_capacity(req.steps.len());
    for (i, step) in req.steps.into_iter().enumerate() {
        let label = if step.name.is_empty() {
            i.to_string()
        } else {
            step.name.clone()
        };
        let prefix = format!("steps[{label}].");
        let job = step
            .job
            .ok_or_else(|| invalid(&format!("{prefix}job"), "is missing"))?;
        let job = step_template(&prefix, job)?;
        let compensate = match step.compensate {
            Some(c) => Some(step_template(&format!("{prefix}compensate."), c)?),
            None => None,
        };
        let mut depends_on = Vec::with_capacity(step.depends_on.len());
        for (k, d) in step.depends_on.into_iter().enumerate() {
            let condition = match d.condition.as_str() {
                "" => Condition::Success,
                name => Condition::parse(name).ok_or_else(|| {
                    invalid(
                        &format!("{prefix}depends_on[{k}].condition"),
                        &format!("{name:?} is not one of success, failure, always"),
                    )
                })?,
            };
            depends_on.push(Dependency {
                step: d.step,
                condition,
            });
        }
        steps.push(StepSpec {
            name: step.name,
            job,
            depends_on,
            compensate,
        });
    }
    let spec = WorkflowSpec {
        name: req.name,
        failure_policy,
        max_parallel: match req.max_parallel {
            0 => limits::WORKFLOW_PARALLEL_DEFAULT,
            n => n,
        },
        steps,
    };
    spec.validate()?;
    Ok(spec)
}

/// A workflow operation from its name.
pub fn workflow_op(req: &pb::ControlWorkflowRequest) -> Result<WorkflowOp, Error> {
    let needs_step = |op: fn(String) -> WorkflowOp| {
        if req.step.is_empty() {
            Err(invalid("step", &format!("{} needs a step name", req.op)))
        } else {
            Ok(op(req.step.clone()))
        }
    };
    match req.op.as_str() {
        "cancel" => Ok(WorkflowOp::Cancel),
        "pause" => Ok(WorkflowOp::Pause),
        "resume" => Ok(WorkflowOp::Resume),
        "retry" => needs_step(|step| WorkflowOp::Retry { step }),
        "skip" => needs_step(|step| WorkflowOp::Skip { step }),
        other => Err(invalid(
            "op",
            &format!("{other:?} is not one of cancel, pause, resume, retry, skip"),
        )),
    }
}

/// Parses a workflow state name for list filters.
pub fn workflow_state(name: &str) -> Result<Option<WorkflowState>, Error> {
    if name.is_empty() {
        return Ok(None);
    }
    WorkflowState::parse(name).map(Some).ok_or_else(|| {
        invalid(
            "state",
            &format!("{name:?} is not one of running, compensating, succeeded, failed, cancelled"),
        )
    })
}

/// A workflow as sent to clients, at state-machine time `now_ms`; without steps for lists.
pub fn workflow(w: &Workflow, now_ms: u64, with_steps: bool) -> pb::Workflow {
    let (path, path_ms) = w.critical_path(now_ms);
    let mut out = pb::Workflow {
        id: w.id,
        name: w.spec.name.clone(),
        state: w.state.name().into(),
        paused: w.paused,
        failure_policy: w.spec.failure_policy.name().into(),
        max_parallel: w.spec.max_parallel,
        created_ms: w.created_ms,
        finished_ms: w.finished_ms,
        steps: Vec::new(),
        critical_path: path
            .iter()
            .map(|&i| w.spec.steps[i as usize].name.clone())
            .collect(),
        critical_path_ms: path_ms,
        now_ms,
        running: w.running,
    };
    if !with_steps {
        return out;
    }
    out.steps = w
        .spec
        .steps
        .iter()
        .zip(&w.steps)
        .enumerate()
        .map(|(i, (spec, run))| pb::WorkflowStep {
            name: spec.name.clone(),
            state: run.state.name().into(),
            depends_on: w
                .deps_of(i as u32)
                .iter()
                .map(|&(d, c)| pb::StepDependency {
                    step: w.spec.steps[d as usize].name.clone(),
                    condition: c.name().into(),
                })
                .collect(),
            queue: spec.job.queue.clone(),
            job_id: run.job_id.unwrap_or(0),
            runs: run.runs,
            attempts: run.attempts,
            ready_ms: run.ready_ms,
            started_ms: run.started_ms,
            ended_ms: run.ended_ms,
            error: run.error.clone().unwrap_or_default(),
            skipped_by_operator: run.skipped_by_operator,
            has_compensation: spec.compensate.is_some(),
            compensation_state: run
                .compensation
                .as_ref()
                .map_or("", |c| c.state.name())
                .into(),
            compensation_job_id: run
                .compensation
                .as_ref()
                .and_then(|c| c.job_id)
                .unwrap_or(0),
            on_critical_path: path.contains(&(i as u32)),
        })
        .collect();
    out
}

/// A queue policy request as the machine's policy (zeros mean "off").
pub fn queue_policy(req: &pb::SetQueuePolicyRequest) -> QueuePolicy {
    QueuePolicy {
        rate: (req.rate_count > 0).then_some(Rate {
            count: req.rate_count,
            per_ms: req.rate_per_ms,
        }),
        concurrency: (req.concurrency > 0).then_some(req.concurrency),
        breaker: (req.breaker_threshold_pct > 0).then_some(BreakerConfig {
            threshold_pct: req.breaker_threshold_pct,
            window: req.breaker_window,
            cooldown_ms: req.breaker_cooldown_ms,
        }),
    }
}

/// A resource as sent to clients.
pub fn resource(v: &ResourceView) -> pb::ResourceInfo {
    let uses = |list: &[(u64, u32)]| {
        list.iter()
            .map(|&(job_id, units)| pb::ResourceUse { job_id, units })
            .collect()
    };
    pb::ResourceInfo {
        name: v.name.clone(),
        capacity: v.capacity,
        used_by_jobs: v.used_by_jobs,
        job_holders: uses(&v.job_holders),
        locks: v
            .locks
            .iter()
            .map(|l| pb::LockInfo {
                token: l.token,
                owner: l.owner.clone(),
                acquired_ms: l.acquired_ms,
                expires_ms: l.expires_ms,
            })
            .collect(),
        waiters: uses(&v.waiters),
    }
}

use crate::machine::events::Trigger;
use crate::machine::schedule::{CatchUp, Overlap, RunOutcome, Schedule, ScheduleSpec, Target};

fn target_of(
    job: Option<pb::SubmitRequest>,
    workflow: Option<pb::SubmitWorkflowRequest>,
) -> Result<Target, Error> {
    match (job, workflow) {
        (Some(job), None) => {
            if job.delay_ms != 0 || job.run_at_ms.is_some() {
                return Err(invalid(
                    "job.delay_ms",
                    "is not allowed: the schedule decides when",
                ));
            }
            let (spec, _, _) = submit(job).map_err(|e| e.within("job."))?;
            Ok(Target::Job(Box::new(spec)))
        }
        (None, Some(w)) => Ok(Target::Workflow(workflow_spec(w)?)),
        _ => Err(invalid("target", "set either job or workflow")),
    }
}

fn target_text(t: &Target) -> String {
    match t {
        Target::Job(spec) => match &spec.kind {
            JobKind::Shell { argv, .. } => format!("job in {}: {}", spec.queue, argv.join(" ")),
            JobKind::External { payload } => {
                format!(
                    "external job in {} ({} B payload)",
                    spec.queue,
                    payload.len()
                )
            }
        },
        Target::Workflow(w) => format!("workflow {} ({} steps)", w.name, w.steps.len()),
    }
}

/// A schedule request as the machine's spec, checked.
pub fn schedule_spec(req: pb::CreateScheduleRequest) -> Result<ScheduleSpec, Error> {
    let target = match req.target {
        Some(pb::create_schedule_request::Target::Job(j)) => target_of(Some(j), None)?,
        Some(pb::create_schedule_request::Target::Workflow(w)) => target_of(None, Some(w))?,
        None => target_of(None, None)?,
    };
    let catch_up = match req.catch_up.as_str() {
        "" | "skip" => CatchUp::Skip,
        "latest" => CatchUp::Latest,
        other => match other.strip_prefix("all:").map(str::parse::<u32>) {
            Some(Ok(n)) => CatchUp::All(n),
            _ => {
                return Err(invalid(
                    "catch_up",
                    &format!("{other:?} is not skip, latest or all:N"),
                ))
            }
        },
    };
    let overlap = match req.overlap.as_str() {
        "" | "allow" => Overlap::Allow,
        "skip" => Overlap::Skip,
        "queue" => Overlap::Queue,
        other => {
            return Err(invalid(
                "overlap",
                &format!("{other:?} is not allow, skip or queue"),
            ))
        }
    };
    let spec = ScheduleSpec {
        name: req.name,
        expr: req.cron,
        tz: if req.tz.is_empty() {
            "UTC".into()
        } else {
            req.tz
        },
        start_ms: req.start_ms,
        end_ms: req.end_ms,
        target,
        catch_up,
        overlap,
    };
    spec.validate()?;
    Ok(spec)
}

/// A trigger request's target, checked.
pub fn trigger_target(req: pb::CreateTriggerRequest) -> Result<Target, Error> {
    match req.target {
        Some(pb::create_trigger_request::Target::Job(j)) => target_of(Some(j), None),
        Some(pb::create_trigger_request::Target::Workflow(w)) => target_of(None, Some(w)),
        None => target_of(None, None),
    }
}

/// A schedule as sent to clients; `state` names a run's job or workflow state when held.
pub fn schedule(s: &Schedule, state: impl Fn(&RunOutcome) -> String) -> pb::ScheduleInfo {
    pb::ScheduleInfo {
        id: s.id,
        name: s.spec.name.clone(),
        cron: s.spec.expr.clone(),
        tz: s.spec.tz.clone(),
        paused: s.paused,
        next_fire_ms: s.next_fire_ms,
        catch_up: match s.spec.catch_up {
            CatchUp::Skip => "skip".into(),
            CatchUp::Latest => "latest".into(),
            CatchUp::All(n) => format!("all:{n}"),
        },
        overlap: match s.spec.overlap {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
        .into(),
        start_ms: s.spec.start_ms,
        end_ms: s.spec.end_ms,
        runs_started: s.runs_started,
        created_ms: s.created_ms,
        history: s
            .history
            .iter()
            .map(|r| {
                let (outcome, job_id, workflow_id, reason) = match &r.outcome {
                    RunOutcome::Job(j) => ("job", *j, 0, String::new()),
                    RunOutcome::Workflow(w) => ("workflow", 0, *w, String::new()),
                    RunOutcome::Skipped(why) => ("skipped", 0, 0, why.clone()),
                    RunOutcome::Queued => ("queued", 0, 0, String::new()),
                    RunOutcome::Failed(why) => ("failed", 0, 0, why.clone()),
                };
                pb::ScheduleRun {
                    tick_ms: r.tick_ms,
                    at_ms: r.at_ms,
                    manual: r.manual,
                    outcome: outcome.into(),
                    job_id,
                    workflow_id,
                    reason,
                    state: state(&r.outcome),
                }
            })
            .collect(),
        target: target_text(&s.spec.target),
    }
}

/// A trigger as sent to clients.
pub fn trigger(t: &Trigger) -> pb::TriggerInfo {
    pb::TriggerInfo {
        id: t.id,
        topic: t.topic.clone(),
        target: target_text(&t.target),
        fired: t.fired,
        created_ms: t.created_ms,
    }
}
