//! A client of the public API over one or more node addresses, used by the CLI, the external
//! worker, tests, `jepsen/` and `bench/`.
//!
//! Any node serves every call (followers forward writes to the leader), so the client only
//! needs one reachable node. It tries the addresses in turn, starting with the last one that
//! answered, at most once each per call (so a call's retries are bounded by the address
//! list). A write moves on to the next address only when the request provably never left this
//! process (its connection could not be established, see [`retry::not_sent`]); once a node may
//! have it, its answer is final, so a retry can never submit a job twice. Reads move on after
//! any UNAVAILABLE.
//!
//! This module sits below the command line and the node: it imports only the wire types,
//! the error type and the limits.

mod cursors;
pub mod retry;
mod webhooks;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::machine::{limits, Report};
use crate::proto::pb;
use crate::proto::pb::api_client::ApiClient;
use retry::not_sent;

/// Connect timeout per node.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(limits::CLIENT_CONNECT_MS_MAX);

/// How a client reaches the nodes: the token it presents (`authorization: Bearer`), and the
/// CA it checks them against when they serve TLS.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The token's secret.
    pub token: Option<String>,
    /// The cluster CA certificate (PEM); `None` = plaintext.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Puts the token on every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// The generated API client with the token interceptor.
type Api = ApiClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// A client over a fixed set of node addresses.
pub struct Client {
    nodes: Vec<(String, Api)>,
    preferred: AtomicUsize,
}

impl Client {
    /// A client of the nodes at `addrs` (`host:port`) presenting no token over plaintext;
    /// connections open lazily.
    pub fn new<S: AsRef<str>>(addrs: &[S]) -> Result<Client> {
        Client::with_access(addrs, &Access::default())
    }

