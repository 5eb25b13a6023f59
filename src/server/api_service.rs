//! The public `Api` service: validate, then propose (writes) or read.
//!
//! Every write is checked here before it is proposed (so bad input writes nothing) and checked
//! again by the machine when applied. Reads are linearizable unless the request says `stale`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::machine::{limits, Command, Response as Applied, WorkerRef};
use crate::proto::{self, pb};
use crate::raft::Replica;

/// Serves clients and external workers.
pub struct ApiService {
    replica: Arc<Replica>,
}

impl ApiService {
    /// A service over this node's replica.
    pub fn new(replica: Arc<Replica>) -> Self {
        ApiService { replica }
    }

    async fn read_barrier(&self, stale: bool) -> Result<(), Status> {
        if !stale {
            self.replica.read_barrier().await?;
        }
        Ok(())
    }

    /// Proposes a command that ends in a job state (cancel, retry, complete, ...).
    async fn job_command(
        &self,
        id: u64,
        command: Command,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        match self.replica.propose(command).await? {
            Applied::Done { state } | Applied::Completed { state } => {
                Ok(Response::new(pb::JobStateReply {
                    id,
                    state: state.name().to_string(),
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    fn queue_info(&self, queue: &str) -> pb::QueueInfo {
        self.replica.read(|m| {
            let (stats, paused) = m.queue(queue);
            proto::queue(queue, &stats, paused, m.queue_control(queue))
        })
    }

    async fn pause(&self, queue: String, paused: bool) -> Result<Response<pb::QueueInfo>, Status> {
        match self
            .replica
            .propose(Command::PauseQueue {
                queue: queue.clone(),
                paused,
            })
            .await?
        {
            Applied::Ok => {
                // Read our own write: this node may not have applied it yet.
                self.replica.read_barrier().await?;
                Ok(Response::new(self.queue_info(&queue)))
            }
            other => Err(unexpected(other)),
        }
    }
}

/// The state of a schedule run's job or workflow, if still held.
fn run_state(m: &crate::machine::Machine, o: &crate::machine::schedule::RunOutcome) -> String {
    use crate::machine::schedule::RunOutcome;
    match o {
        RunOutcome::Job(id) => m.job(*id).map(|j| j.state.name().to_string()),
        RunOutcome::Workflow(id) => m.workflow(*id).map(|w| w.state.name().to_string()),
        _ => None,
    }
    .unwrap_or_default()
}

impl ApiService {
    fn schedule_id(&self, r: &pb::ScheduleRef) -> Result<u64, Status> {
        if r.id != 0 {
            return Ok(r.id);
        }
        self.replica
            .read(|m| m.schedule_id(&r.name))
            .ok_or_else(|| Error::NotFound(format!("schedule {:?}", r.name)).into())
    }

    fn schedule_info(&self, id: u64) -> Result<pb::ScheduleInfo, Status> {
        self.replica
            .read(|m| {
                m.schedule(id)
                    .map(|s| proto::schedule(s, |o| run_state(m, o)))
            })
            .ok_or_else(|| Error::NotFound(format!("schedule {id}")).into())
    }
}

/// Maps a machine response that is not the expected one: a rejection becomes its error.
fn unexpected(response: Applied) -> Status {
    match response {
        Applied::Rejected(r) => Error::from(r).into(),
        other => Error::Internal(format!("unexpected response {other:?}")).into(),
    }
}

/// Names the list item in an invalid-argument error: `field` becomes `list[i].field`.
fn item_error(list: &str, i: usize, e: Error) -> Error {
    e.within(&format!("{list}[{i}]."))
}

/// A submit request checked and turned into its command; nothing is proposed.
fn submit_command(req: pb::SubmitRequest) -> Result<Command, Error> {
    let (spec, delay_ms, run_at_ms) = proto::submit(req)?;
    spec.validate().map_err(Error::from)?;
    check_range("delay_ms", delay_ms, limits::DELAY_MS_MAX)?;
    Ok(Command::Submit {
        spec,
        delay_ms,
        run_at_ms,
    })
}

fn check_range(field: &str, value: u64, max: u64) -> Result<(), Error> {
    if value > max {
        return Err(Error::InvalidArgument {
            field: field.into(),
            message: format!("is {value}, the limit is {max}"),
        });
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::api_server::Api for ApiService {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let command = submit_command(req.into_inner())?;
        match self.replica.propose(command).await? {
            Applied::Submitted { id, duplicate } => {
                Ok(Response::new(pb::SubmitResponse { id, duplicate }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn submit_batch(
        &self,
        req: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let jobs = req.into_inner().jobs;
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
        let Applied::Batch(responses) = self.replica.propose(Command::Batch(commands)).await?
        else {
            return Err(Error::Internal("a batch was not answered with a batch".into()).into());
        };
        let mut out = Vec::with_capacity(responses.len());
        for (i, response) in responses.into_iter().enumerate() {
            match response {
                Applied::Submitted { id, duplicate } => {
                    out.push(pb::SubmitResponse { id, duplicate })
                }
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
                other => return Err(unexpected(other)),
            }
        }
        Ok(Response::new(pb::SubmitBatchResponse { jobs: out }))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let req = req.into_inner();
        self.read_barrier(req.stale).await?;
        match self.replica.read(|m| m.job(req.id).map(proto::job)) {
            Some(job) => Ok(Response::new(job)),
            None => Err(Error::NotFound(format!("job {}", req.id)).into()),
        }
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let req = req.into_inner();
        let state = proto::state(&req.state)?;
        let queue = (!req.queue.is_empty()).then_some(req.queue.as_str());
        self.read_barrier(req.stale).await?;
        let limit = proto::list_limit(req.limit);
        let jobs = self.replica.read(|m| {
            m.list(queue, state, req.after_id, limit)
                .into_iter()
                .map(proto::job)
                .collect()
        });
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let id = req.into_inner().id;
        self.job_command(id, Command::Cancel { job_id: id }).await
    }

    async fn retry_job(
        &self,
        req: Request<pb::RetryJobRequest>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let req = req.into_inner();
        let changes = proto::changes(&req);
        self.job_command(
            req.id,
            Command::Requeue {
                job_id: req.id,
                changes,
            },
        )
        .await
    }

    async fn pause_queue(
        &self,
        req: Request<pb::QueueRef>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        self.pause(req.into_inner().queue, true).await
    }

    async fn resume_queue(
        &self,
        req: Request<pb::QueueRef>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        self.pause(req.into_inner().queue, false).await
    }

    async fn get_queue(
        &self,
        req: Request<pb::QueueRef>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        let req = req.into_inner();
        crate::machine::job::validate_queue_name("queue", &req.queue).map_err(Error::from)?;
        self.read_barrier(req.stale).await?;
        Ok(Response::new(self.queue_info(&req.queue)))
    }

    async fn list_queues(
        &self,
        req: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        self.read_barrier(req.into_inner().stale).await?;
        let queues = self.replica.read(|m| {
            m.queue_names()
                .iter()
                .map(|q| {
                    let (stats, paused) = m.queue(q);
                    proto::queue(q, &stats, paused, m.queue_control(q))
                })
                .collect()
        });
        Ok(Response::new(pb::ListQueuesResponse { queues }))
    }

    async fn purge_dead(
        &self,
        req: Request<pb::PurgeDeadRequest>,
    ) -> Result<Response<pb::PurgeDeadResponse>, Status> {
        let queue = req.into_inner().queue;
        let queue = (!queue.is_empty()).then_some(queue);
        if let Some(q) = &queue {
            crate::machine::job::validate_queue_name("queue", q).map_err(Error::from)?;
        }
        match self.replica.propose(Command::PurgeDead { queue }).await? {
            Applied::Purged { count } => Ok(Response::new(pb::PurgeDeadResponse { purged: count })),
            other => Err(unexpected(other)),
        }
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let req = req.into_inner();
        check_range("wait_ms", req.wait_ms, limits::LEASE_WAIT_MS_MAX)?;
        let worker = WorkerRef {
            id: req.worker_id,
            node: None,
        };
        let grants = lease_wait(
            &self.replica,
            &worker,
            &req.queues,
            &req.capabilities,
            req.max.max(1),
            (req.ttl_ms != 0).then_some(req.ttl_ms),
            Duration::from_millis(req.wait_ms),
        )
        .await?;
        Ok(Response::new(pb::LeaseResponse {
            jobs: grants.iter().map(proto::leased).collect(),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let worker = req.into_inner().worker_id;
        match self.replica.propose(Command::Heartbeat { worker }).await? {
            Applied::Heartbeated(held) => Ok(Response::new(pb::HeartbeatResponse {
                leases: held
                    .into_iter()
                    .map(|(job_id, token, expires_ms)| pb::HeldLease {
                        job_id,
                        token,
                        expires_ms,
                    })
                    .collect(),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let req = req.into_inner();
        let report = proto::report(&req)?;
        let command = Command::Complete {
            job_id: req.job_id,
            token: req.token,
            report,
        };
        self.job_command(req.job_id, command).await
    }

    async fn complete_and_lease(
        &self,
        req: Request<pb::CompleteAndLeaseRequest>,
    ) -> Result<Response<pb::CompleteAndLeaseResponse>, Status> {
        let req = req.into_inner();
        check_range(
            "completions",
            req.completions.len() as u64,
            limits::COMPLETIONS_PER_CALL_MAX as u64,
        )?;
        let lease = req.lease.unwrap_or_default();
        check_range("lease.wait_ms", lease.wait_ms, limits::LEASE_WAIT_MS_MAX)?;
        check_range(
            "lease.max",
            u64::from(lease.max),
            u64::from(limits::LEASE_BATCH_MAX),
        )?;
        let mut commands = Vec::with_capacity(req.completions.len() + 1);
        for (i, c) in req.completions.iter().enumerate() {
            let report = proto::report(c).map_err(|e| item_error("completions", i, e))?;
            commands.push(Command::Complete {
                job_id: c.job_id,
                token: c.token,
                report,
            });
        }
        let worker = WorkerRef {
            id: lease.worker_id.clone(),
            node: None,
        };
        let ttl_ms = (lease.ttl_ms != 0).then_some(lease.ttl_ms);
        let leasing = lease.max > 0;
        if leasing {
            commands.push(Command::Lease {
                worker: worker.clone(),
                queues: lease.queues.clone(),
                capabilities: lease.capabilities.clone(),
                max: lease.max,
                ttl_ms,
            });
        }
        let mut responses = if commands.is_empty() {
            Vec::new()
        } else {
            match self.replica.propose(Command::Batch(commands)).await? {
                Applied::Batch(r) => r,
                other => return Err(unexpected(other)),
            }
        };
        // The lease, when asked for, is the batch's last command.
        let mut grants = if leasing {
            match responses.pop() {
                Some(Applied::Leased(grants)) => grants,
                Some(Applied::Rejected(r)) => return Err(Error::from(r).into()),
                other => {
                    return Err(
                        Error::Internal(format!("unexpected lease response {other:?}")).into(),
                    )
                }
            }
        } else {
            Vec::new()
        };
        let completions = req
            .completions
            .iter()
            .zip(responses)
            .map(|(c, r)| match r {
                Applied::Completed { state } | Applied::Done { state } => pb::CompletionResult {
                    job_id: c.job_id,
                    state: state.name().to_string(),
                    ..Default::default()
                },
                other => {
                    let status = match other {
                        Applied::Rejected(r) => Status::from(Error::from(r)),
                        other => unexpected(other),
                    };
                    pb::CompletionResult {
                        job_id: c.job_id,
                        state: String::new(),
                        error_code: format!("{:?}", status.code()),
                        error: status.message().to_string(),
                    }
                }
            })
            .collect();
        if leasing && grants.is_empty() && lease.wait_ms > 0 {
            grants = lease_wait(
                &self.replica,
                &worker,
                &lease.queues,
                &lease.capabilities,
                lease.max,
                ttl_ms,
                Duration::from_millis(lease.wait_ms),
            )
            .await?;
        }
        Ok(Response::new(pb::CompleteAndLeaseResponse {
            completions,
            jobs: grants.iter().map(proto::leased).collect(),
        }))
    }

    async fn checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let req = req.into_inner();
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
        self.job_command(req.job_id, command).await
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::JobStateReply>, Status> {
        let req = req.into_inner();
        let command = Command::Release {
            job_id: req.job_id,
            token: req.token,
        };
        self.job_command(req.job_id, command).await
    }

    async fn submit_workflow(
        &self,
        req: Request<pb::SubmitWorkflowRequest>,
    ) -> Result<Response<pb::SubmitWorkflowResponse>, Status> {
        let spec = proto::workflow_spec(req.into_inner())?;
        match self.replica.propose(Command::SubmitWorkflow(spec)).await? {
            Applied::WorkflowSubmitted { id } => {
                Ok(Response::new(pb::SubmitWorkflowResponse { id }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn get_workflow(
        &self,
        req: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let req = req.into_inner();
        self.read_barrier(req.stale).await?;
        match self.replica.read(|m| {
            m.workflow(req.id)
                .map(|w| proto::workflow(w, m.now_ms(), true))
        }) {
            Some(w) => Ok(Response::new(w)),
            None => Err(Error::NotFound(format!("workflow {}", req.id)).into()),
        }
    }

    async fn list_workflows(
        &self,
        req: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        let req = req.into_inner();
        let state = proto::workflow_state(&req.state)?;
        self.read_barrier(req.stale).await?;
        let limit = proto::list_limit(req.limit);
        let workflows = self.replica.read(|m| {
            m.list_workflows(state, req.after_id, limit)
                .into_iter()
                .map(|w| proto::workflow(w, m.now_ms(), false))
                .collect()
        });
        Ok(Response::new(pb::ListWorkflowsResponse { workflows }))
    }

    async fn control_workflow(
        &self,
        req: Request<pb::ControlWorkflowRequest>,
    ) -> Result<Response<pb::WorkflowStateReply>, Status> {
        let req = req.into_inner();
        let op = proto::workflow_op(&req)?;
        match self
            .replica
            .propose(Command::Workflow { id: req.id, op })
            .await?
        {
            Applied::WorkflowChanged { state } => Ok(Response::new(pb::WorkflowStateReply {
                id: req.id,
                state: state.name().into(),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn set_resource(
        &self,
        req: Request<pb::SetResourceRequest>,
    ) -> Result<Response<pb::ResourceInfo>, Status> {
        let req = req.into_inner();
        let command = Command::SetResource {
            name: req.name.clone(),
            capacity: req.capacity,
        };
        match self.replica.propose(command).await? {
            Applied::Ok => {
                self.replica.read_barrier().await?;
                let view = self.replica.read(|m| m.resource_views(Some(&req.name)));
                let info = view
                    .first()
                    .map(proto::resource)
                    .ok_or_else(|| Error::Internal(format!("resource {} vanished", req.name)))?;
                Ok(Response::new(info))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn list_resources(
        &self,
        req: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let req = req.into_inner();
        self.read_barrier(req.stale).await?;
        let only = (!req.name.is_empty()).then_some(req.name.as_str());
        let resources: Vec<pb::ResourceInfo> = self
            .replica
            .read(|m| m.resource_views(only).iter().map(proto::resource).collect());
        if let (Some(name), true) = (only, resources.is_empty()) {
            return Err(Error::NotFound(format!("resource {name}")).into());
        }
        Ok(Response::new(pb::ListResourcesResponse { resources }))
    }

    async fn acquire_lock(
        &self,
        req: Request<pb::AcquireLockRequest>,
    ) -> Result<Response<pb::LockGrant>, Status> {
        let req = req.into_inner();
        check_range("wait_ms", req.wait_ms, limits::LOCK_WAIT_MS_MAX)?;
        let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
        let mut changes = self.replica.changes();
        loop {
            changes.mark_seen();
            let command = Command::LockAcquire {
                resource: req.resource.clone(),
                owner: req.owner.clone(),
                ttl_ms: req.ttl_ms,
            };
            match self.replica.propose(command).await? {
                Applied::LockGranted { token, expires_ms } => {
                    return Ok(Response::new(pb::LockGrant { token, expires_ms }))
                }
                Applied::LockBusy {
                    capacity,
                    next_expiry_ms,
                } => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let expiry = next_expiry_ms
                            .map(|t| format!("; the first lock held expires at {t}"))
                            .unwrap_or_default();
                        return Err(Error::FailedPrecondition(format!(
                            "{} is busy: all {capacity} units are held{expiry}",
                            req.resource
                        ))
                        .into());
                    }
                    // Wait for the next applied change (a release, an expiry, a job ending).
                    let _ = tokio::time::timeout(left, changes.changed()).await;
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    async fn renew_lock(
        &self,
        req: Request<pb::RenewLockRequest>,
    ) -> Result<Response<pb::LockGrant>, Status> {
        let req = req.into_inner();
        let command = Command::LockRenew {
            resource: req.resource,
            token: req.token,
            ttl_ms: req.ttl_ms,
        };
        match self.replica.propose(command).await? {
            Applied::LockGranted { token, expires_ms } => {
                Ok(Response::new(pb::LockGrant { token, expires_ms }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn release_lock(
        &self,
        req: Request<pb::ReleaseLockRequest>,
    ) -> Result<Response<pb::ReleaseLockResponse>, Status> {
        let req = req.into_inner();
        let command = Command::LockRelease {
            resource: req.resource,
            token: req.token,
        };
        match self.replica.propose(command).await? {
            Applied::Ok => Ok(Response::new(pb::ReleaseLockResponse {})),
            other => Err(unexpected(other)),
        }
    }

    async fn set_queue_policy(
        &self,
        req: Request<pb::SetQueuePolicyRequest>,
    ) -> Result<Response<pb::QueueInfo>, Status> {
        let req = req.into_inner();
        let command = Command::SetQueuePolicy {
            queue: req.queue.clone(),
            policy: proto::queue_policy(&req),
        };
        match self.replica.propose(command).await? {
            Applied::Ok => {
                self.replica.read_barrier().await?;
                Ok(Response::new(self.queue_info(&req.queue)))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn create_schedule(
        &self,
        req: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        let spec = proto::schedule_spec(req.into_inner())?;
        match self.replica.propose(Command::CreateSchedule(spec)).await? {
            Applied::ScheduleCreated { id, .. } => {
                self.replica.read_barrier().await?;
                Ok(Response::new(self.schedule_info(id)?))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn get_schedule(
        &self,
        req: Request<pb::ScheduleRef>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        let req = req.into_inner();
        self.read_barrier(req.stale).await?;
        let id = self.schedule_id(&req)?;
        Ok(Response::new(self.schedule_info(id)?))
    }

    async fn list_schedules(
        &self,
        req: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        self.read_barrier(req.into_inner().stale).await?;
        let schedules = self.replica.read(|m| {
            m.schedules()
                .map(|s| proto::schedule(s, |o| run_state(m, o)))
                .collect()
        });
        Ok(Response::new(pb::ListSchedulesResponse { schedules }))
    }

    async fn control_schedule(
        &self,
        req: Request<pb::ControlScheduleRequest>,
    ) -> Result<Response<pb::ControlScheduleResponse>, Status> {
        use crate::machine::schedule::ScheduleOp;
        let req = req.into_inner();
        let op = match req.op.as_str() {
            "pause" => ScheduleOp::Pause,
            "resume" => ScheduleOp::Resume,
            "trigger" => ScheduleOp::Trigger,
            "delete" => ScheduleOp::Delete,
            "backfill" => ScheduleOp::Backfill {
                from_ms: req.from_ms,
                to_ms: req.to_ms,
            },
            other => {
                return Err(Error::InvalidArgument {
                    field: "op".into(),
                    message: format!(
                        "{other:?} is not one of pause, resume, trigger, delete, backfill"
                    ),
                }
                .into())
            }
        };
        let reference = req.schedule.unwrap_or_default();
        // A name is resolved on this node's state after a read barrier.
        self.replica.read_barrier().await?;
        let id = self.schedule_id(&reference)?;
        match self.replica.propose(Command::Schedule { id, op }).await? {
            Applied::ScheduleChanged { started } => {
                Ok(Response::new(pb::ControlScheduleResponse { id, started }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn emit(
        &self,
        req: Request<pb::EmitRequest>,
    ) -> Result<Response<pb::EmitResponse>, Status> {
        let req = req.into_inner();
        let command = Command::Emit {
            topic: req.topic,
            dedup_key: req.dedup_key,
            payload: req.payload,
        };
        match self.replica.propose(command).await? {
            Applied::Emitted { started, duplicate } => Ok(Response::new(pb::EmitResponse {
                duplicate,
                jobs: started.jobs,
                workflows: started.workflows,
                failed: started.failed,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn create_trigger(
        &self,
        req: Request<pb::CreateTriggerRequest>,
    ) -> Result<Response<pb::TriggerInfo>, Status> {
        let req = req.into_inner();
        let topic = req.topic.clone();
        let target = proto::trigger_target(req)?;
        match self
            .replica
            .propose(Command::CreateTrigger { topic, target })
            .await?
        {
            Applied::TriggerCreated { id } => {
                self.replica.read_barrier().await?;
                let info = self
                    .replica
                    .read(|m| m.triggers().find(|t| t.id == id).map(proto::trigger));
                info.map(Response::new)
                    .ok_or_else(|| Error::Internal(format!("trigger {id} vanished")).into())
            }
            other => Err(unexpected(other)),
        }
    }

    async fn list_triggers(
        &self,
        req: Request<pb::ListTriggersRequest>,
    ) -> Result<Response<pb::ListTriggersResponse>, Status> {
        self.read_barrier(req.into_inner().stale).await?;
        let triggers = self
            .replica
            .read(|m| m.triggers().map(proto::trigger).collect());
        Ok(Response::new(pb::ListTriggersResponse { triggers }))
    }

    async fn delete_trigger(
        &self,
        req: Request<pb::TriggerRef>,
    ) -> Result<Response<pb::DeleteTriggerResponse>, Status> {
        let id = req.into_inner().id;
        match self.replica.propose(Command::DeleteTrigger { id }).await? {
            Applied::Ok => Ok(Response::new(pb::DeleteTriggerResponse {})),
            other => Err(unexpected(other)),
        }
    }

    async fn create_timer(
        &self,
        req: Request<pb::CreateTimerRequest>,
    ) -> Result<Response<pb::TimerInfo>, Status> {
        let req = req.into_inner();
        check_range("delay_ms", req.delay_ms, limits::DELAY_MS_MAX)?;
        let command = Command::CreateTimer {
            due_ms: req.due_ms,
            delay_ms: req.delay_ms,
            topic: req.topic.clone(),
            dedup_key: req.dedup_key.clone(),
            payload: req.payload,
        };
        match self.replica.propose(command).await? {
            Applied::TimerCreated { id, due_ms } => Ok(Response::new(pb::TimerInfo {
                id,
                due_ms,
                topic: req.topic,
                dedup_key: req.dedup_key,
                created_ms: 0,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn list_timers(
        &self,
        req: Request<pb::ListTimersRequest>,
    ) -> Result<Response<pb::ListTimersResponse>, Status> {
        self.read_barrier(req.into_inner().stale).await?;
        let timers = self.replica.read(|m| {
            m.timers()
                .take(limits::LIST_LIMIT_MAX as usize)
                .map(|t| pb::TimerInfo {
                    id: t.id,
                    due_ms: t.due_ms,
                    topic: t.topic.clone(),
                    dedup_key: t.dedup_key.clone(),
                    created_ms: t.created_ms,
                })
                .collect()
        });
        Ok(Response::new(pb::ListTimersResponse { timers }))
    }

    async fn cancel_timer(
        &self,
        req: Request<pb::TimerRef>,
    ) -> Result<Response<pb::CancelTimerResponse>, Status> {
        let id = req.into_inner().id;
        match self.replica.propose(Command::CancelTimer { id }).await? {
            Applied::Ok => Ok(Response::new(pb::CancelTimerResponse {})),
            other => Err(unexpected(other)),
        }
    }

    async fn node_status(
        &self,
        req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let (digest_applied, digest) = if req.into_inner().with_digest {
            self.replica.digest()?
        } else {
            (0, String::new())
        };
        let s = self.replica.status();
        Ok(Response::new(pb::NodeStatusResponse {
            id: s.id,
            state: s.state.to_string(),
            leader: s.leader,
            term: s.term,
            last_applied: s.last_applied,
            last_log_index: s.last_log_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            members: s
                .members
                .into_iter()
                .map(|(id, node, voter)| pb::Member {
                    id,
                    raft_addr: node.raft_addr,
                    api_addr: node.api_addr,
                    voter,
                })
                .collect(),
            cluster: String::new(),
            digest,
            digest_applied,
        }))
    }
}

/// Leases for `worker`, waiting up to `wait` for a job (long-poll). Proposes a Lease only when
/// this node's state shows ready jobs in the queues, so an idle worker writes nothing to the
/// log; otherwise waits for the next applied change.
pub async fn lease_wait(
    replica: &Replica,
    worker: &WorkerRef,
    queues: &[String],
    capabilities: &[String],
    max: u32,
    ttl_ms: Option<u64>,
    wait: Duration,
) -> Result<Vec<crate::machine::Grant>, Error> {
    let deadline = Instant::now() + wait;
    let mut changes = replica.changes();
    loop {
        if replica.read(|m| m.leasable(queues, capabilities, worker.node.is_some())) {
            let command = Command::Lease {
                worker: worker.clone(),
                queues: queues.to_vec(),
                capabilities: capabilities.to_vec(),
                max,
                ttl_ms,
            };
            match replica.propose(command).await? {
                Applied::Leased(grants) if !grants.is_empty() => return Ok(grants),
                Applied::Leased(_) => changes.mark_seen(),
                Applied::Rejected(r) => return Err(r.into()),
                other => return Err(Error::Internal(format!("unexpected response {other:?}"))),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Vec::new());
        }
        let _ = tokio::time::timeout(left, changes.changed()).await;
    }
}
