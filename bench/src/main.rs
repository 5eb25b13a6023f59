//! `raftline-bench`: throughput, latency and failover figures for raftline, measured the way
//! peer systems are measured, on the same machine.
//!
//! `cargo run --release -p raftline-bench -- [floor|w1|w2|w3|scale|dag|rest|all|peers|security|churn|import] [--addr A]
//! [--secs S]`.
//! Without `--addr` it starts a fresh 3-node cluster of the release binary in a temp dir on
//! loopback (nodes on 127.0.1.N). Prints a table and appends JSON lines to
//! `bench/results/results.jsonl` with the machine, the git commit and the settings.
//!
//! - floor: fdatasync latency of a 256 B append on the data disk, and a loopback TCP round
//!   trip, so the figures can be read as ratios to the machine's limits.
//! - W1 durable submit: 256 B submits at 1, 16 and 64 concurrent clients spread over all
//!   nodes: ops/s, p50/p99/max, and fsyncs per submit from the nodes' own counters.
//! - W2 end-to-end: submit + lease + complete through the external worker API, 1/16/64
//!   producers and as many workers: jobs/s and submit-to-complete latency.
//! - W3 failover: kill -9 of the leader under a 16-client writer, 5 trials: the gap until
//!   writes succeed again, and acknowledged writes missing after the restart (must be 0).
//!
//! - scale: lease latency and node memory at 1k, 100k and 1M ready jobs (filled with
//!   SubmitBatch), and submit throughput second by second while snapshots are taken.
//! - DAG: time from a step's completion to its dependent being leased (a chain of external
//!   steps), whether the dependent is ready in the completion's own apply, and the wall time of
//!   the 86-step example plan at max_parallel 8 and one by one (its steps run by the bench).
//! - peers: W1 against a 3-node etcd and W2 against a 3-node NATS JetStream, started from the
//!   installed binaries beside raftline's cluster, in alternating rounds, printed as ratios
//!   (`peers.rs` says what each shape is on each system).
//!
//! - rest: submit over the REST API against gRPC submit, 16 clients, alternating rounds
//!   (`rest.rs`).
//! - import: `raftline import redis` of a 1,000,000-element list from a local redis-server:
//!   items/s and the importer's peak RSS, then the same import again from its cursor and from
//!   the start (`import.rs`).
//! - security: W1 and W2 with auth and TLS on (this cluster) against a second cluster with
//!   both off, in alternating rounds, printed as ratios (`security.rs`).
//!
//! `--quick` is a short run of every section (used by the smoke test); it records nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use raftline::client::Client;
use raftline::proto::pb;
use raftline_jepsen::cluster::{raftline_bin, Cluster};

mod churn;
mod import;
mod peers;
mod rest;
mod security;

/// Benchmarks for raftline.
#[derive(Debug, Parser)]
#[command(name = "raftline-bench")]
struct Args {
    /// floor, w1, w2, w3, scale, dag, rest, all (every one of these), or peers, security, churn
    /// or import (not in all).
    #[arg(default_value = "all")]
    section: String,
    /// API addresses of a running cluster (comma-separated); a fresh local cluster otherwise.
    #[arg(long, value_delimiter = ',')]
    addr: Vec<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// A short run (smaller scale sizes, one failover trial), to check the harness works.
    #[arg(long)]
    quick: bool,
    /// First port of the local cluster (the peers section puts etcd at +10.. and NATS at +20..).
    #[arg(long, default_value_t = 17400)]
    base_port: u16,
    /// Rounds of the peers section; its ratios are the medians over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Jobs the churn section puts through.
    #[arg(long, default_value_t = 10_000_000)]
    jobs: u64,
    /// List elements the import section imports from Redis.
    #[arg(long, default_value_t = 1_000_000)]
    import_elements: u64,
}

const SETTINGS: &str = "heartbeat_ms = 50\nelection_timeout_min_ms = 200\n\
    election_timeout_max_ms = 400\nsnapshot_every_entries = 10000\nsnapshot_logs_kept = 1000\n\
    request_timeout_ms = 5000\nworkers_max = 0\n";

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

