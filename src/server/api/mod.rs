//! The public `Api` service: validate, then propose (writes) or read.
//!
//! Every write is checked here before it is proposed (so bad input writes nothing) and checked
//! again by the machine when applied. Reads are linearizable unless the request says `stale`.
//!
//! Each handler is: validate and convert the request (`proto::from_wire`), propose and take
//! the expected response apart ([`propose_expect!`]), convert the result (`proto::to_wire`).
//! The handlers live by area (`jobs`, `workers`, `workflows`, `locks`, `schedules`,
//! `events`); tonic allows one `Api` impl, so the impl here hands each call to its area.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::machine::audit::Principal;
use crate::machine::{limits, Command, Response as Applied};
use crate::proto::pb;
use crate::raft::Replica;
use crate::server::auth::Caller;

/// Proposes `$command` through `$service`'s replica and takes the expected response apart:
/// `$pattern => $value` (one arm or a few). A rejection returns its error from the enclosing
/// handler; any other response returns an internal error naming it.
macro_rules! propose_expect {
    ($service:expr, $command:expr, $($pattern:pat => $value:expr),+ $(,)?) => {
        match {
            let command = $crate::server::api::attributed($command);
            command.check_stateless().map_err($crate::error::Error::from)?;
            $service.replica.propose(command).await?
        } {
            $($pattern => $value,)+
            other => return Err($crate::server::api::unexpected(other)),
        }
    };
}

mod backup;
mod cursors;
mod events;
mod jobs;
mod locks;
mod members;
mod schedules;
mod tokens;
mod webhooks;
mod workers;
mod workflows;

/// Serves clients and external workers.
pub struct ApiService {
    replica: Arc<Replica>,
    /// Slots of long-poll leases waiting at once on this node (`LEASE_WAITERS_MAX`).
    lease_waiters: Arc<tokio::sync::Semaphore>,
}

impl ApiService {
    /// A service over this node's replica.
    pub fn new(replica: Arc<Replica>) -> Self {
        ApiService {
            replica,
            lease_waiters: Arc::new(tokio::sync::Semaphore::new(limits::LEASE_WAITERS_MAX)),
        }
    }

    /// A slot for a lease that may wait `wait_ms`; none is needed for one that doesn't wait.
    /// Refused with RESOURCE_EXHAUSTED when `LEASE_WAITERS_MAX` leases wait already.
    fn lease_waiter(
        &self,
        wait_ms: u64,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Status> {
        if wait_ms == 0 {
            return Ok(None);
        }
        self.lease_waiters
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "{} long-poll leases are waiting on this node, the limit \
                     (LEASE_WAITERS_MAX); retry later or lease from another node",
                    limits::LEASE_WAITERS_MAX
                ))
            })
    }

    /// Waits until this node has applied every write committed before the call, unless the
    /// caller accepts a stale read.
    async fn read_barrier(&self, stale: bool) -> Result<(), Status> {
        if !stale {
            self.replica.read_barrier().await?;
        }
        Ok(())
    }

    /// Refuses a queue-limited caller a job outside its queues. An unknown job passes: the
    /// handler then says NOT_FOUND.
    fn check_job(&self, caller: &Caller, field: &str, id: u64) -> Result<(), Status> {
        if !caller.is_scoped() {
            return Ok(());
        }
        let queue = self
            .replica
            .read(|m| m.job(id).map(|j| j.spec.queue.clone()));
        match queue {
            Some(q) => caller.check_queue(field, &q),
            None => Ok(()),
        }
    }

    /// Proposes a command that ends in a job state (cancel, retry, complete, ...).
    async fn job_command(&self, id: u64, command: Command) -> Result<pb::JobStateReply, Status> {
        let state = propose_expect!(self, command,
            Applied::Done { state } | Applied::Completed { state } => state);
        Ok(pb::JobStateReply {
            id,
            state: state.name().to_string(),
        })
    }
}

/// The caller the auth gate attached to `req`. A request that did not pass the gate is refused,
/// so a server built without the gate fails closed.
fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("the call did not pass the auth gate"))
}

/// A queue filter: one queue, or every queue when empty.
fn check_queue_filter(caller: &Caller, queue: &str) -> Result<(), Status> {
    if queue.is_empty() {
        caller.check_all_queues("queue")
    } else {
        caller.check_queue("queue", queue)
    }
}

/// A list of queues to take from, every queue when empty.
fn check_queues(caller: &Caller, field: &str, queues: &[String]) -> Result<(), Status> {
    if queues.is_empty() {
        return caller.check_all_queues(field);
    }
    for (i, q) in queues.iter().enumerate() {
        caller.check_queue(&format!("{field}[{i}]"), q)?;
    }
    Ok(())
}

