//! Moving pending work in from another job system: `raftline import redis` reads plain Redis
//! lists (LPUSH/BRPOP workers), Redis Streams and BullMQ 5 queues and submits each item as an
//! external job (its payload goes to a worker's stdin), so a team leaves its Redis job system
//! with one command and can run it again while both systems run side by side.
//!
//! The model: a *reader* ([`redis`], [`redis::stream`], [`redis::bullmq`]) hands out pages of
//! [`Item`]s, each with an idempotency key built from the source's own identity
//! (`stream:KEY:ENTRYID`, `bullmq:QUEUE:ID`, or for a list the element's content hash and
//! occurrence), and the [`sink`] submits each page through `SubmitBatch` in chunks no larger
//! than one batch (`--batch`, at most `SUBMIT_BATCH_JOBS_MAX`) and one API message.
//! Idempotency is the whole resumption story: a re-run (after a crash of the importer, of the
//! leader, or simply to pick up what arrived since) resubmits everything it reads and the
//! cluster answers `duplicate` for every key it already holds, so nothing is created twice
//! within the cluster's idempotency window (`idempotency_window_ms`). A page is submitted only
//! once it is read and checked; a refused batch (one log entry) stops the import with nothing
//! of that batch written, and the summary so far goes to stderr.
//!
//! Memory is one page (`--batch` items, each held about twice while it is submitted) plus, for
//! a list, one 16-byte hash and a counter per distinct element (about 40 MB per million; 19
//! MB peak RSS measured for 100,000 small elements). An element over `PAYLOAD_BYTES_MAX` is
//! skipped only after it was read, so a list of huge elements wants a smaller `--batch`.
//! A progress line (read, total, rate, ETA) goes to stderr when it is a terminal.
//!
//! CAVEATS (not implemented, issue 19): BullMQ failed jobs as dead letters and repeatable
//! jobs as schedules (both counted as skipped and left in Redis); `--drain` for lists (LMOVE
//! to a holding list, delete after the submit is acknowledged); a cursor kept in raftline (a
//! re-run re-reads the source from the start and relies on idempotency); `--continuous`;
//! `--command-template` (every item becomes an external job with a payload); the 1,000,000
//! element RSS benchmark; the BullMQ test is fed with redis commands in BullMQ 5's layout, not
//! by the real `bullmq` npm client.

pub mod redis;
pub mod sink;

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
}

/// Runs `raftline import ...` with `client` (the command line makes it from `--addr` and the
/// token flags: taking a client rather than the flags keeps this module below `cli`, which
/// imports it, so there is no import circle for `tests/tidy.rs` to find).
pub async fn run(client: &Client, cmd: ImportCmd) -> Result<()> {
    match cmd {
        ImportCmd::Redis(args) => redis::run(client, args).await,
    }
}
