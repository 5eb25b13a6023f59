//! Wire to domain: requests as the machine's commands' arguments, checked. A malformed field
//! is an `InvalidArgument` naming it; zero values mean "the default".

use std::collections::BTreeMap;

use super::pb;
use crate::error::Error;
use crate::machine::controls::{BreakerConfig, QueuePolicy, Rate};
use crate::machine::resources::Need;
use crate::machine::schedule::{CatchUp, Overlap, ScheduleOp, ScheduleSpec, Target};
use crate::machine::search::JobFilter;
use crate::machine::{
    limits, Backoff, Condition, Dependency, ErrorClass, FailurePolicy, JobChanges, JobKind,
    JobSpec, JobState, Report, StepSpec, WorkflowOp, WorkflowSpec, WorkflowState,
};

fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
}

/// A submit's `dead` (a job imported already failed) as the machine has it; checked by
/// [`crate::machine::jobs::DeadLetter::check`].
pub fn dead_letter(d: pb::DeadLetter) -> crate::machine::jobs::DeadLetter {
    crate::machine::jobs::DeadLetter {
        error: d.error,
        attempts_made: d.attempts_made,
        output_tail: d.output_tail,
        failed_at_ms: d.failed_at_ms,
        source: d.source,
    }
}

/// A submit request as the machine's command arguments: (spec, delay_ms, run_at_ms). Field
/// checks happen in [`JobSpec::validate`]; zero values mean "the default".
pub fn submit(req: pb::SubmitRequest) -> Result<(JobSpec, u64, Option<u64>), Error> {
    let kind = match req.kind {
        Some(pb::submit_request::Kind::Shell(shell)) => shell_kind(shell),
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
    if let Some((i, code)) = req
        .permanent_exit_codes
        .iter()
        .enumerate()
        .find(|(_, c)| !(0..=255).contains(*c))
    {
        return Err(invalid(
            &format!("permanent_exit_codes[{i}]"),
            &format!("is {code}; an exit code is 0..=255"),
        ));
    }
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
    // Cut here to what the job keeps (the machine cuts the same way), so a worker's long
    // output or error does not travel through the log.
    use crate::machine::job::tail;
    Ok(Report {
        error_class,
        exit_code: req.exit_code,
        error: tail(&req.error, limits::ERROR_BYTES_MAX),
        output_tail: tail(&req.output_tail, limits::OUTPUT_TAIL_BYTES_MAX),
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

/// A job search's conditions (`ListJobs`), checked: the state is known, the tag and text fit
/// their limits, times are below `FILTER_TIME_MS_MAX` and each range is not empty.
pub fn job_filter(req: &pb::ListJobsRequest) -> Result<JobFilter, Error> {
    let text = match req.text.as_str() {
        "" => None,
        t if t.len() > limits::SEARCH_TEXT_BYTES_MAX => {
            return Err(invalid(
                "text",
                &format!(
                    "is {} bytes, the limit is {}",
                    t.len(),
                    limits::SEARCH_TEXT_BYTES_MAX
                ),
            ))
        }
        t => Some(t.to_ascii_lowercase()),
    };
    if req.tag.len() > limits::TAG_BYTES_MAX {
        return Err(invalid(
            "tag",
            &format!(
                "is {} bytes, the limit is {}",
                req.tag.len(),
                limits::TAG_BYTES_MAX
            ),
        ));
    }
    let range = |from_field: &str, from: u64, to_field: &str, to: u64| {
        for (field, v) in [(from_field, from), (to_field, to)] {
            if v > limits::FILTER_TIME_MS_MAX {
                return Err(invalid(
                    field,
                    &format!("is {v}, past the year 9999 (FILTER_TIME_MS_MAX)"),
                ));
            }
        }
        if from != 0 && to != 0 && to <= from {
            return Err(invalid(
                to_field,
                &format!("is {to}, not after {from_field} ({from})"),
            ));
        }
        Ok(((from != 0).then_some(from), (to != 0).then_some(to)))
    };
    Ok(JobFilter {
        queue: (!req.queue.is_empty()).then(|| req.queue.clone()),
        state: state(&req.state)?,
        tag: (!req.tag.is_empty()).then(|| req.tag.clone()),
        created: range(
            "created_after_ms",
            req.created_after_ms,
            "created_before_ms",
            req.created_before_ms,
        )?,
        finished: range(
            "finished_after_ms",
            req.finished_after_ms,
            "finished_before_ms",
            req.finished_before_ms,
        )?,
        text,
    })
}

/// A list call's page size: 0 means `LIST_LIMIT_DEFAULT`; above `LIST_LIMIT_MAX` is refused,
/// never silently cut (a caller could not tell a cut page from the end of the list).
pub fn list_limit(limit: u32) -> Result<usize, Error> {
    match limit {
        0 => Ok(limits::LIST_LIMIT_DEFAULT as usize),
        n if n > limits::LIST_LIMIT_MAX => Err(invalid(
            "limit",
            &format!("is {n}, the limit is {}", limits::LIST_LIMIT_MAX),
        )),
        n => Ok(n as usize),
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

/// A shell command as a job kind.
fn shell_kind(shell: pb::ShellCommand) -> JobKind {
    JobKind::Shell {
        argv: shell.argv,
        env: shell.env.into_iter().collect(),
        cwd: (!shell.cwd.is_empty()).then_some(shell.cwd),
    }
}

/// A job's kind as sent to a worker.
pub fn job_kind(kind: pb::job::Kind) -> JobKind {
    match kind {
        pb::job::Kind::Shell(shell) => shell_kind(shell),
        pb::job::Kind::Payload(payload) => JobKind::External { payload },
    }
}

/// A schedule operation from its name.
pub fn schedule_op(req: &pb::ControlScheduleRequest) -> Result<ScheduleOp, Error> {
    Ok(match req.op.as_str() {
        "pause" => ScheduleOp::Pause,
        "resume" => ScheduleOp::Resume,
        "trigger" => ScheduleOp::Trigger,
        "delete" => ScheduleOp::Delete,
        "backfill" => ScheduleOp::Backfill {
            from_ms: req.from_ms,
            to_ms: req.to_ms,
        },
        other => {
            return Err(invalid(
                "op",
                &format!("{other:?} is not one of pause, resume, trigger, delete, backfill"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's long output and error are cut to what the job keeps before they are
    /// proposed.
    #[test]
    fn reports_are_cut_at_the_edge() {
        let req = pb::CompleteRequest {
            output_tail: "o".repeat(limits::OUTPUT_TAIL_BYTES_MAX * 3),
            error: "e".repeat(limits::ERROR_BYTES_MAX * 3),
            error_class: "transient".into(),
            ..Default::default()
        };
        let r = report(&req).unwrap();
        assert_eq!(r.output_tail.len(), limits::OUTPUT_TAIL_BYTES_MAX);
        assert_eq!(r.error.len(), limits::ERROR_BYTES_MAX);
    }

    /// A page limit of 0 is the default, the maximum is allowed, above it is refused naming
    /// `limit` (never silently cut).
    #[test]
    fn list_limit_refuses_above_the_maximum() {
        assert_eq!(list_limit(0).unwrap(), limits::LIST_LIMIT_DEFAULT as usize);
        assert_eq!(
            list_limit(limits::LIST_LIMIT_MAX).unwrap(),
            limits::LIST_LIMIT_MAX as usize
        );
        let e = list_limit(limits::LIST_LIMIT_MAX + 1).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "limit"),
            "{e:?}"
        );
    }
}
