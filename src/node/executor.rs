//! The worker pool: lease jobs, run them (`shell.rs`), keep their leases alive and report how
//! they ended.
//!
//! One executor loop serves two kinds of worker through the [`Backend`] trait:
//! - every node's own executor ([`LocalBackend`]), which proposes through the node's replica
//!   and runs shell jobs of the queues its config names;
//! - `raftline worker` ([`RemoteBackend`]), an external worker speaking the gRPC worker API,
//!   which runs shell jobs and hands external jobs' payloads to a command on stdin.
//!
//! The pool grows with the ready backlog between `workers_min` and `workers_max`. Leases are
//! kept alive by one heartbeat for all of the worker's leases every ttl/3; a job whose lease is
//! gone (cancelled, expired, node restarted) is killed with its process group and not
//! reported. A job that runs past its timeout is killed and reported as a `timeout` failure.
//! On shutdown running jobs are killed and their leases handed back (not counted).
//!
//! Both backends take one path for every call: the node's own executor leases (long-poll),
//! heartbeats, completes and releases by proposing through its replica; the external worker
//! makes the matching gRPC calls through the [`Client`].
//!
//! CAVEATS: see `shell.rs` for what running a process does not cover.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::Instrument;

use super::shell::{self, Ended, Kill};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::machine::{limits, Command, Grant, JobId, JobKind, Report, Response, WorkerRef};
use crate::proto::{from_wire, pb};
use crate::raft::Replica;

/// Longest wait of one lease call before the pool re-sizes itself.
const LEASE_WAIT: Duration = Duration::from_millis(limits::EXECUTOR_LEASE_WAIT_MS);
/// Pause after a failed lease call.
const LEASE_RETRY: Duration = Duration::from_millis(limits::EXECUTOR_LEASE_RETRY_MS);

/// A job handed to this worker.
#[derive(Debug, Clone)]
pub struct Leased {
    /// The job.
    pub job_id: JobId,
    /// The job's queue.
    pub queue: String,
    /// Fencing token of the lease.
    pub token: u64,
    /// Attempt number.
    pub attempt: u32,
    /// Lease ttl.
    pub ttl_ms: u64,
    /// What to run.
    pub kind: JobKind,
    /// Kill after this long.
    pub timeout_ms: Option<u64>,
}

impl From<Grant> for Leased {
    fn from(g: Grant) -> Leased {
        Leased {
            job_id: g.job_id,
            queue: g.spec.queue.clone(),
            token: g.token,
            attempt: g.attempt,
            ttl_ms: g.ttl_ms,
            kind: g.spec.kind,
            timeout_ms: g.spec.timeout_ms,
        }
    }
}

/// How a worker talks to the cluster.
pub trait Backend: Send + Sync + 'static {
    /// Leases up to `max` jobs, waiting up to `wait` for one.
    fn lease(&self, max: u32, wait: Duration) -> impl Future<Output = Result<Vec<Leased>>> + Send;
    /// Extends every lease of this worker; returns the (job, token) pairs it still holds.
    fn heartbeat(&self) -> impl Future<Output = Result<Vec<(JobId, u64)>>> + Send;
    /// Reports the end of an attempt.
    fn complete(
        &self,
        job_id: JobId,
        token: u64,
        report: Report,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Hands a lease back.
    fn release(&self, job_id: JobId, token: u64) -> impl Future<Output = Result<()>> + Send;
    /// Ready jobs this worker could take (for pool sizing); `None` when unknown.
    fn backlog(&self) -> Option<u64>;
    /// Whether the lease is still held, from local state; `None` when unknown.
    fn holds(&self, job_id: JobId, token: u64) -> Option<bool>;
}

/// A node's own executor: proposes through the node's replica.
pub struct LocalBackend {
    /// The node's replica.
    pub replica: Arc<Replica>,
    /// Worker identity (`node-N`, with the node's incarnation).
    pub worker: WorkerRef,
    /// Queues served; empty means all.
    pub queues: Vec<String>,
    /// Capabilities offered.
    pub capabilities: Vec<String>,
}

impl LocalBackend {
    /// Proposes a command; a rejection becomes its error.
    async fn propose(&self, command: Command) -> Result<()> {
        match self.replica.propose(command).await? {
            Response::Rejected(r) => Err(r.into()),
            _ => Ok(()),
        }
    }
}

impl Backend for LocalBackend {
    async fn lease(&self, max: u32, wait: Duration) -> Result<Vec<Leased>> {
        let grants = self
            .replica
            .lease_wait(
                &self.worker,
                &self.queues,
                &self.capabilities,
                max,
                None,
                wait,
            )
            .await?;
        Ok(grants.into_iter().map(Leased::from).collect())
    }

    async fn heartbeat(&self) -> Result<Vec<(JobId, u64)>> {
        let command = Command::Heartbeat {
            worker: self.worker.id.clone(),
        };
        match self.replica.propose(command).await? {
            Response::Heartbeated(held) => {
                Ok(held.into_iter().map(|(id, token, _)| (id, token)).collect())
            }
            other => Err(Error::Internal(format!("heartbeat answered {other:?}"))),
        }
    }

