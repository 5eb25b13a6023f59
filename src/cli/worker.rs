//! `raftline worker`: an external worker that leases jobs over the API and runs them (see
//! the node's executor, which it shares). The one place the CLI names the executor.

use std::sync::Arc;

use super::connect::client;
use super::signal::shutdown_signal;
use crate::error::Result;
use crate::machine::limits::WORKER_CONCURRENCY_MAX;

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
    let backend = Arc::new(crate::node::executor::RemoteBackend {
        client: client(addr)?,
        worker_id,
        queues: args.queue,
        capabilities: args.capabilities,
    });
    let pool = crate::node::executor::PoolConfig {
        min: 1,
        max: args.concurrency,
        handler: (!args.handler.is_empty()).then_some(args.handler),
        sandbox: crate::node::sandbox::Sandbox::inherit(),
    };
    crate::node::executor::run(backend, pool, shutdown_signal()).await
}
