//! `raftline worker`: an external worker that leases jobs over the API and runs them (see
//! the node's executor, which it shares). The one place the CLI names the executor.
//!
//! With `--json` the backend is wrapped in [`Announcing`], which prints one JSON line per
//! attempt it reports or hands back: `{"id", "attempt", "queue", "outcome" (succeeded, failed
//! or released), "error_class", "exit_code", "error"}`. CAVEATS: an attempt whose lease was lost (cancelled,
//! expired) is killed without a report, so it prints nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::connect::client;
use super::signal::shutdown_signal;
use crate::error::Result;
use crate::machine::limits::WORKER_CONCURRENCY_MAX;
use crate::machine::{JobId, Report};
use crate::node::executor::{Backend, Leased};

/// `raftline worker` options.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Queues to serve (comma-separated); every queue when omitted.
    #[arg(long, value_delimiter = ',')]
    pub queue: Vec<String>,
    /// Capabilities this worker offers (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub capabilities: Vec<String>,
    /// Most jobs run at once (1..=256).
    #[arg(
        long,
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKER_CONCURRENCY_MAX))
    )]
    pub concurrency: u32,
    /// Worker id (default: worker-<host>-<pid>).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Print JSON: one line per job attempt run (id, attempt, queue, outcome, exit code).
    #[arg(long)]
    pub json: bool,
    /// Handler for external jobs: receives the payload on stdin.
    #[arg(last = true, value_name = "CMD")]
    pub handler: Vec<String>,
}

/// Runs `raftline worker` until SIGTERM or SIGINT; running jobs are then killed and their
/// leases handed back.
pub async fn run(addr: &[String], args: WorkerArgs) -> Result<()> {
    let worker_id = args.worker_id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        format!("worker-{host}-{}", std::process::id())
    });
    // Checked here so a bad name is one line and exit 2, not a worker retrying forever.
    crate::machine::job::validate_name(
        "worker_id",
        &worker_id,
        crate::machine::limits::WORKER_ID_BYTES_MAX,
    )?;
    for q in &args.queue {
        crate::machine::job::validate_queue_name("queue", q)?;
    }
    let backend = crate::node::executor::RemoteBackend {
        client: client(addr)?,
        worker_id,
        queues: args.queue,
        capabilities: args.capabilities,
    };
    let pool = crate::node::executor::PoolConfig {
        min: 1,
        max: args.concurrency,
        handler: (!args.handler.is_empty()).then_some(args.handler),
        sandbox: crate::node::sandbox::Sandbox::inherit(),
    };
    if args.json {
        let backend = Arc::new(Announcing {
            inner: backend,
            leased: Mutex::default(),
        });
        return crate::node::executor::run(backend, pool, shutdown_signal()).await;
    }
    crate::node::executor::run(Arc::new(backend), pool, shutdown_signal()).await
}

/// Leases [`Announcing`] remembers: four times the most jobs a worker runs at once, so only
/// entries of leases lost long ago (killed without a report) are dropped.
const LEASED_KEPT_MAX: usize = 4 * WORKER_CONCURRENCY_MAX as usize;

/// A backend that prints each attempt's end as a JSON line on stdout, after reporting it.
struct Announcing<B> {
    inner: B,
    /// (job, fencing token) -> (attempt, queue) of the leases this worker holds.
    leased: Mutex<BTreeMap<(JobId, u64), (u32, String)>>,
}

/// What [`Announcing`] prints of a report (its output stays out: `job logs` shows it).
struct Ended {
    class: Option<&'static str>,
    exit_code: Option<i32>,
    error: String,
}

impl<B: Backend> Announcing<B> {
    /// Forgets a lease and prints how its attempt ended.
    fn announce(&self, job_id: JobId, token: u64, outcome: &str, report: Option<Ended>) {
        let (attempt, queue) = self
            .leased
            .lock()
            .expect("leased table")
            .remove(&(job_id, token))
            .unzip();
        let v = serde_json::json!({
            "id": job_id,
            "attempt": attempt,
            "queue": queue,
            "outcome": outcome,
            "error_class": report.as_ref().and_then(|r| r.class),
            "exit_code": report.as_ref().and_then(|r| r.exit_code),
            "error": report.map(|r| r.error).filter(|e| !e.is_empty()),
        });
        println!("{v}");
    }
}

impl<B: Backend> Backend for Announcing<B> {
    async fn lease(&self, max: u32, wait: Duration) -> Result<Vec<Leased>> {
        let got = self.inner.lease(max, wait).await?;
        let mut leased = self.leased.lock().expect("leased table");
        for l in &got {
            leased.insert((l.job_id, l.token), (l.attempt, l.queue.clone()));
        }
        // A lease lost without a report leaves its entry: forget the oldest beyond the bound.
        while leased.len() > LEASED_KEPT_MAX {
            leased.pop_first();
        }
        Ok(got)
    }

    async fn heartbeat(&self) -> Result<Vec<(JobId, u64)>> {
        self.inner.heartbeat().await
    }

    async fn complete(&self, job_id: JobId, token: u64, report: Report) -> Result<()> {
        let outcome = if report.error_class.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        let ended = Ended {
            class: report.error_class.map(|c| c.name()),
            exit_code: report.exit_code,
            error: report.error.clone(),
        };
        let result = self.inner.complete(job_id, token, report).await;
        self.announce(job_id, token, outcome, Some(ended));
        result
    }

    async fn release(&self, job_id: JobId, token: u64) -> Result<()> {
        let result = self.inner.release(job_id, token).await;
        self.announce(job_id, token, "released", None);
        result
    }

    fn backlog(&self) -> Option<u64> {
        self.inner.backlog()
    }

    fn holds(&self, job_id: JobId, token: u64) -> Option<bool> {
        self.inner.holds(job_id, token)
    }
}
