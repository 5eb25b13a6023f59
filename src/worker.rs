//! Workers: run leased jobs and report how they ended.
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
//! CAVEATS: output is captured as one interleaved tail of stdout and stderr; a process that
//! escapes its process group is not killed.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::machine::job::tail;
use crate::machine::{limits, ErrorClass, Grant, JobId, JobKind, Report, WorkerRef};
use crate::proto::pb;
use crate::raft::Replica;
use crate::server::api_service::lease_wait;

/// A job handed to this worker.
#[derive(Debug, Clone)]
pub struct Leased {
    /// The job.
    pub job_id: JobId,
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
    async fn propose(&self, command: crate::machine::Command) -> Result<()> {
        match self.replica.propose(command).await? {
            crate::machine::Response::Rejected(r) => Err(r.into()),
            _ => Ok(()),
        }
    }
}

impl Backend for LocalBackend {
    async fn lease(&self, max: u32, wait: Duration) -> Result<Vec<Leased>> {
        let grants = lease_wait(
            &self.replica,
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
        let command = crate::machine::Command::Heartbeat {
            worker: self.worker.id.clone(),
        };
        match self.replica.propose(command).await? {
            crate::machine::Response::Heartbeated(held) => {
                Ok(held.into_iter().map(|(id, token, _)| (id, token)).collect())
            }
            other => Err(Error::Internal(format!("heartbeat answered {other:?}"))),
        }
    }

    async fn complete(&self, job_id: JobId, token: u64, report: Report) -> Result<()> {
        self.propose(crate::machine::Command::Complete {
            job_id,
            token,
            report,
        })
        .await
    }

    async fn release(&self, job_id: JobId, token: u64) -> Result<()> {
        self.propose(crate::machine::Command::Release { job_id, token })
            .await
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

fn leased_from_wire(l: pb::LeasedJob) -> Result<Leased> {
    let job = l
        .job
        .ok_or_else(|| Error::Internal("lease reply without a job".into()))?;
    let kind = match job.kind {
        Some(pb::job::Kind::Shell(s)) => JobKind::Shell {
            argv: s.argv,
            env: s.env.into_iter().collect(),
            cwd: (!s.cwd.is_empty()).then_some(s.cwd),
        },
        Some(pb::job::Kind::Payload(payload)) => JobKind::External { payload },
        None => return Err(Error::Internal("lease reply job without a kind".into())),
    };
    Ok(Leased {
        job_id: job.id,
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
}

struct Running {
    token: u64,
    ttl_ms: u64,
    kill: watch::Sender<Kill>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    No,
    /// The lease is gone (cancelled, expired): kill and stay silent.
    Lost,
    /// This worker is stopping: kill and hand the lease back.
    Shutdown,
}

type Table = Arc<Mutex<BTreeMap<JobId, Running>>>;

/// Runs the executor until `shutdown` completes; then kills running jobs and hands their
/// leases back.
pub async fn run<B: Backend>(
    backend: Arc<B>,
    pool: PoolConfig,
    shutdown: impl Future<Output = ()>,
) {
    let table: Table = Arc::default();
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
            leased = backend.lease(free.max(1), Duration::from_secs(1)), if free > 0 => match leased {
                Ok(jobs) => {
                    for job in jobs {
                        let (kill, killed) = watch::channel(Kill::No);
                        table.lock().expect("worker table").insert(
                            job.job_id,
                            Running { token: job.token, ttl_ms: job.ttl_ms, kill },
                        );
                        tasks.spawn(run_one(
                            backend.clone(),
                            job,
                            pool.handler.clone(),
                            killed,
                            table.clone(),
                            finished.clone(),
                        ));
                    }
                }
                Err(e) => {
                    tracing::debug!("lease: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
        }
        while tasks.try_join_next().is_some() {}
    }
    keeper.abort();
    for running in table.lock().expect("worker table").values() {
        let _ = running.kill.send(Kill::Shutdown);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Heartbeats every ttl/3 and kills jobs whose lease is gone; checks local state (when the
/// backend has it) every 250 ms so a cancel kills a job quickly.
async fn keep_leases<B: Backend>(backend: Arc<B>, table: Table) {
    let mut last_heartbeat = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
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
        if last_heartbeat.elapsed() < Duration::from_millis(ttl / 3) {
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

/// How a run ended.
enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Killed(Kill),
    SpawnFailed(String),
}

async fn run_one<B: Backend>(
    backend: Arc<B>,
    job: Leased,
    handler: Option<Vec<String>>,
    killed: watch::Receiver<Kill>,
    table: Table,
    finished: Arc<Notify>,
) {
    let output = Arc::new(Mutex::new(Vec::new()));
    let ended = execute(&job, handler.as_deref(), killed, output.clone()).await;
    table.lock().expect("worker table").remove(&job.job_id);
    finished.notify_one();
    let output_tail = {
        let bytes = output.lock().expect("output buffer");
        tail(
            &String::from_utf8_lossy(&bytes),
            limits::OUTPUT_TAIL_BYTES_MAX,
        )
    };
    let report = |class, exit_code, error: String| Report {
        error_class: class,
        exit_code,
        error,
        output_tail: output_tail.clone(),
    };
    let report = match ended {
        Ended::Killed(Kill::Shutdown) => {
            if let Err(e) = backend.release(job.job_id, job.token).await {
                tracing::warn!(job = job.job_id, "hand back failed: {e}");
            }
            return;
        }
        Ended::Killed(_) => {
            tracing::info!(
                job = job.job_id,
                "lease gone (cancelled or expired): job killed"
            );
            return;
        }
        Ended::TimedOut => report(
            Some(ErrorClass::Timeout),
            None,
            format!(
                "killed after its timeout of {} ms",
                job.timeout_ms.unwrap_or(0)
            ),
        ),
        Ended::SpawnFailed(e) => report(Some(ErrorClass::Transient), None, e),
        Ended::Exited(status) => match status.code() {
            Some(0) => report(None, Some(0), String::new()),
            Some(code) => report(
                Some(ErrorClass::Transient),
                Some(code),
                format!("exited with code {code}"),
            ),
            None => report(
                Some(ErrorClass::Transient),
                None,
                format!("killed by a signal ({status})"),
            ),
        },
    };
    for attempt in 0..10 {
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
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(4))).await;
            }
        }
    }
}

async fn execute(
    job: &Leased,
    handler: Option<&[String]>,
    mut killed: watch::Receiver<Kill>,
    output: Arc<Mutex<Vec<u8>>>,
) -> Ended {
    let (argv, env, cwd, stdin) = match &job.kind {
        JobKind::Shell { argv, env, cwd } => (argv.clone(), env.clone(), cwd.clone(), None),
        JobKind::External { payload } => match handler {
            Some(h) if !h.is_empty() => (h.to_vec(), BTreeMap::new(), None, Some(payload.clone())),
            _ => return Ended::SpawnFailed("no handler command for external jobs".into()),
        },
    };
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .envs(&env)
        .env("RAFTLINE_JOB_ID", job.job_id.to_string())
        .env("RAFTLINE_TOKEN", job.token.to_string())
        .env("RAFTLINE_ATTEMPT", job.attempt.to_string())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &cwd {
        command.current_dir(cwd);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return Ended::SpawnFailed(format!("cannot start {:?}: {e}", argv[0])),
    };
    let pid = child.id();
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
        });
    }
    let readers = [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(capture(o, output.clone()))),
        child
            .stderr
            .take()
            .map(|e| tokio::spawn(capture(e, output.clone()))),
    ];
    let timeout = job.timeout_ms.map_or(Duration::MAX, Duration::from_millis);
    let ended = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ended::Exited(status),
            Err(e) => Ended::SpawnFailed(format!("waiting for the process: {e}")),
        },
        _ = tokio::time::sleep(timeout) => Ended::TimedOut,
        kill = async {
            loop {
                if killed.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let k = *killed.borrow();
                if k != Kill::No {
                    return k;
                }
            }
        } => Ended::Killed(kill),
    };
    if !matches!(ended, Ended::Exited(_)) {
        if let Some(pid) = pid {
            // SAFETY: kill(2) of the process group this worker created for the job.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        let _ = child.wait().await;
    }
    for reader in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
    }
    ended
}

/// Appends a pipe's bytes to `buffer`, keeping only the last `OUTPUT_TAIL_BYTES_MAX` bytes.
async fn capture(mut pipe: impl AsyncRead + Unpin, buffer: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let mut b = buffer.lock().expect("output buffer");
        b.extend_from_slice(&chunk[..n]);
        if b.len() > 2 * limits::OUTPUT_TAIL_BYTES_MAX {
            let cut = b.len() - limits::OUTPUT_TAIL_BYTES_MAX;
            b.drain(..cut);
        }
    }
}

/// Report as sent over the wire.
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