    /// A client of the nodes at `addrs` with `access` (token, TLS).
    pub fn with_access<S: AsRef<str>>(addrs: &[S], access: &Access) -> Result<Client> {
        let bearer = match &access.token {
            Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| {
                Error::Config("the token has characters a header can't carry".into())
            })?),
            None => None,
        };
        let tls = match &access.ca_file {
            Some(ca) => Some(crate::tls::client_config(ca, None)?),
            None => None,
        };
        if addrs.is_empty() {
            return Err(Error::Config("no node address given (--addr)".into()));
        }
        let nodes = addrs
            .iter()
            .map(|a| {
                let addr = a.as_ref().trim().to_string();
                let client = api_client(&addr, Bearer(bearer.clone()), tls.clone())?;
                Ok((addr, client))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Client {
            nodes,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The addresses this client uses.
    pub fn addrs(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|(a, _)| a.as_str())
    }

    async fn call<T, F, Fut>(&self, idempotent: bool, f: F) -> Result<T>
    where
        F: Fn(Api) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.nodes.len() {
            let index = (start + i) % self.nodes.len();
            let (addr, client) = &self.nodes[index];
            match f(client.clone()).await {
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(reply.into_inner());
                }
                Err(status) => {
                    let retry = not_sent(&status)
                        || crate::error::not_member(&status)
                        || (idempotent && status.code() == tonic::Code::Unavailable);
                    if !retry {
                        return Err(status.into());
                    }
                    last = Some(match Error::from(status) {
                        Error::Unavailable { message, leader } => Error::Unavailable {
                            message: format!("{addr}: {message}"),
                            leader,
                        },
                        e => e,
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable("no node answered")))
    }

    /// Submits a job; returns its id.
    pub async fn submit(&self, req: pb::SubmitRequest) -> Result<u64> {
        Ok(self.submit_full(req).await?.id)
    }

    /// Submits a job; returns the id and whether an idempotency key matched an earlier job.
    pub async fn submit_full(&self, req: pb::SubmitRequest) -> Result<pb::SubmitResponse> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.submit(req).await }
        })
        .await
    }

    /// Submits up to `SUBMIT_BATCH_JOBS_MAX` jobs in one call and one log entry; results in
    /// order. One invalid job refuses the whole call and adds nothing.
    pub async fn submit_batch(
        &self,
        jobs: Vec<pb::SubmitRequest>,
    ) -> Result<Vec<pb::SubmitResponse>> {
        let req = pb::SubmitBatchRequest { jobs };
        fits(&req)?;
        let reply = self
            .call(false, |mut c| {
                let req = req.clone();
                async move { c.submit_batch(req).await }
            })
            .await?;
        Ok(reply.jobs)
    }

    /// Starts a workflow; returns its id.
    pub async fn submit_workflow(&self, req: pb::SubmitWorkflowRequest) -> Result<u64> {
        fits(&req)?;
        let reply = self
            .call(false, |mut c| {
                let req = req.clone();
                async move { c.submit_workflow(req).await }
            })
            .await?;
        Ok(reply.id)
    }

    /// Reads a workflow with its steps, linearizable unless `stale`.
    pub async fn workflow(&self, id: u64, stale: bool) -> Result<pb::Workflow> {
        self.call(true, |mut c| async move {
            c.get_workflow(pb::GetWorkflowRequest { id, stale }).await
        })
        .await
    }

    /// Lists workflows (without their steps).
    pub async fn list_workflows(&self, req: pb::ListWorkflowsRequest) -> Result<Vec<pb::Workflow>> {
        fits(&req)?;
        let reply = self
            .call(true, |mut c| {
                let req = req.clone();
                async move { c.list_workflows(req).await }
            })
            .await?;
        Ok(reply.workflows)
    }

    /// Cancels, pauses, resumes (`step` empty), or retries or skips a step of a workflow;
    /// returns the workflow's new state.
    pub async fn control_workflow(&self, id: u64, op: &str, step: &str) -> Result<String> {
        let req = pb::ControlWorkflowRequest {
            id,
            op: op.to_string(),
            step: step.to_string(),
        };
        fits(&req)?;
        let reply = self
            .call(false, |mut c| {
                let req = req.clone();
                async move { c.control_workflow(req).await }
            })
            .await?;
        Ok(reply.state)
    }

    /// Creates a resource or changes its capacity.
    pub async fn set_resource(&self, name: &str, capacity: u32) -> Result<pb::ResourceInfo> {
        let req = pb::SetResourceRequest {
            name: name.to_string(),
            capacity,
        };
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.set_resource(req).await }
        })
        .await
    }

    /// Every resource (or the one named) with holders and waiters.
    pub async fn resources(&self, name: &str, stale: bool) -> Result<Vec<pb::ResourceInfo>> {
        let req = pb::ListResourcesRequest {
            name: name.to_string(),
            stale,
        };
        fits(&req)?;
        let reply = self
            .call(true, |mut c| {
                let req = req.clone();
                async move { c.list_resources(req).await }
            })
            .await?;
        Ok(reply.resources)
    }

    /// Acquires one unit of a resource as a lock, waiting up to `wait_ms` for one to free.
    pub async fn acquire_lock(&self, req: pb::AcquireLockRequest) -> Result<pb::LockGrant> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.acquire_lock(req).await }
        })
        .await
    }

    /// Extends a lock held under `token` to `ttl_ms` from now.
    pub async fn renew_lock(
        &self,
        resource: &str,
        token: u64,
        ttl_ms: u64,
    ) -> Result<pb::LockGrant> {
        let req = pb::RenewLockRequest {
            resource: resource.to_string(),
            token,
            ttl_ms,
        };
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.renew_lock(req).await }
        })
        .await
    }

    /// Releases a lock held under `token`.
    pub async fn release_lock(&self, resource: &str, token: u64) -> Result<()> {
        let req = pb::ReleaseLockRequest {
            resource: resource.to_string(),
            token,
        };
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.release_lock(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Replaces a queue's rate limit, concurrency limit and breaker.
    pub async fn set_queue_policy(&self, req: pb::SetQueuePolicyRequest) -> Result<pb::QueueInfo> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.set_queue_policy(req).await }
        })
        .await
    }

    /// Creates a cron schedule.
    pub async fn create_schedule(
        &self,
        req: pb::CreateScheduleRequest,
    ) -> Result<pb::ScheduleInfo> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.create_schedule(req).await }
        })
        .await
    }

    /// Reads a schedule by id, or by name when `id` is 0.
    pub async fn schedule(&self, id: u64, name: &str) -> Result<pb::ScheduleInfo> {
        let req = pb::ScheduleRef {
            id,
            name: name.to_string(),
            stale: false,
        };
        fits(&req)?;
        self.call(true, |mut c| {
            let req = req.clone();
            async move { c.get_schedule(req).await }
        })
        .await
    }

    /// Every schedule.
    pub async fn schedules(&self) -> Result<Vec<pb::ScheduleInfo>> {
        let reply = self
            .call(true, |mut c| async move {
                c.list_schedules(pb::ListSchedulesRequest { stale: false })
                    .await
            })
            .await?;
        Ok(reply.schedules)
    }

    /// Pauses, resumes, triggers, deletes or backfills a schedule.
    pub async fn control_schedule(
        &self,
        req: pb::ControlScheduleRequest,
    ) -> Result<pb::ControlScheduleResponse> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.control_schedule(req).await }
        })
        .await
    }

    /// Emits an event.
    pub async fn emit(
        &self,
        topic: &str,
        dedup_key: &str,
        payload: Vec<u8>,
    ) -> Result<pb::EmitResponse> {
        let req = pb::EmitRequest {
            topic: topic.to_string(),
            dedup_key: dedup_key.to_string(),
            payload,
        };
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.emit(req).await }
        })
        .await
    }

    /// Subscribes a job or workflow to a topic.
    pub async fn create_trigger(&self, req: pb::CreateTriggerRequest) -> Result<pb::TriggerInfo> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.create_trigger(req).await }
        })
        .await
    }

    /// Every trigger.
    pub async fn triggers(&self) -> Result<Vec<pb::TriggerInfo>> {
        let reply = self
            .call(true, |mut c| async move {
                c.list_triggers(pb::ListTriggersRequest { stale: false })
                    .await
            })
            .await?;
        Ok(reply.triggers)
    }

    /// Removes a trigger.
    pub async fn delete_trigger(&self, id: u64) -> Result<()> {
        self.call(false, |mut c| async move {
            c.delete_trigger(pb::TriggerRef { id }).await
        })
        .await
        .map(|_| ())
    }

    /// Creates a durable timer that emits an event when due.
    pub async fn create_timer(&self, req: pb::CreateTimerRequest) -> Result<pb::TimerInfo> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.create_timer(req).await }
        })
        .await
    }

    /// Pending timers by due time.
    pub async fn timers(&self) -> Result<Vec<pb::TimerInfo>> {
        let reply = self
            .call(true, |mut c| async move {
                c.list_timers(pb::ListTimersRequest { stale: false }).await
            })
            .await?;
        Ok(reply.timers)
    }

    /// Cancels a pending timer.
    pub async fn cancel_timer(&self, id: u64) -> Result<()> {
        self.call(false, |mut c| async move {
            c.cancel_timer(pb::TimerRef { id }).await
        })
        .await
        .map(|_| ())
    }

    /// Makes an API token (admin); the reply holds its secret.
    pub async fn create_token(
        &self,
        req: pb::CreateTokenRequest,
    ) -> Result<pb::CreateTokenResponse> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.create_token(req).await }
        })
        .await
    }

    /// Every API token (admin).
    pub async fn list_tokens(&self) -> Result<pb::ListTokensResponse> {
        self.call(true, |mut c| async move {
            c.list_tokens(pb::ListTokensRequest {}).await
        })
        .await
    }

    /// Revokes an API token (admin).
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        self.call(false, |mut c| {
            let id = id.to_string();
            async move { c.revoke_token(pb::RevokeTokenRequest { id }).await }
        })
        .await
        .map(|_| ())
    }

    /// The last accepted API writes, newest first (admin).
    pub async fn list_audit(&self, req: pb::ListAuditRequest) -> Result<Vec<pb::AuditEntry>> {
        fits(&req)?;
        let reply = self
            .call(true, |mut c| {
                let req = req.clone();
                async move { c.list_audit(req).await }
            })
            .await?;
        Ok(reply.entries)
    }

    /// Changes the membership, or reads the leader's view of it (action `progress`), admin.
    pub async fn change_membership(
        &self,
        req: pb::ChangeMembershipRequest,
    ) -> Result<pb::ChangeMembershipResponse> {
        fits(&req)?;
        let idempotent = matches!(req.action.as_str(), "progress" | "add" | "promote");
        self.call(idempotent, |mut c| {
            let req = req.clone();
            async move { c.change_membership(req).await }
        })
        .await
    }

    /// Starts a backup: the stream of the snapshot's chunks (admin).
    pub async fn save_snapshot(&self) -> Result<tonic::Streaming<pb::SnapshotChunk>> {
        self.call(true, |mut c| async move {
            c.save_snapshot(pb::SaveSnapshotRequest {}).await
        })
        .await
    }

    /// Reads a job, linearizable unless `stale`.
    pub async fn job(&self, id: u64, stale: bool) -> Result<pb::Job> {
        self.call(true, |mut c| async move {
            c.get_job(pb::GetJobRequest { id, stale }).await
        })
        .await
    }

    /// Lists jobs (one page; see [`Client::list_jobs_page`] for the cursor).
    pub async fn list_jobs(&self, req: pb::ListJobsRequest) -> Result<Vec<pb::Job>> {
        Ok(self.list_jobs_page(req).await?.jobs)
    }

    /// One page of a job search, with the cursor to go on (`next_after_id`, 0 at the end).
    pub async fn list_jobs_page(&self, req: pb::ListJobsRequest) -> Result<pb::ListJobsResponse> {
        fits(&req)?;
        self.call(true, |mut c| {
            let req = req.clone();
            async move { c.list_jobs(req).await }
        })
        .await
    }

    /// Retries or cancels every job a filter keeps (one call, up to 10,000 jobs). Not retried
    /// on an unknown outcome: a second call finds what the first left.
    pub async fn bulk_jobs(&self, req: pb::BulkJobsRequest) -> Result<pb::BulkJobsResponse> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.bulk_jobs(req).await }
        })
        .await
    }

    /// Cancels a job; returns its new state.
    pub async fn cancel(&self, id: u64) -> Result<String> {
        let reply = self
            .call(false, |mut c| async move {
                c.cancel_job(pb::JobRef { id }).await
            })
            .await?;
        Ok(reply.state)
    }

    /// Retries a job now, optionally with new parameters; returns its new state.
    pub async fn retry(&self, req: pb::RetryJobRequest) -> Result<String> {
        fits(&req)?;
        let reply = self
            .call(false, |mut c| {
                let req = req.clone();
                async move { c.retry_job(req).await }
            })
            .await?;
        Ok(reply.state)
    }

    /// Pauses (`true`) or resumes a queue.
    pub async fn pause(&self, queue: &str, paused: bool) -> Result<pb::QueueInfo> {
        let req = pb::QueueRef {
            queue: queue.to_string(),
            stale: false,
        };
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move {
                if paused {
                    c.pause_queue(req).await
                } else {
                    c.resume_queue(req).await
                }
            }
        })
        .await
    }

    /// A queue's settings and counters.
    pub async fn queue(&self, queue: &str, stale: bool) -> Result<pb::QueueInfo> {
        let req = pb::QueueRef {
            queue: queue.to_string(),
            stale,
        };
        fits(&req)?;
        self.call(true, |mut c| {
            let req = req.clone();
            async move { c.get_queue(req).await }
        })
        .await
    }

    /// Every queue.
    pub async fn queues(&self, stale: bool) -> Result<Vec<pb::QueueInfo>> {
        let reply = self
            .call(true, |mut c| async move {
                c.list_queues(pb::ListQueuesRequest { stale }).await
            })
            .await?;
        Ok(reply.queues)
    }

    /// Removes dead jobs (of one queue when given); returns how many.
    pub async fn purge_dead(&self, queue: Option<&str>) -> Result<u64> {
        let req = pb::PurgeDeadRequest {
            queue: queue.unwrap_or_default().to_string(),
        };
        fits(&req)?;
        let reply = self
            .call(false, |mut c| {
                let req = req.clone();
                async move { c.purge_dead(req).await }
            })
            .await?;
        Ok(reply.purged)
    }

    /// Leases jobs (worker API).
    pub async fn lease(&self, req: pb::LeaseRequest) -> Result<pb::LeaseResponse> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.lease(req).await }
        })
        .await
    }

    /// Extends every lease of a worker (worker API).
    pub async fn heartbeat(&self, worker_id: &str) -> Result<pb::HeartbeatResponse> {
        let req = pb::HeartbeatRequest {
            worker_id: worker_id.to_string(),
        };
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.heartbeat(req).await }
        })
        .await
    }

    /// Ends an attempt (worker API); returns the job's new state.
    pub async fn complete(&self, job_id: u64, token: u64, report: &Report) -> Result<String> {
        let req = crate::proto::to_wire::complete_request(job_id, token, report);
        fits(&req)?;
        let reply = self
            .call(false, |mut c| {
                let req = req.clone();
                async move { c.complete(req).await }
            })
            .await?;
        Ok(reply.state)
    }

    /// Ends attempts and leases the next jobs in one round trip (worker API).
    pub async fn complete_and_lease(
        &self,
        req: pb::CompleteAndLeaseRequest,
    ) -> Result<pb::CompleteAndLeaseResponse> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.complete_and_lease(req).await }
        })
        .await
    }

    /// Stores a checkpoint (worker API).
    pub async fn checkpoint(&self, job_id: u64, token: u64, data: Vec<u8>) -> Result<()> {
        let req = pb::CheckpointRequest {
            job_id,
            token,
            data,
        };
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.checkpoint(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Hands a lease back (worker API).
    pub async fn release(&self, job_id: u64, token: u64) -> Result<String> {
        let reply = self
            .call(false, |mut c| async move {
                c.release(pb::ReleaseRequest { job_id, token }).await
            })
            .await?;
        Ok(reply.state)
    }

    /// The status of the node at index `i` of the address list (no failover: it is that
    /// node's own view).
    pub async fn node_status(&self, i: usize) -> Result<pb::NodeStatusResponse> {
        self.status_of(i, false).await
    }

    /// The status of the node at index `i`, with a digest of its state machine.
    pub async fn node_digest(&self, i: usize) -> Result<pb::NodeStatusResponse> {
        self.status_of(i, true).await
    }

    async fn status_of(&self, i: usize, with_digest: bool) -> Result<pb::NodeStatusResponse> {
        let (_, client) = self
            .nodes
            .get(i)
            .ok_or_else(|| Error::Internal(format!("no node at index {i}")))?;
        let mut client = client.clone();
        Ok(client
            .node_status(pb::NodeStatusRequest { with_digest })
            .await?
            .into_inner())
    }

    /// Number of node addresses.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the client has no addresses (never true for a constructed client).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Refuses a request over the API's message limit before it is sent: tonic would reset the
/// stream mid-body, which the caller sees as a bare "h2 protocol error".
fn fits(req: &impl prost::Message) -> Result<()> {
    let len = req.encoded_len();
    if len > limits::API_MESSAGE_BYTES_MAX {
        return Err(Error::InvalidArgument {
            field: "request".into(),
            message: format!(
                "is {len} bytes encoded, more than one API message holds \
                 (API_MESSAGE_BYTES_MAX, {} bytes); split it",
                limits::API_MESSAGE_BYTES_MAX
            ),
        });
    }
    Ok(())
}

/// A lazily connecting API client of the node at `addr` (`host:port`).
fn api_client(
    addr: &str,
    bearer: Bearer,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Api> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Config(format!("--addr {addr:?} is not an address: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = match tls {
        Some(config) => endpoint
            .connect_with_connector_lazy(crate::tls::Connector::new(move || config.clone(), None)),
        None => endpoint.tcp_nodelay(true).connect_lazy(),
    };
    Ok(ApiClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(limits::API_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::API_MESSAGE_BYTES_MAX))
}