/// `command` as a write of the caller the auth gate let in (`Command::By`), so the audit
/// records who made it; unchanged with auth off, for workers' calls, and outside a call.
pub(crate) fn attributed(command: Command) -> Command {
    let by = crate::server::auth::CALLER
        .try_with(|c| {
            c.0.as_ref().map(|t| Principal {
                token_id: t.id.clone(),
                name: t.name.clone(),
            })
        })
        .ok()
        .flatten();
    match by {
        Some(by) => attribute(command, &by),
        None => command,
    }
}

fn attribute(command: Command, by: &Principal) -> Command {
    match command {
        Command::Batch(commands) => {
            Command::Batch(commands.into_iter().map(|c| attribute(c, by)).collect())
        }
        c @ (Command::Lease { .. }
        | Command::Heartbeat { .. }
        | Command::Complete { .. }
        | Command::Checkpoint { .. }
        | Command::Release { .. }
        | Command::RegisterNode { .. }
        | Command::Tick
        | Command::Configure(_)
        | Command::TouchTokens(_)
        | Command::BootstrapToken { .. }
        | Command::By { .. }) => c,
        c => Command::By {
            by: by.clone(),
            command: Box::new(c),
        },
    }
}

/// Records an operation done outside the state machine in the audit, as the caller's. The
/// operation is done: failing to record it is logged, not returned.
pub(super) async fn audit_operation(
    service: &ApiService,
    kind: crate::machine::Operation,
    mut target: String,
) {
    if target.len() > limits::OPERATION_TARGET_BYTES_MAX {
        let mut end = limits::OPERATION_TARGET_BYTES_MAX;
        while !target.is_char_boundary(end) {
            end -= 1;
        }
        target.truncate(end);
    }
    let command = attributed(Command::Operation { kind, target });
    if let Err(e) = service.replica.propose(command).await {
        tracing::warn!("{kind:?} done, but not recorded in the audit: {e}");
    }
}

/// Maps a machine response that is not the expected one: a rejection becomes its error.
fn unexpected(response: Applied) -> Status {
    match response {
        Applied::Rejected(r) => Error::from(r).into(),
        other => Error::Internal(format!("unexpected response {other:?}")).into(),
    }
}

/// A handler's result as a tonic reply.
fn reply<T>(result: Result<T, Status>) -> Result<Response<T>, Status> {
    result.map(Response::new)
}

/// Names the list item in an invalid-argument error: `field` becomes `list[i].field`.
fn item_error(list: &str, i: usize, e: Error) -> Error {
    e.within(&format!("{list}[{i}]."))
}

/// Refuses `value` above `max`, naming `field`.
fn check_range(field: &str, value: u64, max: u64) -> Result<(), Error> {
    if value > max {
        return Err(Error::InvalidArgument {
            field: field.into(),
            message: format!("is {value}, the limit is {max}"),
        });
    }
    Ok(())
}

/// This node's Raft view, and the digest of its state when asked.
fn node_status(service: &ApiService, with_digest: bool) -> Result<pb::NodeStatusResponse, Status> {
    let (digest_applied, digest) = if with_digest {
        service.replica.digest()?
    } else {
        (0, String::new())
    };
    let s = service.replica.status();
    Ok(pb::NodeStatusResponse {
        id: s.id,
        state: s.state.to_string(),
        leader: s.leader,
        term: s.term,
        last_applied: s.last_applied,
        last_log_index: s.last_log_index,
        snapshot_index: s.snapshot_index,
        purged_index: s.purged_index,
        members: {
            // The leader knows how far each member's log matches its own.
            let lag: std::collections::BTreeMap<u64, u64> =
                service.replica.replication_lag().into_iter().collect();
            let leading = s.leader == Some(s.id);
            s.members
                .into_iter()
                .map(|(id, node, voter)| pb::Member {
                    id,
                    raft_addr: node.raft_addr,
                    api_addr: node.api_addr,
                    voter,
                    matched_index: match lag.get(&id) {
                        Some(behind) => Some(s.last_log_index.saturating_sub(*behind)),
                        None if leading && id == s.id => Some(s.last_log_index),
                        None => None,
                    },
                })
                .collect()
        },
        cluster: service.replica.cluster_name().to_string(),
        digest,
        digest_applied,
    })
}

