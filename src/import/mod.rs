//! Moving pending work in from another job system: `raftline import redis` reads plain Redis
//! lists (LPUSH/BRPOP workers), Redis Streams and BullMQ 5 queues and submits each item as an
//! external job (its payload goes to a worker's stdin), so a team leaves its Redis job system
//! with one command and can run it again while both systems run side by side.
//!
//! The model: a *reader* ([`redis::list`], [`redis::stream`], [`redis::bullmq`]) hands out
//! pages of [`Item`]s, each with an idempotency key built from the source's own identity
//! (`stream:KEY:ENTRYID`, `bullmq:QUEUE:ID`, for a read list the element's content hash and
//! occurrence, for a drained one its batch id and place), and the [`sink`] submits each page
//! through `SubmitBatch` in chunks no larger than one batch (`--batch`, at most
//! `SUBMIT_BATCH_JOBS_MAX`) and one API message, as external jobs with a payload or, with
//! `--command-template` ([`template`]), as shell jobs. Idempotency is what makes a re-run safe
//! (after a crash of the importer, of the leader, or simply to pick up what arrived since):
//! the cluster answers `duplicate` for every key it already holds, so nothing is created twice
//! within its idempotency window (`idempotency_window_ms`), and the sink sends a batch again
//! while the cluster is unavailable. The [`cursor`] kept in raftline is what makes a re-run
//! cheap: lists and Streams put their position after each acknowledged batch and a re-run
//! continues from it. `--drain` takes list elements out of Redis through a holding list, so
//! lists being pushed and popped while read are safe too. `--continuous` keeps reading until
//! SIGINT or SIGTERM ([`Stop`]). A page is submitted only once it is read and checked; a
//! refused batch (one log entry) stops the import with nothing of that batch written, and the
//! summary so far goes to stderr.
//!
//! Memory is one page (`--batch` items, each held about twice while it is submitted) plus, for
//! a list, one 16-byte hash and a counter per distinct element (about 40 MB per million; 19
//! MB peak RSS measured for 100,000 small elements). An element over `PAYLOAD_BYTES_MAX` is
//! skipped only after it was read, so a list of huge elements wants a smaller `--batch`.
//! A progress line (read, total, rate, ETA) goes to stderr when it is a terminal.
//!
//! CAVEATS: BullMQ `active` and flow (`waiting-children`) jobs are not read; a paused BullMQ
//! queue does not pause the raftline queue; repeatables with a `limit` or an `every` under 1 s
//! are skipped; an imported failure's error class is always `transient`. Limits of what is
//! built: a read (not drained) list whose tail moves
//! during the run (workers popping, RPUSH producers) can be read with an element twice or
//! missed until the next run, and its cursor then no longer matches, so the next run reads it
//! all again; a re-run after the idempotency window (24 h by default) has passed can create a
//! job again for an item behind no cursor (a list read from the start, a Stream's pending
//! entries); cursors, like idempotency keys, do not name the queue, so a source imported
//! once is not imported again into another queue; `--drain` needs the list and its holding list on one Redis
//! node (no Redis Cluster); `--continuous` polls a read list every second, where only a
//! drained one blocks; BullMQ sources take neither `--continuous` nor `--command-template`.

pub mod cursor;
pub mod redis;
pub mod sink;
pub mod template;

use clap::Subcommand;

use crate::client::Client;
use crate::error::Result;

/// `raftline import ...`: where to import from.
#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Import a Redis list, Stream or BullMQ queue as external jobs (payload = the element, a
    /// Stream entry's fields or a BullMQ job as JSON); idempotent: a re-run creates nothing new.
    Redis(redis::RedisImport),
}

/// One item read from a source, ready to become a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The idempotency key, from the source's own identity.
    pub key: String,
    /// The job's payload.
    pub payload: Vec<u8>,
    /// Tags the job carries (e.g. `redis-pending` for a Stream entry delivered but not acked).
    pub tags: Vec<String>,
    /// Priority, run time, attempts and backoff carried over from the source (BullMQ).
    pub options: ItemOptions,
}

/// Job settings an item carries over from its source; defaults leave the cluster's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemOptions {
    /// 1..=10 (10 most urgent); 0 = the default.
    pub priority: u32,
    /// Start at this time (ms since the epoch).
    pub run_at_ms: Option<u64>,
    /// Attempts before dead letters; 0 = the default.
    pub max_attempts: u32,
    /// Retry backoff.
    pub backoff: Option<crate::proto::pb::Backoff>,
    /// Create the job already dead with this failure (a BullMQ failed job).
    pub dead: Option<crate::proto::pb::DeadLetter>,
}

/// Whether the import was asked to stop (`--continuous` until SIGINT or SIGTERM): readers
/// look between batches, and waits (a poll, a blocking read) end early, so a stop takes at
/// most one batch and one `BLOCK_MS`.
#[derive(Debug, Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// A stop that never comes (a one-shot import).
    pub fn never() -> Stop {
        let (tx, rx) = tokio::sync::watch::channel(false);
        // Dropping the sender leaves the value false for good.
        drop(tx);
        Stop(rx)
    }

    /// A stop on SIGINT or SIGTERM (`--continuous`), from now on.
    pub fn on_signal() -> Result<Stop> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| crate::error::Error::Internal(format!("SIGINT handler: {e}")))?;
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| crate::error::Error::Internal(format!("SIGTERM handler: {e}")))?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            let _ = tx.send(true);
            // Keep the sender, so the value stays true for every reader.
            std::future::pending::<()>().await;
        });
        Ok(Stop(rx))
    }

    /// A stop made by hand (tests): the sender sets it.
    pub fn manual() -> (tokio::sync::watch::Sender<bool>, Stop) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Stop(rx))
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits `ms`, or less when a stop is asked for meanwhile.
    pub async fn wait(&self, ms: u64) {
        let mut rx = self.0.clone();
        let stopped = async move {
            // An error means the sender is gone and the value can't change: wait it out.
            if rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(ms)) => {}
            _ = stopped => {}
        }
    }
}

/// Runs `raftline import ...` with `client` (the command line makes it from `--addr` and the
/// token flags: taking a client rather than the flags keeps this module below `cli`, which
/// imports it, so there is no import circle for `tests/tidy.rs` to find).
pub async fn run(client: &Client, cmd: ImportCmd) -> Result<()> {
    match cmd {
        ImportCmd::Redis(args) => redis::run(client, args).await,
    }
}
