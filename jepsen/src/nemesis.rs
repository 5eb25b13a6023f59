//! Nemeses: faults injected on a schedule drawn from a seeded PRNG, so a seed replays the same
//! sequence of faults (the timing of client operations still varies from run to run).
//!
//! After a quiet period, one fault at a time: a partition (random halves, the leader isolated,
//! one node isolated, a bridge, a one-way cut, a ring with 5 nodes), lossy links (30% of packets dropped), `kill -9`
//! of a node, the leader, a majority or every node (restarted with their data dirs after a
//! while), a SIGSTOP pause longer than the election timeout and the lease ttl, a rolling
//! restart, or a node restarted with its wall clock off by 5-60 s (libfaketime; the leader
//! stamps proposals with its clock, so a skewed leader moves state-machine time), or a power
//! loss (`lose-unsynced`: `kill -9` of a node, a majority or every node, then every write
//! their data dirs had not synced is dropped by lossyfs before they restart), or a membership
//! change (`member`: leadership transferred, or a node replaced: `kill -9`, its data dir
//! emptied, removed, started empty with `--join`, added back and promoted). Each fault is
//! healed before the next (a replacement a fault cut short is finished at the next `member`
//! step, and at the end); every start and end is logged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;

use crate::cluster::Cluster;
use crate::net::Faults;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Network partitions (needs nftables).
    Partition,
    /// kill -9 and restart.
    Kill,
    /// SIGSTOP then SIGCONT.
    Pause,
    /// 30% packet loss on every link (needs nftables).
    Lossy,
    /// Rolling restart: SIGTERM each node in turn and start it again.
    Restart,
    /// A node restarted with its clock offset by tens of seconds (libfaketime).
    Clock,
    /// kill -9 of one node, a majority or all, and their unsynced writes dropped (lossyfs).
    LoseUnsynced,
    /// A membership change: leadership transferred, or a node replaced (kill -9, its data dir
    /// emptied, removed, started again empty with `--join`, added back and promoted).
    Member,
}

impl Kind {
    /// Parses a nemesis name.
    pub fn parse(name: &str) -> Result<Kind, String> {
        match name {
            "partition" => Ok(Kind::Partition),
            "kill" => Ok(Kind::Kill),
            "pause" => Ok(Kind::Pause),
            "lossy" => Ok(Kind::Lossy),
            "restart" => Ok(Kind::Restart),
            "clock" => Ok(Kind::Clock),
            "lose-unsynced" => Ok(Kind::LoseUnsynced),
            "member" => Ok(Kind::Member),
            other => Err(format!(
                "unknown nemesis {other:?} (partition, kill, pause, lossy, restart, clock, \
                 lose-unsynced, member)"
            )),
        }
    }

    /// The nemesis's name, as parsed.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Partition => "partition",
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Lossy => "lossy",
            Kind::Restart => "restart",
            Kind::Clock => "clock",
            Kind::LoseUnsynced => "lose-unsynced",
            Kind::Member => "member",
        }
    }
}

/// Whom a scripted fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The current leader.
    Leader,
    /// A node drawn from the seeded PRNG.
    Random,
    /// This node.
    Node(u64),
}

/// One step of a scripted fault sequence, e.g. `kill:leader`, `pause:2`, `partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The fault.
    pub kind: Kind,
    /// Its target.
    pub target: Target,
}