    async fn complete(&self, job_id: JobId, token: u64, report: Report) -> Result<()> {
        self.propose(Command::Complete {
            job_id,
            token,
            report,
        })
        .await
    }

    async fn release(&self, job_id: JobId, token: u64) -> Result<()> {
        self.propose(Command::Release { job_id, token }).await
    }

    fn backlog(&self) -> Option<u64> {
        Some(self.replica.read(|m| m.ready_count(&self.queues)))
    }

    /// This node may lag the leader: a lease it has not applied yet is "unknown", not lost.
    /// Lost means the lease was applied here (its attempt is on the job) and is no longer the
    /// job's live lease.
    fn holds(&self, job_id: JobId, token: u64) -> Option<bool> {
        self.replica.read(|m| {
            let job = m.job(job_id)?;
            if job.lease.as_ref().is_some_and(|l| l.token == token) {
                return Some(true);
            }
            job.attempts
                .iter()
                .any(|a| a.token == token)
                .then_some(false)
        })
    }
}

/// An external worker over the gRPC worker API.
pub struct RemoteBackend {
    /// API client.
    pub client: Client,
    /// Worker id.
    pub worker_id: String,
    /// Queues served; empty means all.
    pub queues: Vec<String>,
    /// Capabilities offered.
    pub capabilities: Vec<String>,
}

impl Backend for RemoteBackend {
    async fn lease(&self, max: u32, wait: Duration) -> Result<Vec<Leased>> {
        let reply = self
            .client
            .lease(pb::LeaseRequest {
                worker_id: self.worker_id.clone(),
                queues: self.queues.clone(),
                capabilities: self.capabilities.clone(),
                max,
                ttl_ms: 0,
                wait_ms: wait.as_millis() as u64,
            })
            .await?;
        reply.jobs.into_iter().map(leased_from_wire).collect()
    }

    async fn heartbeat(&self) -> Result<Vec<(JobId, u64)>> {
        let reply = self.client.heartbeat(&self.worker_id).await?;
        Ok(reply
            .leases
            .into_iter()
            .map(|l| (l.job_id, l.token))
            .collect())
    }

    async fn complete(&self, job_id: JobId, token: u64, report: Report) -> Result<()> {
        self.client
            .complete(job_id, token, &report)
            .await
            .map(|_| ())
    }

    async fn release(&self, job_id: JobId, token: u64) -> Result<()> {
        self.client.release(job_id, token).await.map(|_| ())
    }

    fn backlog(&self) -> Option<u64> {
        None
    }

    fn holds(&self, _job_id: JobId, _token: u64) -> Option<bool> {
        None
    }
}

/// A leased job as a gRPC worker receives it.
fn leased_from_wire(l: pb::LeasedJob) -> Result<Leased> {
    let job = l
        .job
        .ok_or_else(|| Error::Internal("lease reply without a job".into()))?;
    let kind: JobKind = job
        .kind
        .map(from_wire::job_kind)
        .ok_or_else(|| Error::Internal("lease reply job without a kind".into()))?;
    Ok(Leased {
        job_id: job.id,
        queue: job.queue,
        token: l.token,
        attempt: l.attempt,
        ttl_ms: l.ttl_ms,
        kind,
        timeout_ms: job.timeout_ms,
    })
}

/// Pool bounds and the handler of external jobs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Fewest jobs run at once when work waits.
    pub min: u32,
    /// Most jobs run at once.
    pub max: u32,
    /// Command that receives an external job's payload on stdin.
    pub handler: Option<Vec<String>>,
    /// User, environment, limits and allowed programs of the jobs' processes.
    pub sandbox: super::sandbox::Sandbox,
}

struct Running {
    token: u64,
    ttl_ms: u64,
    kill: watch::Sender<Kill>,
}

type Table = Arc<Mutex<BTreeMap<JobId, Running>>>;

