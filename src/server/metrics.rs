//! `/metrics`: the process's event metrics (`crate::metrics`) and gauges read off this node's
//! state at each scrape, encoded by the Prometheus client library in its text format.
//!
//! What each answers:
//! - jobs: `raftline_jobs{queue,state}`, `raftline_queue_paused{queue}`,
//!   `raftline_sla_missed_jobs{queue}` (held jobs whose deadline passed unfinished),
//!   `raftline_breaker_state{queue,state}` (1 for the breaker's state), run and wait
//!   histograms, applied commands by kind (`rate()` of `Submit`, `Lease`, `Complete` is the
//!   cluster's throughput);
//! - schedules: `raftline_schedule_lag_seconds{schedule}` (how late a due tick is; 0 when on
//!   time), `raftline_schedule_missed_ticks{schedule}` (skipped ticks in its history);
//! - Raft: term, leader, commit and applied indexes, `raftline_replication_lag_entries{peer}` (on
//!   the leader), log and snapshot bytes on disk, log syncs (`raftline_log_fsync_seconds`),
//!   batch sizes;
//! - the API: calls by RPC and code, latency by RPC (lease latency is `rpc="Lease"`);
//! - webhooks: deliveries pending, delivered, failed and dropped per webhook.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::machine::controls::BreakerState;
use crate::machine::{JobState, Machine};
use crate::metrics::{label, Labels, EVENTS};
use crate::raft::Replica;

type Gauges = Family<Labels, Gauge>;

fn gauge(r: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

fn family(r: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, i64)>) {
    let f = Gauges::default();
    for (labels, value) in rows {
        f.get_or_create(&labels).set(value);
    }
    r.register(name, help, f);
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The text of `/metrics`.
pub fn text(replica: &Replica) -> String {
    let mut r = Registry::default();
    EVENTS.register(&mut r);
    raft(&mut r, replica);
    replica.read(|m| {
        jobs(&mut r, m);
        schedules(&mut r, m);
        webhooks(&mut r, m);
    });
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        return "# encoding the metrics failed\n".into();
    }
    out
}

fn raft(r: &mut Registry, replica: &Replica) {
    let s = replica.status();
    gauge(r, "raftline_raft_term", "Current Raft term", int(s.term));
    let leader = i64::from(s.state == "leader");
    gauge(
        r,
        "raftline_raft_is_leader",
        "1 if this node is the leader",
        leader,
    );
    let applied = int(s.last_applied);
    gauge(
        r,
        "raftline_raft_last_applied",
        "Index of the last applied entry",
        applied,
    );
    let last = int(s.last_log_index);
    gauge(
        r,
        "raftline_raft_last_log_index",
        "Index of the last log entry",
        last,
    );
    let committed = int(s.committed_index);
    gauge(
        r,
        "raftline_raft_committed_index",
        "Index of the last entry this node knows committed",
        committed,
    );
    let snap = int(s.snapshot_index);
    gauge(
        r,
        "raftline_raft_snapshot_index",
        "Index covered by the last snapshot",
        snap,
    );
    let lag = replica
        .replication_lag()
        .into_iter()
        .map(|(peer, lag)| (label("peer", &peer.to_string()), int(lag)))
        .collect();
    family(
        r,
        "raftline_replication_lag_entries",
        "Entries each follower lags behind the leader's log (on the leader only)",
        lag,
    );
    let (wal, snapshot) = replica.disk_bytes();
    gauge(
        r,
        "raftline_log_bytes",
        "Bytes of the Raft log's segments on disk",
        int(wal),
    );
    let help = "Bytes of the snapshot file on disk";
    gauge(r, "raftline_snapshot_bytes", help, int(snapshot));
    let help = "Log syncs since start (fdatasync per group commit, and meta writes)";
    gauge(r, "raftline_log_fsyncs", help, int(s.fsyncs));
}

fn jobs(r: &mut Registry, m: &Machine) {
    gauge(
        r,
        "raftline_jobs_held",
        "Jobs held, live and finished",
        int(m.job_count() as u64),
    );
    let (mut jobs, mut paused, mut missed, mut breakers) = (vec![], vec![], vec![], vec![]);
    for queue in m.queue_names() {
        let (stats, is_paused) = m.queue(&queue);
        for state in JobState::ALL {
            let labels = vec![
                ("queue".to_string(), queue.clone()),
                ("state".to_string(), state.name().to_string()),
            ];
            jobs.push((labels, int(stats.counts[state as usize])));
        }
        paused.push((label("queue", &queue), i64::from(is_paused)));
        missed.push((label("queue", &queue), int(stats.deadline_missed)));
        if let Some(c) = m
            .queue_control(&queue)
            .filter(|c| c.policy.breaker.is_some())
        {
            for state in ["closed", "open", "half_open"] {
                let now = match c.breaker {
                    BreakerState::Closed => "closed",
                    BreakerState::Open { .. } => "open",
                    BreakerState::HalfOpen => "half_open",
                };
                let labels = vec![
                    ("queue".to_string(), queue.clone()),
                    ("state".to_string(), state.to_string()),
                ];
                breakers.push((labels, i64::from(now == state)));
            }
        }
    }
    family(r, "raftline_jobs", "Jobs by queue and state", jobs);
    family(
        r,
        "raftline_queue_paused",
        "1 if the queue is paused",
        paused,
    );
    let help = "Held jobs whose SLA deadline passed while unfinished, by queue";
    family(r, "raftline_sla_missed_jobs", help, missed);
    let help = "1 for the state each queue's circuit breaker is in";
    family(r, "raftline_breaker_state", help, breakers);
}

fn schedules(r: &mut Registry, m: &Machine) {
    let now = m.now_ms();
    let (mut lag, mut missed) = (vec![], vec![]);
    for s in m.schedules() {
        let name = label("schedule", &s.spec.name);
        let late = s.next_fire_ms.map_or(0, |t| now.saturating_sub(t));
        lag.push((name.clone(), int(late / 1000)));
        let skipped = s
            .history
            .iter()
            .filter(|h| matches!(h.outcome, crate::machine::schedule::RunOutcome::Skipped(_)))
            .count();
        missed.push((name, skipped as i64));
    }
    let help = "How late a schedule's due tick is, in whole seconds (0: on time)";
    family(r, "raftline_schedule_lag_seconds", help, lag);
    let help = "Ticks recorded as skipped in a schedule's history";
    family(r, "raftline_schedule_missed_ticks", help, missed);
}

fn webhooks(r: &mut Registry, m: &Machine) {
    let mut rows = vec![];
    let pending = |id: u64| m.webhooks().pending_of(id);
    for w in m.webhooks().hooks() {
        let id = w.id.to_string();
        for (state, n) in [
            ("pending", pending(w.id)),
            ("delivered", w.delivered),
            ("failed", w.failed),
            ("dropped", w.dropped),
        ] {
            let labels = vec![
                ("webhook".to_string(), id.clone()),
                ("state".to_string(), state.to_string()),
            ];
            rows.push((labels, int(n)));
        }
    }
    let help =
        "Webhook deliveries by state (pending now; delivered, failed, dropped since creation)";
    family(r, "raftline_webhook_deliveries", help, rows);
}