impl Step {
    /// Parses `KIND[:leader|random|N]`.
    pub fn parse(text: &str) -> Result<Step, String> {
        let (kind, target) = text.split_once(':').unwrap_or((text, "random"));
        let target = match target {
            "leader" => Target::Leader,
            "random" => Target::Random,
            n => Target::Node(n.parse().map_err(|_| {
                format!("script step {text:?}: target must be leader, random or a node id")
            })?),
        };
        Ok(Step {
            kind: Kind::parse(kind)?,
            target,
        })
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

/// Applies one fault of `kind` to `target` (of `ids`; `target_leader` when it was the
/// leader), holds it for `hold`, heals it, and says what it was.
async fn apply_fault(
    kind: Kind,
    cluster: &Arc<Mutex<Cluster>>,
    net: Option<&Faults>,
    rng: &mut ChaCha8Rng,
    (ids, target, target_leader): (&[u64], u64, bool),
    hold: Duration,
) -> String {
    match kind {
        Kind::Partition => {
            let net = net.expect("filtered above");
            let (name, links) = {
                let c = cluster.lock().await;
                partition(&c, rng, target)
            };
            if let Err(e) = net.set_blocked(&links) {
                eprintln!("nemesis: {e}");
            }
            tokio::time::sleep(hold).await;
            let _ = net.heal();
            name
        }
        Kind::Kill => {
            let (victims, name) = kill_set(ids, rng, target, target_leader);
            for id in &victims {
                cluster.lock().await.kill(*id);
            }
            tokio::time::sleep(hold).await;
            for id in &victims {
                if let Err(e) = cluster.lock().await.start(*id) {
                    eprintln!("nemesis: restart: {e}");
                }
            }
            name
        }
        Kind::LoseUnsynced => {
            let (victims, name) = kill_set(ids, rng, target, target_leader);
            let mut lost = Vec::new();
            {
                let mut c = cluster.lock().await;
                for id in &victims {
                    c.kill(*id);
                }
                for id in &victims {
                    match c.lose_unsynced(*id) {
                        Ok(what) => lost.push(format!("node {id}: {what}")),
                        // Not silently passed over: the report says the fault did not happen.
                        Err(e) => {
                            eprintln!("nemesis: {e}");
                            lost.push(format!("node {id}: LOSSYFS CRASH FAILED: {e}"));
                        }
                    }
                }
            }
            tokio::time::sleep(hold).await;
            for id in &victims {
                if let Err(e) = cluster.lock().await.start(*id) {
                    eprintln!("nemesis: restart: {e}");
                }
            }
            format!(
                "power loss: {}, unsynced writes dropped ({})",
                name,
                lost.join("; ")
            )
        }
        Kind::Lossy => {
            let net = net.expect("filtered above");
            let links = {
                let c = cluster.lock().await;
                cut(&c, ids, ids, true)
            };
            if let Err(e) = net.set_lossy(&links) {
                eprintln!("nemesis: {e}");
            }
            tokio::time::sleep(hold).await;
            let _ = net.heal();
            "lossy links: 30% of packets dropped between all nodes".to_string()
        }
        Kind::Clock => {
            let lib = crate::cluster::libfaketime().expect("filtered above");
            let skew_s: i64 = rng.random_range(5..60) * if rng.random_bool(0.5) { 1 } else { -1 };
            let env = vec![
                ("LD_PRELOAD".to_string(), lib.display().to_string()),
                ("FAKETIME".to_string(), format!("{skew_s:+}s")),
                ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
            ];
            {
                let mut c = cluster.lock().await;
                c.kill(target);
                if let Err(e) = c.start_with(target, &env) {
                    eprintln!("nemesis: clock: {e}");
                }
            }
            tokio::time::sleep(hold).await;
            let mut c = cluster.lock().await;
            c.kill(target);
            if let Err(e) = c.start(target) {
                eprintln!("nemesis: clock: {e}");
            }
            format!("clock of node {target} off by {skew_s:+} s")
        }
        Kind::Restart => {
            for id in ids {
                let mut c = cluster.lock().await;
                c.stop(*id);
                if let Err(e) = c.start(*id) {
                    eprintln!("nemesis: restart: {e}");
                }
                drop(c);
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            }
            "rolling restart of every node".to_string()
        }
        Kind::Member => member(cluster, rng, ids, target, target_leader).await,
        Kind::Pause => {
            cluster.lock().await.pause(target, true);
            tokio::time::sleep(hold).await;
            cluster.lock().await.pause(target, false);
            format!(
                "pause node {target}{}",
                if target_leader { " (leader)" } else { "" }
            )
        }
    }
}

fn request(action: &str, node_id: u64) -> raftline::proto::pb::ChangeMembershipRequest {
    raftline::proto::pb::ChangeMembershipRequest {
        action: action.into(),
        node_id,
        ..Default::default()
    }
}

/// How long one membership step may take before the nemesis gives up on it.
const MEMBER_STEP: Duration = Duration::from_secs(20);

/// Adds node `id` (running with `--join`, or as a removed member) back, and promotes it.
async fn add_back(cluster: &Arc<Mutex<Cluster>>, id: u64) -> Result<(), String> {
    let (admin, node) = {
        let c = cluster.lock().await;
        (c.client(), c.nodes[(id - 1) as usize].clone())
    };
    let mut add = request("add", id);
    add.raft_addr = format!("{}:{}", node.ip, node.raft_port);
    add.api_addr = node.api();
    let deadline = Instant::now() + MEMBER_STEP;
    loop {
        match admin.change_membership(add.clone()).await {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => return Err(format!("add {id}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    raftline::cli::members::catch_up_and_promote(&admin, id, Instant::now() + MEMBER_STEP)
        .await
        .map(|_| ())
        .map_err(|e| format!("promote {id}: {e}"))
}

/// Adds back, as voters, the nodes of `ids` an unfinished replacement left out.
async fn readd_missing(cluster: &Arc<Mutex<Cluster>>, ids: &[u64]) -> Vec<String> {
    let admin = cluster.lock().await.client();
    let mut said = Vec::new();
    let deadline = Instant::now() + MEMBER_STEP;
    let view = loop {
        match admin.change_membership(request("progress", 0)).await {
            Ok(view) => break view,
            Err(e) if Instant::now() >= deadline => {
                said.push(format!("membership unreadable: {e}"));
                return said;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    for id in ids {
        if !view.members.iter().any(|m| m.id == *id && m.voter) {
            let r = add_back(cluster, *id).await;
            said.push(format!("node {id} re-added: {r:?}"));
        }
    }
    said
}

/// One membership change (see [`Kind::Member`]): the leader as target is replaced; another
/// target is replaced or leadership moves away from it, by the seeded PRNG. Any node left out
/// by an earlier change that did not finish (a partition, a kill) is added back first.
async fn member(
    cluster: &Arc<Mutex<Cluster>>,
    rng: &mut ChaCha8Rng,
    ids: &[u64],
    target: u64,
    target_leader: bool,
) -> String {
    let admin = cluster.lock().await.client();
    let mut said = readd_missing(cluster, ids).await;
    // The leader as target is always replaced; a random node, half the time.
    if !target_leader && rng.random_bool(0.5) {
        let others: Vec<u64> = ids.iter().copied().filter(|i| *i != target).collect();
        let to = others[rng.random_range(0..others.len())];
        let r = admin
            .change_membership(request("transfer_leader", to))
            .await
            .map(|v| v.leader);
        said.push(format!("transfer leadership to node {to}: {r:?}"));
        return said.join("; ");
    }
    let via = ids.iter().copied().find(|i| *i != target).unwrap_or(target);
    let wiped = {
        let mut c = cluster.lock().await;
        c.kill(target);
        c.wipe(target)
    };
    let deadline = Instant::now() + MEMBER_STEP;
    let removed = loop {
        match admin.change_membership(request("remove", target)).await {
            Ok(_) => break Ok(()),
            Err(e) if Instant::now() >= deadline => break Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    let started = cluster.lock().await.start_joining(target, via);
    let added = match (&wiped, &removed, &started) {
        (Ok(()), Ok(()), Ok(())) => add_back(cluster, target).await,
        _ => Err("skipped".into()),
    };
    said.push(format!(
        "replace node {target}: kill -9, wipe {wiped:?}, remove {removed:?}, start --join \
         {started:?}, add and promote {added:?}"
    ));
    said.join("; ")
}

/// Runs faults until `until`, then heals everything. Returns the faults applied.
pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    net: Option<Arc<Faults>>,
    kinds: Vec<Kind>,
    script: Vec<Step>,
    seed: u64,
    t0: Instant,
    until: Instant,
) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kinds: Vec<Kind> = kinds.into_iter().filter(|k| available(*k, &net)).collect();
    let script: Vec<Step> = script
        .into_iter()
        .filter(|s| available(s.kind, &net))
        .collect();
    let mut faults = Vec::new();
    let mut step = 0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    while !(kinds.is_empty() && script.is_empty())
        && Instant::now() + Duration::from_secs(3) < until
    {
        // A script runs its steps in order (cycling); otherwise kind and target are drawn.
        let (kind, want) = match script.get(step % script.len().max(1)) {
            Some(s) if !script.is_empty() => (s.kind, s.target),
            _ => {
                let kind = kinds[rng.random_range(0..kinds.len())];
                let want = if rng.random_bool(0.5) {
                    Target::Leader
                } else {
                    Target::Random
                };
                (kind, want)
            }
        };
        step += 1;
        let hold = Duration::from_millis(rng.random_range(2_500..5_000));
        let start_ms = ms_since(t0);
        let ids = cluster.lock().await.ids();
        let random = ids[rng.random_range(0..ids.len())];
        let (target, target_leader) = match want {
            Target::Leader => match leader(&cluster).await {
                Some(l) => (l, true),
                None => (random, false),
            },
            Target::Random => (random, false),
            Target::Node(n) if ids.contains(&n) => (n, false),
            Target::Node(_) => (random, false),
        };
        let what = apply_fault(
            kind,
            &cluster,
            net.as_deref(),
            &mut rng,
            (&ids, target, target_leader),
            hold,
        )
        .await;
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
    if kinds.contains(&Kind::Member) || script.iter().any(|s| s.kind == Kind::Member) {
        let ids = cluster.lock().await.ids();
        for what in readd_missing(&cluster, &ids).await {
            eprintln!("nemesis: after the run: {what}");
        }
    }
    faults
}

/// Whether a fault kind can be injected on this machine.
fn available(kind: Kind, net: &Option<Arc<Faults>>) -> bool {
    match kind {
        Kind::Partition => net.is_some(),
        Kind::Lossy => net.as_ref().is_some_and(|n| n.lossy()),
        Kind::Clock => crate::cluster::libfaketime().is_some(),
        _ => true,
    }
}

/// Which nodes a kill fault takes down: the target (a random node or the leader), a majority,
/// or all of them.
fn kill_set(ids: &[u64], rng: &mut ChaCha8Rng, target: u64, leader: bool) -> (Vec<u64>, String) {
    match rng.random_range(0..4) {
        0 => {
            let mut majority = vec![target];
            majority.extend(
                ids.iter()
                    .copied()
                    .filter(|i| *i != target)
                    .take(ids.len() / 2),
            );
            (majority.clone(), format!("kill -9 a majority {majority:?}"))
        }
        1 => (ids.to_vec(), "kill -9 every node".to_string()),
        _ => (
            vec![target],
            format!(
                "kill -9 node {target}{}",
                if leader { " (leader)" } else { "" }
            ),
        ),
    }
}

/// A random partition scheme around node `target`: its name and the links it cuts.
fn partition(
    c: &Cluster,
    rng: &mut ChaCha8Rng,
    target: u64,
) -> (String, BTreeSet<(String, String)>) {
    let ids = c.ids();
    let others: Vec<u64> = ids.iter().copied().filter(|i| *i != target).collect();
    match rng.random_range(0..5) {
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
        3 if ids.len() >= 5 => {
            // A ring: every node sees only its two neighbours (a majority nobody agrees on).
            let mut links = BTreeSet::new();
            let n = ids.len();
            for (i, a) in ids.iter().enumerate() {
                for (j, b) in ids.iter().enumerate() {
                    let distance = (i + n - j) % n;
                    if a != b && distance != 1 && distance != n - 1 {
                        links.extend(cut(c, &[*a], &[*b], false));
                    }
                }
            }
            ("partition ring".to_string(), links)
        }
        _ => (
            format!("partition one-way: {target} hears nobody"),
            cut(c, &others, &[target], false),
        ),
    }
}
