//! Domain to wire: jobs, queues, workflows, resources, schedules and the worker's report as
//! sent over gRPC.

use super::pb;
use crate::machine::controls::QueueControl;
use crate::machine::events::{Timer, Trigger};
use crate::machine::resources::{Need, ResourceView};
use crate::machine::schedule::{CatchUp, Overlap, RunOutcome, Schedule, Target};
use crate::machine::{
    Attempt, ErrorClass, Grant, Job, JobId, JobKind, JobSpec, JobState, QueueStats, Report,
    Workflow,
};

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

/// A worker's report as sent over the wire.
pub fn complete_request(job_id: JobId, token: u64, report: &Report) -> pb::CompleteRequest {
    pb::CompleteRequest {
        job_id,
        token,
        success: report.error_class.is_none(),
        error_class: report.error_class.map_or("", ErrorClass::name).to_string(),
        exit_code: report.exit_code,
        error: report.error.clone(),
        output_tail: report.output_tail.clone(),
    }
}

/// A durable timer as sent to clients.
pub fn timer(t: &Timer) -> pb::TimerInfo {
    pb::TimerInfo {
        id: t.id,
        due_ms: t.due_ms,
        topic: t.topic.clone(),
        dedup_key: t.dedup_key.clone(),
        created_ms: t.created_ms,
    }
}
