//! Event metrics of this process: counters and histograms that the code paths observe as they
//! run (an RPC answered, a log sync, a batch proposed, a job attempt ended). Gauges read off
//! the state (jobs by queue and state, Raft indexes, breaker states) are built at each scrape
//! by `server/metrics.rs`, which also encodes both in Prometheus' text format.
//!
//! Every label value comes from a bounded set: RPC names from the API's method table (anything
//! else is `other`), gRPC codes, queue names (bounded by the state's own limits), command
//! kinds.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label pairs of a metric family.
pub type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Latency buckets: 0.25 ms to about 8 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Job run and wait buckets: 10 ms to about 11 h, times four.
fn job_time() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 16))
}

/// The process's event metrics.
pub struct Events {
    /// API calls answered, by RPC and gRPC code.
    pub api_calls: Family<Labels, Counter>,
    /// API call latency, by RPC.
    pub api_seconds: Histograms,
    /// Raft log syncs (`fdatasync` of a group commit, or a meta write).
    pub fsync_seconds: Histogram,
    /// Commands per proposal batch the batcher sent to Raft.
    pub batch_commands: Histogram,
    /// Commands applied by this node's state machine, by kind.
    pub applied: Family<Labels, Counter>,
    /// Run time of job attempts that ended, by queue (lease to end).
    pub job_run_seconds: Histograms,
    /// Wait of jobs from ready to their first lease, by queue.
    pub job_wait_seconds: Histograms,
    /// Leases that came back short while a queue had ready jobs its policy held back, by
    /// queue and the part of the policy (`rate`, `concurrency`, `breaker`).
    pub lease_refusals: Family<Labels, Counter>,
    /// API calls refused because the caller's token was over its calls-per-second limit, by
    /// token id (bounded by `TOKENS_MAX`; the bootstrap token is `admin`).
    pub api_rate_limited: Family<Labels, Counter>,
    /// AppendEntries this node sent its followers as leader, by kind: `entries`, `empty`
    /// (heartbeats and commit notices), `ridden` (commit notices left out because the next
    /// entries carried them, `raft/network.rs`).
    pub peer_appends: Family<Labels, Counter>,
}

/// The one set of event metrics.
pub static EVENTS: LazyLock<Events> = LazyLock::new(|| Events {
    api_calls: Family::default(),
    api_seconds: Family::new_with_constructor(latency),
    fsync_seconds: latency(),
    batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
    applied: Family::default(),
    job_run_seconds: Family::new_with_constructor(job_time),
    job_wait_seconds: Family::new_with_constructor(job_time),
    lease_refusals: Family::default(),
    api_rate_limited: Family::default(),
    peer_appends: Family::default(),
});

/// One label.
pub fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

impl Events {
    /// An API call answered.
    pub fn api_call(&self, rpc: &str, code: &str, took: Duration) {
        let labels = vec![
            ("rpc".to_string(), rpc.to_string()),
            ("code".to_string(), code.to_string()),
        ];
        self.api_calls.get_or_create(&labels).inc();
        self.api_seconds
            .get_or_create(&label("rpc", rpc))
            .observe(took.as_secs_f64());
    }

    /// Adds the event metrics to a registry (clones share their values).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "raftline_api_calls",
            "API calls answered (gRPC and REST), by RPC and gRPC code",
            self.api_calls.clone(),
        );
        r.register(
            "raftline_api_call_seconds",
            "API call latency, by RPC",
            self.api_seconds.clone(),
        );
        r.register(
            "raftline_log_fsync_seconds",
            "Raft log syncs: fdatasync of a group commit, or a vote/purge meta write",
            self.fsync_seconds.clone(),
        );
        r.register(
            "raftline_batch_commands",
            "Commands per proposal batch sent to Raft",
            self.batch_commands.clone(),
        );
        r.register(
            "raftline_applied_commands",
            "Commands applied by this node's state machine, by kind",
            self.applied.clone(),
        );
        r.register(
            "raftline_job_run_seconds",
            "Run time of ended job attempts (lease to end), by queue",
            self.job_run_seconds.clone(),
        );
        r.register(
            "raftline_job_wait_seconds",
            "Wait of jobs from ready to their first lease, by queue",
            self.job_wait_seconds.clone(),
        );
        r.register(
            "raftline_lease_refusals",
            "Leases that came back short while the queue had ready jobs its policy held back, \
             by queue and reason (rate, concurrency, breaker)",
            self.lease_refusals.clone(),
        );
        r.register(
            "raftline_api_rate_limited",
            "API calls refused for a token over its calls-per-second limit, by token id",
            self.api_rate_limited.clone(),
        );
        r.register(
            "raftline_peer_appends",
            "AppendEntries sent to followers, by kind: entries, empty (heartbeats, commit \
             notices), ridden (commit notices left out: the next entries carried them)",
            self.peer_appends.clone(),
        );
    }
}