/// Runs the executor until `shutdown` completes, or a lease is refused for a reason retrying
/// can't mend (a missing, expired or revoked token, a role that may not lease, a bad
/// argument: that error is returned); then kills running jobs and hands their leases back.
pub async fn run<B: Backend>(
    backend: Arc<B>,
    pool: PoolConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut fatal = None;
    let table: Table = Arc::default();
    let sandbox = Arc::new(pool.sandbox.clone());
    let finished = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    let keeper = tokio::spawn(keep_leases(backend.clone(), table.clone()));
    tokio::pin!(shutdown);
    loop {
        let running = table.lock().expect("worker table").len() as u32;
        let backlog = backend.backlog().unwrap_or(u64::from(pool.max));
        let target = (u64::from(running) + backlog).clamp(u64::from(pool.min), u64::from(pool.max));
        let free = (target as u32).saturating_sub(running);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = finished.notified(), if free == 0 => {}
            leased = backend.lease(free.max(1), LEASE_WAIT), if free > 0 => match leased {
                Ok(jobs) => {
                    for job in jobs {
                        // What an attempt logs carries its job, queue, attempt and token.
                        let span = tracing::info_span!(
                            "attempt",
                            job = job.job_id,
                            queue = %job.queue,
                            attempt = job.attempt,
                            token = job.token
                        );
                        let (kill, killed) = watch::channel(Kill::No);
                        table.lock().expect("worker table").insert(
                            job.job_id,
                            Running { token: job.token, ttl_ms: job.ttl_ms, kill },
                        );
                        tasks.spawn(run_one(
                            backend.clone(),
                            job,
                            pool.handler.clone(),
                            sandbox.clone(),
                            killed,
                            table.clone(),
                            finished.clone(),
                        ).instrument(span));
                    }
                }
                Err(e @ (Error::Unauthenticated(_)
                | Error::PermissionDenied(_)
                | Error::InvalidArgument { .. })) => {
                    fatal = Some(e);
                    break;
                }
                Err(e) => {
                    tracing::debug!("lease: {e}");
                    tokio::time::sleep(LEASE_RETRY).await;
                }
            },
        }
        while tasks.try_join_next().is_some() {}
    }
    keeper.abort();
    for running in table.lock().expect("worker table").values() {
        let _ = running.kill.send(Kill::Shutdown);
    }
    let _ = tokio::time::timeout(Duration::from_millis(limits::EXECUTOR_SHUTDOWN_MS), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    fatal.map_or(Ok(()), Err)
}

/// Heartbeats every ttl/`EXECUTOR_HEARTBEATS_PER_TTL` and kills jobs whose lease is gone;
/// checks local state (when the backend has it) every `EXECUTOR_LEASE_CHECK_MS` so a cancel
/// kills a job quickly.
async fn keep_leases<B: Backend>(backend: Arc<B>, table: Table) {
    let mut last_heartbeat = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(limits::EXECUTOR_LEASE_CHECK_MS)).await;
        let snapshot: Vec<(JobId, u64, u64)> = table
            .lock()
            .expect("worker table")
            .iter()
            .map(|(id, r)| (*id, r.token, r.ttl_ms))
            .collect();
        let lost = |id: JobId| {
            if let Some(r) = table.lock().expect("worker table").get(&id) {
                let _ = r.kill.send(Kill::Lost);
            }
        };
        for (id, token, _) in &snapshot {
            if backend.holds(*id, *token) == Some(false) {
                lost(*id);
            }
        }
        let Some(ttl) = snapshot.iter().map(|(_, _, ttl)| *ttl).min() else {
            continue;
        };
        if last_heartbeat.elapsed()
            < Duration::from_millis(ttl / limits::EXECUTOR_HEARTBEATS_PER_TTL)
        {
            continue;
        }
        last_heartbeat = tokio::time::Instant::now();
        match backend.heartbeat().await {
            Ok(held) => {
                for (id, token, _) in &snapshot {
                    if !held.contains(&(*id, *token)) {
                        lost(*id);
                    }
                }
            }
            Err(e) => tracing::warn!("heartbeat failed: {e}"),
        }
    }
}

async fn run_one<B: Backend>(
    backend: Arc<B>,
    job: Leased,
    handler: Option<Vec<String>>,
    sandbox: Arc<super::sandbox::Sandbox>,
    killed: watch::Receiver<Kill>,
    table: Table,
    finished: Arc<Notify>,
) {
    let output = Arc::new(Mutex::new(Vec::new()));
    let ended = shell::execute(&job, handler.as_deref(), &sandbox, killed, output.clone()).await;
    table.lock().expect("worker table").remove(&job.job_id);
    finished.notify_one();
    let report = shell::report(&ended, &job, &output.lock().expect("output buffer"));
    let report = match (ended, report) {
        (_, Some(report)) => report,
        (Ended::Killed(Kill::Shutdown), None) => {
            if let Err(e) = backend.release(job.job_id, job.token).await {
                tracing::warn!(job = job.job_id, "hand back failed: {e}");
            }
            return;
        }
        (_, None) => {
            tracing::info!(
                job = job.job_id,
                "lease gone (cancelled or expired): job killed"
            );
            return;
        }
    };
    for attempt in 0..limits::COMPLETE_TRIES_MAX {
        match backend
            .complete(job.job_id, job.token, report.clone())
            .await
        {
            Ok(()) => return,
            Err(Error::FailedPrecondition(m)) | Err(Error::NotFound(m)) => {
                tracing::info!(job = job.job_id, "completion refused: {m}");
                return;
            }
            Err(e) => {
                tracing::warn!(
                    job = job.job_id,
                    attempt,
                    "completion not recorded yet: {e}"
                );
                let pause = limits::COMPLETE_RETRY_BASE_MS
                    << attempt.min(limits::COMPLETE_RETRY_DOUBLINGS_MAX);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
}
