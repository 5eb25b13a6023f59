//! Jobs and queues: submit (one or a batch), read, list, cancel, retry, purge; pause, resume,
//! read and set the policy of queues.

use tonic::Status;

use super::{check_range, item_error, ApiService};
use crate::error::Error;
use crate::machine::job::validate_queue_name;
use crate::machine::{limits, BulkAction, Command, Response as Applied};
use crate::proto::{from_wire, pb, to_wire};

/// A submit request checked and turned into its command; nothing is proposed.
fn submit_command(mut req: pb::SubmitRequest) -> Result<Command, Error> {
    let dead = req.dead.take().map(from_wire::dead_letter);
    let (spec, delay_ms, run_at_ms) = from_wire::submit(req)?;
    spec.validate()?;
    check_range("delay_ms", delay_ms, limits::DELAY_MS_MAX)?;
    // The machine bounds absolute times by DELAY_MS_MAX after its own clock; refuse here what
    // is beyond it by this node's clock too (a day of slack for skew), so it writes nothing.
    let horizon = crate::server::auth::wall_ms()
        .saturating_add(limits::DELAY_MS_MAX)
        .saturating_add(86_400_000);
    for (field, at) in [("run_at_ms", run_at_ms), ("deadline_ms", spec.deadline_ms)] {
        if let Some(at) = at {
            check_range(field, at, horizon.min(limits::WALL_MS_MAX))?;
        }
    }
    if let Some(dead) = dead {
        dead.check()?;
        if delay_ms != 0 || run_at_ms.is_some() {
            return Err(Error::InvalidArgument {
                field: "dead".into(),
                message: "a job created dead does not start; leave delay_ms and run_at_ms unset"
                    .into(),
            });
        }
        return Ok(Command::SubmitDead { spec, dead });
    }
    Ok(Command::Submit {
        spec,
        delay_ms,
        run_at_ms,
    })
}

pub(super) async fn submit(
    api: &ApiService,
    req: pb::SubmitRequest,
) -> Result<pb::SubmitResponse, Status> {
    let command = submit_command(req)?;
    Ok(propose_expect!(api, command,
        Applied::Submitted { id, duplicate } => pb::SubmitResponse { id, duplicate }))
}

pub(super) async fn submit_batch(
    api: &ApiService,
    req: pb::SubmitBatchRequest,
) -> Result<pb::SubmitBatchResponse, Status> {
    let jobs = req.jobs;
    if jobs.is_empty() {
        return Err(Error::InvalidArgument {
            field: "jobs".into(),
            message: "is empty; give at least one job".into(),
        }
        .into());
    }
    check_range(
        "jobs",
        jobs.len() as u64,
        limits::SUBMIT_BATCH_JOBS_MAX as u64,
    )?;
    let mut commands = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.into_iter().enumerate() {
        commands.push(submit_command(job).map_err(|e| item_error("jobs", i, e))?);
    }
    let responses = propose_expect!(api, Command::Batch(commands), Applied::Batch(r) => r);
    let mut out = Vec::with_capacity(responses.len());
    for (i, response) in responses.into_iter().enumerate() {
        match response {
            Applied::Submitted { id, duplicate } => out.push(pb::SubmitResponse { id, duplicate }),
            Applied::Rejected(r) => {
                // Only a limit reached while applying (the job table is full) gets here:
                // every job was checked before proposing.
                let added: Vec<String> = out.iter().map(|j| j.id.to_string()).collect();
                return Err(Error::ResourceExhausted(format!(
                    "jobs[{i}]: {}; the {} jobs before it were added (ids: {})",
                    Error::from(r),
                    added.len(),
                    added.join(",")
                ))
                .into());
            }
            other => return Err(super::unexpected(other)),
        }
    }
    Ok(pb::SubmitBatchResponse { jobs: out })
}

