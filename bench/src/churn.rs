//! Churn: jobs submitted and finished for as long as it takes to put `total` through, with a
//! short retention so the cold tier fills and is purged as it goes. Prints each node's
//! resident memory as it runs and at the end, and jobs finished per second (the slowest
//! second against the median, snapshots included).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftline::proto::pb;

use super::{rss, worker_loop, Bench};

/// Retention of finished jobs during the run (the cluster is started with it).
pub const RETENTION_MS: u64 = 60_000;
/// Jobs submitted but not yet finished, at most: producers wait below it.
const WINDOW: u64 = 200_000;
/// Jobs per submit call and per lease.
const SUBMIT_BATCH: usize = 1_000;
const LEASE_BATCH: u32 = 256;

fn rss_per_node(b: &Bench) -> Vec<u64> {
    b.cluster
        .as_ref()
        .map(|c| {
            c.ids()
                .into_iter()
                .filter_map(|id| c.pid(id).and_then(rss))
                .collect()
        })
        .unwrap_or_default()
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1_048_576.0)
}

/// Runs the churn of `total` jobs with `producers` submitters and `workers` workers.
pub async fn run(b: &mut Bench, total: u64, producers: usize, workers: usize) {
    let queue = "bench-churn";
    let stop = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    // Refused submit calls, and the last reason: a churn that stalls says why.
    let refused = Arc::new(AtomicU64::new(0));
    let last_refusal = Arc::new(std::sync::Mutex::new(String::new()));
    let mut tasks = Vec::new();
    for p in 0..producers {
        let client = b.clients[p % b.clients.len()].clone();
        let (stop, submitted, finished) = (stop.clone(), submitted.clone(), finished.clone());
        let (refused, last_refusal) = (refused.clone(), last_refusal.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && submitted.load(Ordering::Relaxed) < total {
                let open = submitted.load(Ordering::Relaxed) - finished.load(Ordering::Relaxed);
                if open >= WINDOW {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let jobs: Vec<pb::SubmitRequest> = (0..SUBMIT_BATCH)
                    .map(|_| pb::SubmitRequest {
                        queue: queue.into(),
                        kind: Some(pb::submit_request::Kind::Payload(vec![b'x'; 64])),
                        ..Default::default()
                    })
                    .collect();
                match client.submit_batch(jobs).await {
                    Ok(r) => {
                        submitted.fetch_add(r.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        *last_refusal.lock().expect("refusal") = e.to_string();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    for w in 0..workers {
        let client = b.clients[(w + 1) % b.clients.len()].clone();
        let (stop, finished) = (stop.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            let lease = pb::LeaseRequest {
                worker_id: format!("bench-churn-{w}"),
                queues: vec![queue.into()],
                max: LEASE_BATCH,
                wait_ms: 200,
                ..Default::default()
            };
            worker_loop(&client, lease, &stop, true, |r| {
                if r.state == "succeeded" {
                    finished.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
        }));
    }
    let started = Instant::now();
    let mut per_sec = Vec::new();
    let mut peak = Vec::<u64>::new();
    let mut last = 0;
    let mut last_at = Instant::now();
    // Ticks a second apart on the clock, not a sleep after each look: on a loaded box a sleep
    // wakes late, and counting each wake-up as a second overstated the rates.
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    second.tick().await;
    while finished.load(Ordering::Relaxed) < total {
        second.tick().await;
        let now = finished.load(Ordering::Relaxed);
        let took = last_at.elapsed().as_secs_f64().max(1e-3);
        last_at = Instant::now();
        per_sec.push(((now - last) as f64 / took) as u64);
        last = now;
        let rss = rss_per_node(b);
        if peak.len() < rss.len() {
            peak.resize(rss.len(), 0);
        }
        for (p, r) in peak.iter_mut().zip(&rss) {
            *p = (*p).max(*r);
        }
        if per_sec.len() % 30 == 0 {
            let snapshot = b.clients[0]
                .node_status(0)
                .await
                .map_or(0, |s| s.snapshot_index);
            println!(
                "churn      {:>5.0} s  finished {now:>10}  last 30 s {:>7.0} jobs/s  RSS per node {}  snapshot at {snapshot}",
                started.elapsed().as_secs_f64(),
                per_sec[per_sec.len() - 30..].iter().sum::<u64>() as f64 / 30.0,
                rss.iter().map(|r| mib(*r)).collect::<Vec<_>>().join(" / "),
            );
            let n = refused.swap(0, Ordering::Relaxed);
            if n > 0 {
                let why = last_refusal.lock().expect("refusal").clone();
                println!("churn      {n} submit calls refused in the last 30 s, the last: {why}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    report(b, total, started.elapsed().as_secs_f64(), &per_sec, &peak);
}

/// Prints the run's summary (the slowest seconds of the steady state against the median, the
/// peak resident memory per node) and records it.
fn report(b: &mut Bench, total: u64, elapsed: f64, per_sec: &[u64], peak: &[u64]) {
    // The first and last seconds ramp up and drain; the rest is the steady state.
    let steady: Vec<u64> = per_sec
        .iter()
        .copied()
        .skip(5)
        .take(per_sec.len().saturating_sub(7))
        .collect();
    let mut slowest_at: Vec<(u64, usize)> = steady
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i + 5))
        .collect();
    slowest_at.sort_unstable();
    slowest_at.truncate(5);
    println!("churn      slowest seconds (jobs finished, second of the run): {slowest_at:?}");
    let mut sorted = steady.clone();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let slowest = sorted.first().copied().unwrap_or(0);
    println!(
        "churn      {total} jobs submitted and finished in {elapsed:.0} s ({:.0} jobs/s), retention {} s; peak RSS per node {}; finished per second: slowest {slowest}, median {median} ({:.2}x)",
        total as f64 / elapsed,
        RETENTION_MS / 1000,
        peak.iter().map(|r| mib(*r)).collect::<Vec<_>>().join(" / "),
        slowest as f64 / median.max(1) as f64,
    );
    b.record(serde_json::json!({
        "section": "churn", "jobs": total, "secs": elapsed, "retention_ms": RETENTION_MS,
        "peak_rss_bytes": peak, "finished_per_s_min": slowest, "finished_per_s_median": median,
    }));
}
