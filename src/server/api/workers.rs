//! The worker API: lease (long-poll), heartbeat, complete, complete-and-lease, checkpoint,
//! release. Leasing goes through [`crate::raft::Replica::lease_wait`], the same path a node's
//! own executor takes.

use std::time::Duration;

use tonic::Status;

use super::{check_range, item_error, unexpected, ApiService};
use crate::error::Error;
use crate::machine::{limits, Command, Grant, Response as Applied, WorkerRef};
use crate::proto::{from_wire, pb, to_wire};

/// A worker known only by the id it gives (not a node's own executor).
fn external(worker_id: String) -> WorkerRef {
    WorkerRef {
        id: worker_id,
        node: None,
    }
}

pub(super) async fn lease(
    api: &ApiService,
    req: pb::LeaseRequest,
) -> Result<pb::LeaseResponse, Status> {
    check_range("wait_ms", req.wait_ms, limits::LEASE_WAIT_MS_MAX)?;
    check_lease_names("", &req)?;
    let _waiting = api.lease_waiter(req.wait_ms)?;
    let grants = api
        .replica
        .lease_wait(
            &external(req.worker_id),
            &req.queues,
            &req.capabilities,
            req.max.max(1),
            (req.ttl_ms != 0).then_some(req.ttl_ms),
            Duration::from_millis(req.wait_ms),
        )
        .await?;
    Ok(pb::LeaseResponse {
        jobs: grants.iter().map(to_wire::leased).collect(),
    })
}

pub(super) async fn heartbeat(
    api: &ApiService,
    req: pb::HeartbeatRequest,
) -> Result<pb::HeartbeatResponse, Status> {
    let command = Command::Heartbeat {
        worker: req.worker_id,
    };
    let held = propose_expect!(api, command, Applied::Heartbeated(held) => held);
    Ok(pb::HeartbeatResponse {
        leases: held
            .into_iter()
            .map(|(job_id, token, expires_ms)| pb::HeldLease {
                job_id,
                token,
                expires_ms,
            })
            .collect(),
    })
}

pub(super) async fn complete(
    api: &ApiService,
    req: pb::CompleteRequest,
) -> Result<pb::JobStateReply, Status> {
    let report = from_wire::report(&req)?;
    let command = Command::Complete {
        job_id: req.job_id,
        token: req.token,
        report,
    };
    api.job_command(req.job_id, command).await
}

/// Checks the names of a lease request (worker id, queues, capabilities) at the edge, so a
/// worker with a bad id is told at once instead of writing rejected entries.
fn check_lease_names(prefix: &str, req: &pb::LeaseRequest) -> Result<(), Error> {
    use crate::machine::job::{validate_name, validate_queue_name};
    validate_name(
        &format!("{prefix}worker_id"),
        &req.worker_id,
        limits::WORKER_ID_BYTES_MAX,
    )?;
    for (i, q) in req.queues.iter().enumerate() {
        validate_queue_name(&format!("{prefix}queues[{i}]"), q)?;
    }
    for (i, c) in req.capabilities.iter().enumerate() {
        validate_name(
            &format!("{prefix}capabilities[{i}]"),
            c,
            limits::CAPABILITY_BYTES_MAX,
        )?;
    }
    Ok(())
}

/// Checks a complete-and-lease request's bounds and builds its batch: the completions, then
/// the lease when one is asked for.
fn complete_and_lease_batch(
    req: &pb::CompleteAndLeaseRequest,
    lease: &pb::LeaseRequest,
) -> Result<Vec<Command>, Error> {
    check_range(
        "completions",
        req.completions.len() as u64,
        limits::COMPLETIONS_PER_CALL_MAX as u64,
    )?;
    check_range("lease.wait_ms", lease.wait_ms, limits::LEASE_WAIT_MS_MAX)?;
    if lease.max > 0 {
        check_lease_names("lease.", lease)?;
    }
    check_range(
        "lease.max",
        u64::from(lease.max),
        u64::from(limits::LEASE_BATCH_MAX),
    )?;
    let mut commands = Vec::with_capacity(req.completions.len() + 1);
    for (i, c) in req.completions.iter().enumerate() {
        let report = from_wire::report(c).map_err(|e| item_error("completions", i, e))?;
        commands.push(Command::Complete {
            job_id: c.job_id,
            token: c.token,
            report,
        });
    }
    if lease.max > 0 {
        commands.push(Command::Lease {
            worker: external(lease.worker_id.clone()),
            queues: lease.queues.clone(),
            capabilities: lease.capabilities.clone(),
            max: lease.max,
            ttl_ms: (lease.ttl_ms != 0).then_some(lease.ttl_ms),
        });
    }
    Ok(commands)
}

/// One completion's result as sent back: its job's new state, or why it was refused.
fn completion_result(c: &pb::CompleteRequest, response: Applied) -> pb::CompletionResult {
    match response {
        Applied::Completed { state } | Applied::Done { state } => pb::CompletionResult {
            job_id: c.job_id,
            state: state.name().to_string(),
            ..Default::default()
        },
        other => {
            let status = unexpected(other);
            pb::CompletionResult {
                job_id: c.job_id,
                state: String::new(),
                error_code: crate::server::rest::code_name(status.code()),
                error: status.message().to_string(),
            }
        }
    }
}

pub(super) async fn complete_and_lease(
    api: &ApiService,
    req: pb::CompleteAndLeaseRequest,
) -> Result<pb::CompleteAndLeaseResponse, Status> {
    let lease = req.lease.clone().unwrap_or_default();
    let commands = complete_and_lease_batch(&req, &lease)?;
    let leasing = lease.max > 0;
    let mut responses = if commands.is_empty() {
        Vec::new()
    } else {
        propose_expect!(api, Command::Batch(commands), Applied::Batch(r) => r)
    };
    // The lease, when asked for, is the batch's last command.
    let mut grants: Vec<Grant> = if leasing {
        match responses.pop() {
            Some(Applied::Leased(grants)) => grants,
            Some(Applied::Rejected(r)) => return Err(Error::from(r).into()),
            other => {
                return Err(Error::Internal(format!("unexpected lease response {other:?}")).into())
            }
        }
    } else {
        Vec::new()
    };
    let completions = req
        .completions
        .iter()
        .zip(responses)
        .map(|(c, r)| completion_result(c, r))
        .collect();
    if leasing && grants.is_empty() && lease.wait_ms > 0 {
        let _waiting = api.lease_waiter(lease.wait_ms)?;
        grants = api
            .replica
            .lease_wait(
                &external(lease.worker_id),
                &lease.queues,
                &lease.capabilities,
                lease.max,
                (lease.ttl_ms != 0).then_some(lease.ttl_ms),
                Duration::from_millis(lease.wait_ms),
            )
            .await?;
    }
    Ok(pb::CompleteAndLeaseResponse {
        completions,
        jobs: grants.iter().map(to_wire::leased).collect(),
    })
}

pub(super) async fn checkpoint(
    api: &ApiService,
    req: pb::CheckpointRequest,
) -> Result<pb::JobStateReply, Status> {
    check_range(
        "data",
        req.data.len() as u64,
        limits::CHECKPOINT_BYTES_MAX as u64,
    )?;
    let command = Command::Checkpoint {
        job_id: req.job_id,
        token: req.token,
        data: req.data,
    };
    api.job_command(req.job_id, command).await
}

pub(super) async fn release(
    api: &ApiService,
    req: pb::ReleaseRequest,
) -> Result<pb::JobStateReply, Status> {
    let command = Command::Release {
        job_id: req.job_id,
        token: req.token,
    };
    api.job_command(req.job_id, command).await
}