/// Adds who submitted the job, while the audit keeps it.
fn with_submitter(m: &crate::machine::Machine, mut job: pb::Job) -> pb::Job {
    if let Some(by) = m.audit().submitter(job.id) {
        job.submitted_by_token = by.token_id.clone();
        job.submitted_by_name = by.name.clone();
    }
    job
}

pub(super) async fn get_job(api: &ApiService, req: pb::GetJobRequest) -> Result<pb::Job, Status> {
    api.read_barrier(req.stale).await?;
    api.replica
        .read(|m| m.job(req.id).map(|j| with_submitter(m, to_wire::job(&j))))
        .ok_or_else(|| Error::NotFound(format!("job {}", req.id)).into())
}

pub(super) async fn list_jobs(
    api: &ApiService,
    req: pb::ListJobsRequest,
) -> Result<pb::ListJobsResponse, Status> {
    let filter = from_wire::job_filter(&req)?;
    let limit = from_wire::list_limit(req.limit)?;
    api.read_barrier(req.stale).await?;
    let (jobs, next_after_id) = api.replica.read(|m| {
        let page = m.search(&filter, req.after_id, limit, limits::LIST_SCAN_MAX);
        // A page ends early at LIST_PAGE_BYTES_MAX (one job at least), so jobs with large
        // payloads page by bytes instead of overflowing the message limit; the cursor is then
        // the last job sent.
        let mut bytes = 0usize;
        let found = page.jobs.len();
        let jobs: Vec<pb::Job> = page
            .jobs
            .into_iter()
            .map(|j| with_submitter(m, to_wire::job(&j)))
            .take_while(|j| {
                let first = bytes == 0;
                bytes += prost::Message::encoded_len(j);
                first || bytes <= limits::LIST_PAGE_BYTES_MAX
            })
            .collect();
        let next = match jobs.last() {
            Some(last) if jobs.len() < found => Some(last.id),
            _ => page.next_after,
        };
        (jobs, next.unwrap_or(0))
    });
    Ok(pb::ListJobsResponse {
        jobs,
        next_after_id,
    })
}

/// `BulkJobs`: finds the jobs on this node's state after a read barrier (every write committed
/// before the call is seen), keeps those the action takes, and proposes them as one command;
/// a job that changed state in between is skipped when the command applies.
pub(super) async fn bulk_jobs(
    api: &ApiService,
    req: pb::BulkJobsRequest,
) -> Result<pb::BulkJobsResponse, Status> {
    let action = BulkAction::parse(&req.action).ok_or_else(|| {
        Status::invalid_argument(crate::error::bounded(format!(
            "action: {:?} is not retry, cancel or purge",
            req.action
        )))
    })?;
    let filter = from_wire::job_filter(&req.filter.clone().unwrap_or_default())
        .map_err(|e| Status::from(e.within("filter.")))?;
    api.read_barrier(false).await?;
    let (matched, ids, more) = api.replica.read(|m| {
        let (mut matched, mut ids, mut after, mut scanned) = (0u64, Vec::new(), 0, 0);
        loop {
            let room = limits::BULK_JOBS_MAX - ids.len();
            let page = m.search(&filter, after, room, limits::LIST_SCAN_MAX);
            scanned += limits::LIST_SCAN_MAX;
            matched += page.jobs.len() as u64;
            ids.extend(
                page.jobs
                    .iter()
                    .filter(|j| action.takes(j.state))
                    .map(|j| j.id),
            );
            match page.next_after {
                Some(next)
                    if ids.len() < limits::BULK_JOBS_MAX && scanned < limits::BULK_SCAN_MAX =>
                {
                    after = next;
                }
                next => return (matched, ids, next.is_some()),
            }
        }
    });
    let skipped_before = matched - ids.len() as u64;
    if req.dry_run || ids.is_empty() {
        return Ok(pb::BulkJobsResponse {
            matched,
            changed: ids.len() as u64,
            skipped: skipped_before,
            ids,
            more,
        });
    }
    let command = Command::BulkJobs { action, ids };
    let (changed, skipped) = propose_expect!(api, command,
        Applied::Bulk { changed, skipped } => (changed, skipped));
    Ok(pb::BulkJobsResponse {
        matched,
        changed: changed.len() as u64,
        skipped: skipped_before + skipped,
        ids: changed,
        more,
    })
}