struct Bench {
    clients: Vec<Arc<Client>>,
    http: Vec<String>,
    /// The CA the nodes' HTTP ports are checked against when they serve TLS.
    http_ca: Option<PathBuf>,
    cluster: Option<Cluster>,
    results: Vec<serde_json::Value>,
    /// Fields added to every record while set (the peers section marks its raftline figures
    /// with its name and round, so they are not read as plain w1/w2 runs).
    within: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Bench {
    async fn fsyncs(&self) -> u64 {
        self.metric_sum("raftline_log_fsyncs").await as u64
    }

    async fn flush_secs(&self) -> f64 {
        self.metric_sum("raftline_log_fsync_seconds_sum").await
    }

    async fn metric_sum(&self, name: &str) -> f64 {
        let mut total = 0.0;
        for addr in &self.http {
            total += metric(addr, self.http_ca.as_deref(), name)
                .await
                .unwrap_or(0.0);
        }
        total
    }

    fn record(&mut self, mut v: serde_json::Value) {
        if let (Some(extra), Some(obj)) = (&self.within, v.as_object_mut()) {
            obj.extend(extra.clone());
        }
        self.results.push(v);
    }
}

/// Reads one metric from a node's /metrics.
async fn metric(addr: &str, ca: Option<&std::path::Path>, name: &str) -> Option<f64> {
    let body = raftline::tls::http_get(addr, "/metrics", ca).await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// The payload of a W1/W2 job, and of the peers' records in the same shapes.
const PAYLOAD_BYTES: usize = 256;

fn payload_job(queue: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        queue: queue.into(),
        kind: Some(pb::submit_request::Kind::Payload(vec![b'x'; PAYLOAD_BYTES])),
        ..Default::default()
    }
}

/// fdatasync of a 256 B append, and a loopback TCP round trip: p50 in µs.
async fn floor(dir: &std::path::Path) -> (f64, f64) {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("probe file");
    let mut h = hist();
    for _ in 0..200 {
        let t = Instant::now();
        file.write_all(&[0u8; 256]).expect("append");
        // SAFETY: fdatasync on an open file descriptor we own.
        unsafe {
            libc::fdatasync(file.as_raw_fd());
        }
        h.record(micros(t.elapsed()).max(1)).ok();
    }
    let _ = std::fs::remove_file(&path);
    let fsync = h.value_at_quantile(0.5) as f64;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let mut b = [0u8; 64];
            while let Ok(n) = s.read(&mut b).await {
                if n == 0 || s.write_all(&b[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).ok();
    let mut h = hist();
    let mut b = [0u8; 64];
    for _ in 0..2000 {
        let t = Instant::now();
        s.write_all(&[1u8; 64]).await.expect("write");
        s.read_exact(&mut b).await.expect("read");
        h.record(micros(t.elapsed()).max(1)).ok();
    }
    (fsync, h.value_at_quantile(0.5) as f64)
}

/// One figure of a throughput measurement: operations (or jobs) per second and the median
/// latency, in ms.
#[derive(Debug, Clone, Copy)]
struct Figure {
    rate: f64,
    p50_ms: f64,
}

/// What a closed loop measured.
struct Looped {
    rate: f64,
    hist: Histogram<u64>,
    errors: u64,
}

/// A closed loop: `clients` tasks each await `op(client)` back to back for `secs` (one request
/// in flight per client, as a W1 client does). Successes per second over the whole run,
/// including the requests in flight at the stop, and the latency of each success.
async fn closed_loop<F, Fut>(clients: usize, secs: u64, op: F) -> Looped
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(hist()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (op, stop, hist, errors) = (op.clone(), stop.clone(), hist.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = self::hist();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if op(c).await {
                    local.record(micros(t.elapsed()).max(1)).ok();
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            hist.lock().expect("hist").add(&local).ok();
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hist = hist.lock().expect("hist").clone();
    Looped {
        rate: hist.len() as f64 / elapsed,
        hist,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// W1: durable submits at `clients` concurrency for `secs`.
async fn w1(b: &mut Bench, clients: usize, secs: u64) -> Figure {
    let before = b.fsyncs().await;
    let flush_before = b.flush_secs().await;
    let pool = b.clients.clone();
    let Looped {
        rate,
        hist: h,
        errors,
    } = closed_loop(clients, secs, move |c| {
        let client = pool[c % pool.len()].clone();
        async move { client.submit(payload_job("bench-w1")).await.is_ok() }
    })
    .await;
    let ops = h.len();
    let fsyncs = b.fsyncs().await.saturating_sub(before);
    let flush_ms = (b.flush_secs().await - flush_before) * 1000.0 / fsyncs.max(1) as f64;
    println!(
        "W1 submit  clients {clients:>3}  {rate:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  fsyncs/submit {:.2}  mean log flush {flush_ms:.2} ms  errors {errors}",
        ms(&h, 0.5),
        ms(&h, 0.99),
        h.max() as f64 / 1000.0,
        fsyncs as f64 / ops.max(1) as f64,
    );
    b.record(serde_json::json!({
        "section": "w1", "clients": clients, "ops_per_s": rate, "p50_ms": ms(&h, 0.5),
        "p99_ms": ms(&h, 0.99), "max_ms": h.max() as f64 / 1000.0,
        "fsyncs_per_submit": fsyncs as f64 / ops.max(1) as f64, "mean_log_flush_ms": flush_ms,
        "errors": errors,
    }));
    Figure {
        rate,
        p50_ms: ms(&h, 0.5),
    }
}

/// A worker: each call completes the jobs of the previous one and leases the next ones, one
/// round trip and one log entry per batch of jobs (`CompleteAndLease`), until `stop` is set
/// and nothing is left to complete. `on_done` hears every completion result. When a call
/// fails, its completions are dropped (their leases expire), or with `retry_failed` sent
/// again with the next call (a stale token is then refused, which is fine).
pub(crate) async fn worker_loop(
    client: &Client,
    lease: pb::LeaseRequest,
    stop: &AtomicBool,
    retry_failed: bool,
    mut on_done: impl FnMut(&pb::CompletionResult),
) {
    let mut completions = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && completions.is_empty() {
            break;
        }
        let req = pb::CompleteAndLeaseRequest {
            completions: std::mem::take(&mut completions),
            lease: Some(pb::LeaseRequest {
                max: if stopping { 0 } else { lease.max },
                ..lease.clone()
            }),
        };
        let sent = retry_failed.then(|| req.completions.clone());
        let Ok(reply) = client.complete_and_lease(req).await else {
            if let Some(sent) = sent {
                completions = sent;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        reply.completions.iter().for_each(&mut on_done);
        completions.extend(reply.jobs.iter().map(|l| pb::CompleteRequest {
            job_id: l.job.as_ref().map_or(0, |j| j.id),
            token: l.token,
            success: true,
            ..Default::default()
        }));
    }
}

/// W2: producers submit, workers lease and complete through the worker API, on `queue` (a
/// queue of its own per measurement, so no job of an earlier one is counted).
async fn w2(b: &mut Bench, n: usize, secs: u64, queue: &str) -> Figure {
    let queue = queue.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let submitted: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let hist = Arc::new(Mutex::new(hist()));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..n {
        let client = b.clients[p % b.clients.len()].clone();
        let (stop, submitted, queue) = (stop.clone(), submitted.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if let Ok(id) = client.submit(payload_job(&queue)).await {
                    submitted.lock().expect("map").insert(id, t);
                }
            }
        }));
    }
    for w in 0..n {
        let client = b.clients[(w + 1) % b.clients.len()].clone();
        let (stop, submitted, queue) = (stop.clone(), submitted.clone(), queue.clone());
        let (hist, done) = (hist.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let lease = pb::LeaseRequest {
                worker_id: format!("bench-{w}"),
                queues: vec![queue],
                max: 16,
                wait_ms: 200,
                ..Default::default()
            };
            worker_loop(&client, lease, &stop, false, |r| {
                if r.state == "succeeded" {
                    done.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = submitted.lock().expect("map").remove(&r.job_id) {
                        hist.lock()
                            .expect("hist")
                            .record(micros(t.elapsed()).max(1))
                            .ok();
                    }
                }
            })
            .await;
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let h = hist.lock().expect("hist").clone();
    let rate = done.load(Ordering::Relaxed) as f64 / elapsed;
    println!(
        "W2 e2e     clients {n:>3}  {rate:>9.0} jobs/s  submit->complete p50 {:>7.2} ms  p99 {:>7.2} ms",
        ms(&h, 0.5),
        ms(&h, 0.99)
    );
    b.record(serde_json::json!({
        "section": "w2", "clients": n, "jobs_per_s": rate,
        "p50_ms": ms(&h, 0.5), "p99_ms": ms(&h, 0.99),
    }));
    Figure {
        rate,
        p50_ms: ms(&h, 0.5),
    }
}

/// W3: kill -9 of the leader under a 16-client writer; gap until writes succeed again.
async fn w3(b: &mut Bench, trials: usize) {
    let Some(cluster) = b.cluster.as_mut() else {
        println!("W3 failover: needs the local cluster (no --addr)");
        return;
    };
    let mut gaps = Vec::new();
    let mut missing_total = 0;
    for trial in 0..trials {
        let Some(leader) = cluster.wait_leader(Duration::from_secs(20)).await else {
            println!("W3: no leader");
            return;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
        let last_ok = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let mut tasks = Vec::new();
        for c in 0..16 {
            let client = b.clients[c % b.clients.len()].clone();
            let (stop, acked, last_ok) = (stop.clone(), acked.clone(), last_ok.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(id) = client.submit(payload_job("bench-w3")).await {
                        acked.lock().expect("acked").push(id);
                        last_ok.lock().expect("ok").push(Instant::now());
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed_at = Instant::now();
        cluster.kill(leader);
        let mut elected = None;
        while elected.is_none() && killed_at.elapsed() < Duration::from_secs(30) {
            if cluster
                .wait_leader(Duration::from_millis(200))
                .await
                .is_some_and(|l| l != leader)
            {
                elected = Some(killed_at.elapsed());
            }
        }
        // The gap: the longest stretch without an acknowledged write that ends after the kill
        // (a write in flight at the kill may still be acknowledged just after it).
        let deadline = killed_at + Duration::from_secs(30);
        while Instant::now() < deadline
            && !last_ok
                .lock()
                .expect("ok")
                .iter()
                .any(|t| *t > killed_at + Duration::from_millis(50))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let gap = {
            let mut oks = last_ok.lock().expect("ok").clone();
            oks.sort();
            oks.windows(2)
                .filter(|w| w[1] > killed_at)
                .map(|w| w[1] - w[0])
                .max()
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let _ = cluster.start(leader);
        cluster.wait_leader(Duration::from_secs(20)).await;
        let ids = acked.lock().expect("acked").clone();
        let reader = b.clients[trial % b.clients.len()].clone();
        let mut missing = 0;
        for id in &ids {
            if reader.job(*id, false).await.is_err() {
                missing += 1;
            }
        }
        missing_total += missing;
        if let Some(g) = gap {
            gaps.push(g.as_secs_f64() * 1000.0);
        }
        println!(
            "W3 trial {trial}: leader {leader} killed, new leader known to every node after {} ms, write gap {} ms, {} acked, {missing} missing",
            elected.map_or("none".into(), |g| g.as_millis().to_string()),
            gap.map_or("none".into(), |g| format!(
                "{:.0}",
                g.as_secs_f64() * 1000.0
            )),
            ids.len()
        );
    }
    gaps.sort_by(f64::total_cmp);
    let (min, med, max) = (
        gaps.first().copied().unwrap_or(f64::NAN),
        gaps.get(gaps.len() / 2).copied().unwrap_or(f64::NAN),
        gaps.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "W3 failover  gap min {min:.0} ms  median {med:.0} ms  max {max:.0} ms  acked writes missing {missing_total}"
    );
    b.record(serde_json::json!({
        "section": "w3", "gap_min_ms": min, "gap_median_ms": med, "gap_max_ms": max,
        "missing": missing_total, "trials": trials,
    }));
}

/// Resident memory of a process, in bytes.
pub(crate) fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Largest resident memory over the local cluster's nodes.
fn max_rss(b: &Bench) -> Option<u64> {
    let c = b.cluster.as_ref()?;
    c.ids()
        .into_iter()
        .filter_map(|id| c.pid(id).and_then(rss))
        .max()
}

/// Submit throughput second by second, 16 clients, while snapshots are taken (part of
/// `scale`, with the jobs it filled still held).
async fn scale_log(b: &mut Bench, secs: u64) {
    let snap = |b: &Bench| {
        let client = b.clients[0].clone();
        async move {
            client
                .node_status(0)
                .await
                .map(|s| s.snapshot_index)
                .unwrap_or(0)
        }
    };
    let snap_before = snap(b).await;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..16 {
        let client = b.clients[c % b.clients.len()].clone();
        let (stop, count) = (stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if client.submit(payload_job("bench-scale-log")).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut per_sec = Vec::new();
    let mut snapshots = Vec::new();
    let mut last_snap = snap_before;
    for _ in 0..(2 * secs).max(1) {
        let before = count.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        per_sec.push(count.load(Ordering::Relaxed) - before);
        let now = snap(b).await;
        if now != last_snap {
            snapshots.push(now);
            last_snap = now;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut sorted = per_sec.clone();
    sorted.sort_unstable();
    println!(
        "scale      submits/s each second with 16 clients: {per_sec:?}  (min {} median {} max {}), snapshots taken at index {snapshots:?}",
        sorted.first().unwrap_or(&0),
        sorted.get(sorted.len() / 2).unwrap_or(&0),
        sorted.last().unwrap_or(&0)
    );
    b.record(serde_json::json!({
        "section": "scale-log", "submits_per_s": per_sec, "snapshots": snapshots,
    }));
}

/// Scale: lease latency and memory at growing numbers of ready jobs, then submit throughput
/// second by second while the log passes several snapshots.
async fn scale(b: &mut Bench, sizes: &[usize], secs: u64) {
    let queue = "bench-scale";
    let mut prev_rss = max_rss(b);
    let mut ready = 0usize;
    let mut lease_at = Vec::new();
    for &size in sizes {
        // Fill to `size` ready jobs with SubmitBatch, 8 calls in flight over all nodes.
        let t = Instant::now();
        let added = size.saturating_sub(ready);
        let calls = added.div_ceil(1000);
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut failed = 0;
        for call in 0..calls {
            let n = 1000.min(added - call * 1000);
            let client = b.clients[call % b.clients.len()].clone();
            let jobs: Vec<pb::SubmitRequest> = (0..n)
                .map(|_| pb::SubmitRequest {
                    queue: queue.into(),
                    kind: Some(pb::submit_request::Kind::Payload(vec![b'x'; 16])),
                    ..Default::default()
                })
                .collect();
            pending.push(async move { client.submit_batch(jobs).await.map(|r| r.len()) });
            if pending.len() >= 8 {
                if let Some(r) = futures::StreamExt::next(&mut pending).await {
                    failed += usize::from(r.is_err());
                }
            }
        }
        while let Some(r) = futures::StreamExt::next(&mut pending).await {
            failed += usize::from(r.is_err());
        }
        ready = size;
        let fill_rate = added as f64 / t.elapsed().as_secs_f64();
        // Lease latency: 200 single-job leases (each a committed write), then the jobs are
        // handed back so the count stays.
        let client = b.clients[0].clone();
        let mut h = hist();
        for _ in 0..200 {
            let t = Instant::now();
            let Ok(reply) = client
                .lease(pb::LeaseRequest {
                    worker_id: "bench-scale".into(),
                    queues: vec![queue.into()],
                    max: 1,
                    ..Default::default()
                })
                .await
            else {
                continue;
            };
            h.record(micros(t.elapsed()).max(1)).ok();
            for l in reply.jobs {
                let id = l.job.as_ref().map_or(0, |j| j.id);
                let _ = client.release(id, l.token).await;
            }
        }
        let mem = max_rss(b);
        // Memory per job: growth of the largest node since the previous size, per job added.
        let per_job = match (mem, prev_rss) {
            (Some(m), Some(base)) => Some(m.saturating_sub(base) as f64 / added.max(1) as f64),
            _ => None,
        };
        prev_rss = mem;
        println!(
            "scale      ready {size:>9}  fill {fill_rate:>8.0} jobs/s ({failed} failed calls)  lease p50 {:>6.2} ms  p99 {:>6.2} ms  max node RSS {}  ~{} B/job",
            ms(&h, 0.5),
            ms(&h, 0.99),
            mem.map_or("n/a".into(), |m| format!("{:.0} MiB", m as f64 / 1048576.0)),
            per_job.map_or("n/a".into(), |p| format!("{p:.0}"))
        );
        lease_at.push(ms(&h, 0.5));
        b.record(serde_json::json!({
            "section": "scale", "ready": size, "fill_jobs_per_s": fill_rate,
            "lease_p50_ms": ms(&h, 0.5), "lease_p99_ms": ms(&h, 0.99),
            "max_rss_bytes": mem, "bytes_per_job": per_job, "failed_calls": failed,
        }));
    }
    if let (Some(first), Some(last)) = (lease_at.first(), lease_at.last()) {
        println!(
            "scale      lease p50 at {} ready / at {} ready: {:.2}x",
            sizes.last().unwrap_or(&0),
            sizes.first().unwrap_or(&0),
            last / first
        );
    }

    scale_log(b, secs).await;
}

fn ok_report() -> raftline::machine::Report {
    raftline::machine::Report {
        error_class: None,
        exit_code: Some(0),
        error: String::new(),
        output_tail: String::new(),
    }
}

fn lease_req(worker: &str, queue: &str, wait_ms: u64) -> pb::LeaseRequest {
    pb::LeaseRequest {
        worker_id: worker.into(),
        queues: vec![queue.into()],
        max: 1,
        wait_ms,
        ..Default::default()
    }
}

/// A chain of `n` external steps in `queue`, each depending on the one before.
fn chain(name: &str, queue: &str, n: usize) -> pb::SubmitWorkflowRequest {
    pb::SubmitWorkflowRequest {
        name: name.into(),
        max_parallel: 1,
        steps: (0..n)
            .map(|i| pb::WorkflowStepSpec {
                name: format!("s{i}"),
                job: Some(payload_job(queue)),
                depends_on: (i > 0)
                    .then(|| pb::StepDependency {
                        step: format!("s{}", i - 1),
                        condition: String::new(),
                    })
                    .into_iter()
                    .collect(),
                compensate: None,
            })
            .collect(),
        ..Default::default()
    }
}

/// Runs the plan's shell steps with `workers` in-bench workers (the bench cluster's nodes run
/// no jobs): lease from the plan's queue, run the argv, complete. Returns the wall time in ms
/// from submit to the workflow's end, in state-machine time.
async fn run_plan(client: Arc<Client>, req: pb::SubmitWorkflowRequest, workers: usize) -> u64 {
    let id = client.submit_workflow(req).await.expect("submit plan");
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, done) = (client.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-plan-{w}");
            while !done.load(Ordering::Relaxed) {
                let Ok(reply) = client.lease(lease_req(&worker, "default", 200)).await else {
                    continue;
                };
                for l in reply.jobs {
                    let job = l.job.expect("job");
                    if let Some(pb::job::Kind::Shell(sh)) = &job.kind {
                        let _ = tokio::process::Command::new(&sh.argv[0])
                            .args(&sh.argv[1..])
                            .status()
                            .await;
                    }
                    let _ = client.complete(job.id, l.token, &ok_report()).await;
                }
            }
        }));
    }
    let w = loop {
        let w = client.workflow(id, false).await.expect("workflow");
        if matches!(w.state.as_str(), "succeeded" | "failed" | "cancelled") {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(w.state, "succeeded", "plan {id} ended {}", w.state);
    w.finished_ms.unwrap_or(w.now_ms) - w.created_ms
}

/// DAG: the time from a step's completion to its dependent being leasable, two ways: a
/// `Complete`, then a long-polling `Lease` (end to end, two round trips), and one
/// `CompleteAndLease` (completion and lease in one log entry: the dependent comes back in the
/// same response only if it became ready in the apply of the completion). Then the 86-step
/// example plan with its steps run for real, at its max_parallel 8 and one by one.
async fn dag(b: &mut Bench, steps: usize, plan_serial: bool) {
    let client = b.clients[0].clone();
    // Complete, then Lease.
    client
        .submit_workflow(chain("bench-dag-a", "bench-dag-a", steps))
        .await
        .expect("submit chain");
    let mut h = hist();
    let mut lease = client
        .lease(lease_req("bench-dag", "bench-dag-a", 5_000))
        .await
        .expect("lease");
    for _ in 0..steps {
        let Some(l) = lease.jobs.pop() else { break };
        let id = l.job.as_ref().map_or(0, |j| j.id);
        client
            .complete(id, l.token, &ok_report())
            .await
            .expect("complete");
        let t = Instant::now();
        lease = client
            .lease(lease_req("bench-dag", "bench-dag-a", 5_000))
            .await
            .expect("lease");
        if !lease.jobs.is_empty() {
            h.record(micros(t.elapsed()).max(1)).ok();
        }
    }
    // CompleteAndLease.
    client
        .submit_workflow(chain("bench-dag-b", "bench-dag-b", steps))
        .await
        .expect("submit chain");
    let mut h2 = hist();
    let mut same = 0;
    let first = client
        .lease(lease_req("bench-dag", "bench-dag-b", 5_000))
        .await
        .expect("lease");
    let mut held = first.jobs.into_iter().next();
    while let Some(l) = held.take() {
        let id = l.job.as_ref().map_or(0, |j| j.id);
        let t = Instant::now();
        let reply = client
            .complete_and_lease(pb::CompleteAndLeaseRequest {
                completions: vec![raftline::proto::to_wire::complete_request(
                    id,
                    l.token,
                    &ok_report(),
                )],
                // No wait: a dependent not ready in the completion's own apply is a miss.
                lease: Some(lease_req("bench-dag", "bench-dag-b", 0)),
            })
            .await
            .expect("complete and lease");
        h2.record(micros(t.elapsed()).max(1)).ok();
        held = reply.jobs.into_iter().next();
        if held.is_some() {
            same += 1;
        }
    }
    let links = steps.saturating_sub(1);
    println!(
        "DAG        step done -> dependent leased: Complete then Lease p50 {:.2} ms p99 {:.2} ms; \
         CompleteAndLease p50 {:.2} ms, dependent in the same response {same}/{links}",
        ms(&h, 0.5),
        ms(&h, 0.99),
        ms(&h2, 0.5),
    );
    let plan_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/release-plan.toml");
    let plan =
        raftline::cli::workflow_file::load(std::path::Path::new(plan_file)).expect("example plan");
    let parallel = run_plan(client.clone(), plan.clone(), 16).await;
    let serial = if plan_serial {
        let mut one = plan.clone();
        one.max_parallel = 1;
        Some(run_plan(client.clone(), one, 16).await)
    } else {
        None
    };
    println!(
        "DAG        86-step release plan: wall {:.1} s at max_parallel {}, {} one by one",
        parallel as f64 / 1000.0,
        plan.max_parallel,
        serial.map_or("not run (--quick)".into(), |s| format!(
            "{:.1} s",
            s as f64 / 1000.0
        ))
    );
    b.record(serde_json::json!({
        "section": "dag", "steps": steps,
        "complete_then_lease_p50_ms": ms(&h, 0.5), "complete_then_lease_p99_ms": ms(&h, 0.99),
        "complete_and_lease_p50_ms": ms(&h2, 0.5), "dependent_in_same_response": same,
        "links": links, "plan_wall_ms": parallel, "plan_serial_wall_ms": serial,
    }));
}

fn machine() -> serde_json::Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    serde_json::json!({ "cores": cores, "kernel": kernel.trim(), "commit": commit })
}

/// Runs the sections `args` names, each against the cluster of `b`; `dir` is the run's temp dir.
async fn sections(b: &mut Bench, args: &Args, dir: &std::path::Path) {
    let (secs, quick) = (args.secs, args.quick);
    let all = args.section == "all";
    if all || args.section == "floor" {
        let (fsync, rtt) = floor(dir).await;
        println!(
            "floor      fdatasync 256 B p50 {:.3} ms   loopback TCP round trip p50 {:.3} ms",
            fsync / 1000.0,
            rtt / 1000.0
        );
        b.record(serde_json::json!({"section": "floor", "fdatasync_p50_ms": fsync / 1000.0, "tcp_rtt_p50_ms": rtt / 1000.0}));
    }
    if all || args.section == "w1" {
        for c in [1, 16, 64] {
            w1(b, c, secs).await;
        }
    }
    if all || args.section == "w2" {
        for c in [1, 16, 64] {
            w2(b, c, secs, &format!("bench-w2-{c}")).await;
        }
    }
    if all || args.section == "w3" {
        w3(b, if quick { 1 } else { 5 }).await;
    }
    if all || args.section == "scale" {
        let sizes: &[usize] = if quick {
            &[1_000, 5_000]
        } else {
            &[1_000, 100_000, 1_000_000]
        };
        scale(b, sizes, secs.max(if quick { 1 } else { 10 })).await;
    }
    if all || args.section == "dag" {
        dag(b, if quick { 20 } else { 200 }, !quick).await;
    }
    if args.section == "peers" {
        peers::run(b, dir, args.base_port, secs, args.rounds).await;
    }
    if args.section == "security" {
        security::run(b, dir, args.base_port + 30, secs, args.rounds).await;
    }
    if all || args.section == "rest" {
        rest::run(b, 16, secs, if quick { 1 } else { args.rounds }).await;
    }
    if args.section == "churn" {
        churn::run(b, if quick { 20_000 } else { args.jobs }, 4, 8).await;
    }
    if args.section == "import" {
        let n = if quick { 10_000 } else { args.import_elements };
        import::run(b, dir, args.base_port + 40, n).await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut dir = tempfile::tempdir().expect("temp dir");
    if std::env::var_os("RAFTLINE_BENCH_KEEP").is_some() {
        // Node logs and data dirs stay for a look afterwards.
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    let mut cluster = None;
    let (addrs, http) = if args.addr.is_empty() {
        let bin = match raftline_bin() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        // The churn section runs with a short retention, so finished jobs are purged as it goes.
        let settings = match args.section.as_str() {
            "churn" => format!(
                "{SETTINGS}finished_retention_ms = {}\n",
                churn::RETENTION_MS
            ),
            _ => SETTINGS.to_string(),
        };
        let mut c = Cluster::with_settings(dir.path(), bin, 3, args.base_port, &settings, false)
            .expect("cluster config");
        for id in c.ids() {
            c.start(id).expect("start node");
        }
        c.wait_leader(Duration::from_secs(30))
            .await
            .expect("a leader");
        let addrs: Vec<String> = c.nodes.iter().map(|n| n.api()).collect();
        let http = c
            .nodes
            .iter()
            .map(|n| format!("{}:{}", n.ip, n.http_port))
            .collect();
        cluster = Some(c);
        (addrs, http)
    } else {
        (args.addr.clone(), Vec::new())
    };
    let access = cluster.as_ref().map_or_else(
        || raftline::client::Access {
            token: std::env::var("RAFTLINE_TOKEN").ok(),
            ca_file: std::env::var_os("RAFTLINE_CA_FILE").map(Into::into),
        },
        |c| c.access.clone(),
    );
    let clients = addrs
        .iter()
        .map(|a| Arc::new(Client::with_access(std::slice::from_ref(a), &access).expect("client")))
        .collect();
    let mut b = Bench {
        clients,
        http,
        http_ca: access.ca_file.clone(),
        cluster,
        results: Vec::new(),
        within: None,
    };
    let meta = machine();
    println!("raftline-bench  {meta}  secs {}", args.secs);
    // Ctrl-C stops the run here: the section's future is dropped, and with it the processes it
    // started (kill on drop), then the raftline cluster below, then the temp dir.
    let interrupted = tokio::select! {
        () = sections(&mut b, &args, dir.path()) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        eprintln!("interrupted: stopping every process the bench started");
        drop(b);
        drop(dir);
        std::process::exit(130);
    }
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"));
    if !args.quick && std::fs::create_dir_all(&out).is_ok() {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out.join("results.jsonl"))
        {
            for r in &b.results {
                let line = serde_json::json!({ "machine": meta, "secs": args.secs, "result": r });
                let _ = writeln!(f, "{line}");
            }
        }
    }
    if let Some(mut c) = b.cluster.take() {
        c.stop_all();
    }
}