#[tonic::async_trait]
impl pb::api_server::Api for ApiService {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        caller.check_queue("queue", &r.queue)?;
        reply(jobs::submit(self, req.into_inner()).await)
    }

    async fn submit_batch(
        &self,
        req: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        for (i, job) in r.jobs.iter().enumerate() {
            caller.check_queue(&format!("jobs[{i}].queue"), &job.queue)?;
        }
        reply(jobs::submit_batch(self, req.into_inner()).await)
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        self.check_job(&caller, "id", r.id)?;
        reply(jobs::get_job(self, req.into_inner()).await)
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        check_queue_filter(&caller, &r.queue)?;
        reply(jobs::list_jobs(self, req.into_inner()).await)
    }

    async fn cancel_job(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        self.check_job(&caller, "id", r.id)?;
        reply(jobs::cancel_job(self, req.into_inner()).await)
    }

    async fn retry_job(
        &self,
        req: Request<pb::RetryJobRequest>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        self.check_job(&caller, "id", r.id)?;
        reply(jobs::retry_job(self, req.into_inner()).await)
    }

    async fn bulk_jobs(
        &self,
        req: Request<pb::BulkJobsRequest>,
    ) -> Result<Response<pb::BulkJobsResponse>, Status> {
        let caller = caller(&req)?;
        let queue = req
            .get_ref()
            .filter
            .as_ref()
            .map(|f| f.queue.clone())
            .unwrap_or_default();
        check_queue_filter(&caller, &queue)?;
        reply(jobs::bulk_jobs(self, req.into_inner()).await)
    }

    async fn pause_queue(
        &self,
        req: Request<pb::QueueRef>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        caller.check_queue("queue", &r.queue)?;
        reply(jobs::pause_queue(self, req.into_inner()).await)
    }

    async fn resume_queue(
        &self,
        req: Request<pb::QueueRef>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        caller.check_queue("queue", &r.queue)?;
        reply(jobs::resume_queue(self, req.into_inner()).await)
    }

    async fn get_queue(
        &self,
        req: Request<pb::QueueRef>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        caller.check_queue("queue", &r.queue)?;
        reply(jobs::get_queue(self, req.into_inner()).await)
    }

    async fn list_queues(
        &self,
        req: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        caller(&req)?.check_all_queues("token")?;
        reply(jobs::list_queues(self, req.into_inner()).await)
    }

    async fn purge_dead(
        &self,
        req: Request<pb::PurgeDeadRequest>,
    ) -> Result<Response<pb::PurgeDeadResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        check_queue_filter(&caller, &r.queue)?;
        reply(jobs::purge_dead(self, req.into_inner()).await)
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        check_queues(&caller, "queues", &r.queues)?;
        reply(workers::lease(self, req.into_inner()).await)
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        reply(workers::heartbeat(self, req.into_inner()).await)
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        self.check_job(&caller, "job_id", r.job_id)?;
        reply(workers::complete(self, req.into_inner()).await)
    }

    async fn complete_and_lease(
        &self,
        req: Request<pb::CompleteAndLeaseRequest>,
    ) -> Result<Response<pb::CompleteAndLeaseResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        for (i, c) in r.completions.iter().enumerate() {
            self.check_job(&caller, &format!("completions[{i}].job_id"), c.job_id)?;
        }
        if let Some(lease) = &r.lease {
            check_queues(&caller, "lease.queues", &lease.queues)?;
        }
        reply(workers::complete_and_lease(self, req.into_inner()).await)
    }

    async fn checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        self.check_job(&caller, "job_id", r.job_id)?;
        reply(workers::checkpoint(self, req.into_inner()).await)
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        self.check_job(&caller, "job_id", r.job_id)?;
        reply(workers::release(self, req.into_inner()).await)
    }

    async fn submit_workflow(
        &self,
        req: Request<pb::SubmitWorkflowRequest>,
    ) -> Result<Response<pb::SubmitWorkflowResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(workflows::submit_workflow(self, req.into_inner()).await)
    }

    async fn get_workflow(
        &self,
        req: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(workflows::get_workflow(self, req.into_inner()).await)
    }

    async fn list_workflows(
        &self,
        req: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(workflows::list_workflows(self, req.into_inner()).await)
    }

    async fn control_workflow(
        &self,
        req: Request<pb::ControlWorkflowRequest>,
    ) -> Result<Response<pb::WorkflowStateReply>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(workflows::control_workflow(self, req.into_inner()).await)
    }

    async fn set_resource(
        &self,
        req: Request<pb::SetResourceRequest>,
    ) -> Result<Response<pb::ResourceInfo>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(locks::set_resource(self, req.into_inner()).await)
    }

    async fn list_resources(
        &self,
        req: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(locks::list_resources(self, req.into_inner()).await)
    }

    async fn acquire_lock(
        &self,
        req: Request<pb::AcquireLockRequest>,
    ) -> Result<Response<pb::LockGrant>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(locks::acquire_lock(self, req.into_inner()).await)
    }

    async fn renew_lock(
        &self,
        req: Request<pb::RenewLockRequest>,
    ) -> Result<Response<pb::LockGrant>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(locks::renew_lock(self, req.into_inner()).await)
    }

    async fn release_lock(
        &self,
        req: Request<pb::ReleaseLockRequest>,
    ) -> Result<Response<pb::ReleaseLockResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(locks::release_lock(self, req.into_inner()).await)
    }

    async fn set_queue_policy(
        &self,
        req: Request<pb::SetQueuePolicyRequest>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        caller.check_queue("queue", &r.queue)?;
        reply(jobs::set_queue_policy(self, req.into_inner()).await)
    }

    async fn create_schedule(
        &self,
        req: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(schedules::create_schedule(self, req.into_inner()).await)
    }

    async fn get_schedule(
        &self,
        req: Request<pb::ScheduleRef>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(schedules::get_schedule(self, req.into_inner()).await)
    }

    async fn list_schedules(
        &self,
        req: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(schedules::list_schedules(self, req.into_inner()).await)
    }

    async fn control_schedule(
        &self,
        req: Request<pb::ControlScheduleRequest>,
    ) -> Result<Response<pb::ControlScheduleResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(schedules::control_schedule(self, req.into_inner()).await)
    }

    async fn emit(
        &self,
        req: Request<pb::EmitRequest>,
    ) -> Result<Response<pb::EmitResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(events::emit(self, req.into_inner()).await)
    }

    async fn create_trigger(
        &self,
        req: Request<pb::CreateTriggerRequest>,
    ) -> Result<Response<pb::TriggerInfo>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(events::create_trigger(self, req.into_inner()).await)
    }

    async fn list_triggers(
        &self,
        req: Request<pb::ListTriggersRequest>,
    ) -> Result<Response<pb::ListTriggersResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(events::list_triggers(self, req.into_inner()).await)
    }

    async fn delete_trigger(
        &self,
        req: Request<pb::TriggerRef>,
    ) -> Result<Response<pb::DeleteTriggerResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(events::delete_trigger(self, req.into_inner()).await)
    }

    async fn create_timer(
        &self,
        req: Request<pb::CreateTimerRequest>,
    ) -> Result<Response<pb::TimerInfo>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(events::create_timer(self, req.into_inner()).await)
    }

    async fn list_timers(
        &self,
        req: Request<pb::ListTimersRequest>,
    ) -> Result<Response<pb::ListTimersResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(events::list_timers(self, req.into_inner()).await)
    }

    async fn cancel_timer(
        &self,
        req: Request<pb::TimerRef>,
    ) -> Result<Response<pb::CancelTimerResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(events::cancel_timer(self, req.into_inner()).await)
    }

    async fn node_status(
        &self,
        req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        reply(node_status(self, req.into_inner().with_digest))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(tokens::create_token(self, req.into_inner()).await)
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(tokens::list_tokens(self, req.into_inner()).await)
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("token")?;
        reply(tokens::revoke_token(self, req.into_inner()).await)
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("audit")?;
        reply(tokens::list_audit(self, req.into_inner()).await)
    }

    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::ChangeMembershipResponse>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("membership")?;
        reply(members::change_membership(self, req.into_inner()).await)
    }

    type SaveSnapshotStream = backup::ChunkStream;

    async fn save_snapshot(
        &self,
        req: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<Self::SaveSnapshotStream>, Status> {
        let caller = caller(&req)?;
        caller.check_all_queues("snapshot")?;
        Ok(Response::new(backup::save_snapshot(self).await?))
    }
    async fn create_webhook(
        &self,
        req: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::CreateWebhookResponse>, Status> {
        caller(&req)?.check_all_queues("token")?;
        reply(webhooks::create_webhook(self, req.into_inner()).await)
    }

    async fn list_webhooks(
        &self,
        req: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        caller(&req)?.check_all_queues("token")?;
        reply(webhooks::list_webhooks(self, req.into_inner()).await)
    }

    async fn delete_webhook(
        &self,
        req: Request<pb::WebhookRef>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        caller(&req)?.check_all_queues("token")?;
        reply(webhooks::delete_webhook(self, req.into_inner()).await)
    }

    async fn test_webhook(
        &self,
        req: Request<pb::WebhookRef>,
    ) -> Result<Response<pb::TestWebhookResponse>, Status> {
        caller(&req)?.check_all_queues("token")?;
        reply(webhooks::test_webhook(self, req.into_inner()).await)
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        caller(&req)?.check_all_queues("token")?;
        reply(webhooks::list_deliveries(self, req.into_inner()).await)
    }

    async fn get_cursor(
        &self,
        req: Request<pb::GetCursorRequest>,
    ) -> Result<Response<pb::CursorInfo>, Status> {
        reply(cursors::get_cursor(self, req.into_inner()).await)
    }

    async fn put_cursor(
        &self,
        req: Request<pb::PutCursorRequest>,
    ) -> Result<Response<pb::CursorInfo>, Status> {
        // A cursor belongs to no queue, and moving another importer's ahead makes it skip
        // items: not for a token limited to some queues.
        caller(&req)?.check_all_queues("cursor")?;
        reply(cursors::put_cursor(self, req.into_inner()).await)
    }
}