pub(super) async fn cancel_job(
    api: &ApiService,
    req: pb::JobRef,
) -> Result<pb::JobStateReply, Status> {
    api.job_command(req.id, Command::Cancel { job_id: req.id })
        .await
}

pub(super) async fn retry_job(
    api: &ApiService,
    req: pb::RetryJobRequest,
) -> Result<pb::JobStateReply, Status> {
    let changes = from_wire::changes(&req);
    let command = Command::Requeue {
        job_id: req.id,
        changes,
    };
    api.job_command(req.id, command).await
}

pub(super) async fn purge_dead(
    api: &ApiService,
    req: pb::PurgeDeadRequest,
) -> Result<pb::PurgeDeadResponse, Status> {
    let queue = (!req.queue.is_empty()).then_some(req.queue);
    if let Some(q) = &queue {
        validate_queue_name("queue", q).map_err(Error::from)?;
    }
    let purged =
        propose_expect!(api, Command::PurgeDead { queue }, Applied::Purged { count } => count);
    Ok(pb::PurgeDeadResponse { purged })
}

/// A queue's counters, policy and breaker, from this node's state.
fn queue_info(api: &ApiService, queue: &str) -> pb::QueueInfo {
    api.replica.read(|m| {
        let (stats, paused) = m.queue(queue);
        to_wire::queue(queue, &stats, paused, m.queue_control(queue))
    })
}

/// Proposes a queue change, then reads it back (this node may not have applied it yet).
async fn change_queue(
    api: &ApiService,
    queue: &str,
    command: Command,
) -> Result<pb::QueueInfo, Status> {
    propose_expect!(api, command, Applied::Ok => ());
    api.replica.read_barrier().await?;
    Ok(queue_info(api, queue))
}

pub(super) async fn pause_queue(
    api: &ApiService,
    req: pb::QueueRef,
) -> Result<pb::QueueInfo, Status> {
    let command = Command::PauseQueue {
        queue: req.queue.clone(),
        paused: true,
    };
    change_queue(api, &req.queue, command).await
}

pub(super) async fn resume_queue(
    api: &ApiService,
    req: pb::QueueRef,
) -> Result<pb::QueueInfo, Status> {
    let command = Command::PauseQueue {
        queue: req.queue.clone(),
        paused: false,
    };
    change_queue(api, &req.queue, command).await
}

pub(super) async fn set_queue_policy(
    api: &ApiService,
    req: pb::SetQueuePolicyRequest,
) -> Result<pb::QueueInfo, Status> {
    let command = Command::SetQueuePolicy {
        queue: req.queue.clone(),
        policy: from_wire::queue_policy(&req),
    };
    change_queue(api, &req.queue, command).await
}

pub(super) async fn get_queue(
    api: &ApiService,
    req: pb::QueueRef,
) -> Result<pb::QueueInfo, Status> {
    validate_queue_name("queue", &req.queue).map_err(Error::from)?;
    api.read_barrier(req.stale).await?;
    Ok(queue_info(api, &req.queue))
}

pub(super) async fn list_queues(
    api: &ApiService,
    req: pb::ListQueuesRequest,
) -> Result<pb::ListQueuesResponse, Status> {
    api.read_barrier(req.stale).await?;
    let queues = api.replica.read(|m| {
        m.queue_names()
            .iter()
            .map(|q| {
                let (stats, paused) = m.queue(q);
                to_wire::queue(q, &stats, paused, m.queue_control(q))
            })
            .collect()
    });
    Ok(pb::ListQueuesResponse { queues })
}
