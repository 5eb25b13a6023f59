//! Nemeses: faults injected on a schedule drawn from a seeded PRNG, so a seed replays the same
//! sequence of faults (the timing of client operations still varies from run to run).
//!
//! After a quiet period, one fault at a time: a partition (random halves, the leader isolated,
//! one node isolated, a bridge, a one-way cut), `kill -9` of a node or the leader (restarted
//! with its data dir after a while), or a SIGSTOP pause longer than the election timeout and
//! the lease ttl. Each fault is healed before the next; every start and end is logged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;

use crate::cluster::Cluster;
use crate::net::Net;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Network partitions (needs nftables).
    Partition,
    /// kill -9 and restart.
    Kill,
    /// SIGSTOP then SIGCONT.
    Pause,
}

impl Kind {
    /// Parses `partition`, `kill` or `pause`.
    pub fn parse(name: &str) -> Result<Kind, String> {
        match name {
            "partition" => Ok(Kind::Partition),
            "kill" => Ok(Kind::Kill),
            "pause" => Ok(Kind::Pause),
            other => Err(format!(
                "unknown nemesis {other:?} (partition, kill, pause)"
            )),
        }
    }
}

/// One applied fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Start, ms since the test began.
    pub start_ms: u64,
    /// End (healed), ms since the test began.
    pub end_ms: u64,
    /// What it was.
    pub what: String,
}

async fn leader(cluster: &Arc<Mutex<Cluster>>) -> Option<u64> {
    let c = cluster.lock().await;
    c.wait_leader(Duration::from_millis(500)).await
}

fn ms_since(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

/// Directed links between the given node groups, both ways, as address pairs.
fn cut(cluster: &Cluster, a: &[u64], b: &[u64], both_ways: bool) -> BTreeSet<(String, String)> {
    let ip = |id: u64| cluster.nodes[(id - 1) as usize].ip.clone();
    let mut links = BTreeSet::new();
    for x in a {
        for y in b {
            links.insert((ip(*x), ip(*y)));
            if both_ways {
                links.insert((ip(*y), ip(*x)));
            }
        }
    }
    links
}

/// Runs faults until `until`, then heals everything. Returns the faults applied.
pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    net: Option<Arc<Net>>,
    kinds: Vec<Kind>,
    seed: u64,
    t0: Instant,
    until: Instant,
) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kinds: Vec<Kind> = kinds
        .into_iter()
        .filter(|k| *k != Kind::Partition || net.is_some())
        .collect();
    let mut faults = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    while !kinds.is_empty() && Instant::now() + Duration::from_secs(3) < until {
        let kind = kinds[rng.random_range(0..kinds.len())];
        let hold = Duration::from_millis(rng.random_range(2_500..5_000));
        let start_ms = ms_since(t0);
        let ids = cluster.lock().await.ids();
        let target_leader = rng.random_bool(0.5);
        let target = match (target_leader, leader(&cluster).await) {
            (true, Some(l)) => l,
            _ => ids[rng.random_range(0..ids.len())],
        };
        let what = match kind {
            Kind::Partition => {
                let net = net.as_ref().expect("filtered above");
                let (name, links) = {
                    let c = cluster.lock().await;
                    partition(&c, &mut rng, target)
                };
                if let Err(e) = net.set_blocked(&links) {
                    eprintln!("nemesis: {e}");
                }
                tokio::time::sleep(hold).await;
                let _ = net.heal();
                name
            }
            Kind::Kill => {
                cluster.lock().await.kill(target);
                tokio::time::sleep(hold).await;
                if let Err(e) = cluster.lock().await.start(target) {
                    eprintln!("nemesis: restart: {e}");
                }
                format!(
                    "kill -9 node {target}{}",
                    if target_leader { " (leader)" } else { "" }
                )
            }
            Kind::Pause => {
                cluster.lock().await.pause(target, true);
                tokio::time::sleep(hold).await;
                cluster.lock().await.pause(target, false);
                format!(
                    "pause node {target}{}",
                    if target_leader { " (leader)" } else { "" }
                )
            }
        };
        let fault = Fault {
            start_ms,
            end_ms: ms_since(t0),
            what,
        };
        eprintln!(
            "nemesis: {:>6} ms .. {:>6} ms  {}",
            fault.start_ms, fault.end_ms, fault.what
        );
        faults.push(fault);
        let gap = Duration::from_millis(rng.random_range(1_000..2_500));
        tokio::time::sleep(gap.min(until.saturating_duration_since(Instant::now()))).await;
    }
    if let Some(net) = &net {
        let _ = net.heal();
    }
    faults
}

/// A random partition scheme around node `target`: its name and the links it cuts.
fn partition(
    c: &Cluster,
    rng: &mut ChaCha8Rng,
    target: u64,
) -> (String, BTreeSet<(String, String)>) {
    let ids = c.ids();
    let others: Vec<u64> = ids.iter().copied().filter(|i| *i != target).collect();
    match rng.random_range(0..4) {
        0 => {
            let mut shuffled = ids.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.random_range(0..=i));
            }
            let (a, b) = shuffled.split_at(shuffled.len() / 2);
            (
                format!("partition halves {a:?} | {b:?}"),
                cut(c, a, b, true),
            )
        }
        1 => (
            format!("partition isolate node {target}"),
            cut(c, &[target], &others, true),
        ),
        2 if others.len() >= 2 => {
            // A bridge: `target` sees both sides, the sides do not see each other.
            let (a, b) = others.split_at(others.len() / 2);
            (
                format!("partition bridge {a:?} <- {target} -> {b:?}"),
                cut(c, a, b, true),
            )
        }
        _ => (
            format!("partition one-way: {target} hears nobody"),
            cut(c, &others, &[target], false),
        ),
    }
}
