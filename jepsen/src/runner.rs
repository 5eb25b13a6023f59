//! One test run: start the cluster, run the workload under the nemesis, heal, drain, read
//! everything back, check, report. Teardown (processes, firewall table) runs on every exit
//! path through `Drop`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::checker::{self, Verdict};
use crate::cluster::{raftline_bin, Cluster};
use crate::history::{self, Kind, Op, Recorder};
use crate::nemesis::{self, Kind as Nemesis};
use crate::net::{Faults, Net};
use crate::proxy::Proxies;
use crate::report;
use crate::workload::{self, Ctx};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `queue`, `reads`, `lock` or `cron`.
    pub workload: String,
    /// Faults to inject.
    pub nemeses: Vec<Nemesis>,
    /// A scripted fault sequence (replaces random picks when not empty).
    pub script: Vec<nemesis::Step>,
    /// Length of the faulty period.
    pub time: Duration,
    /// Seed of the fault schedule and client choices.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: u64,
    /// First port (each node uses three, on its own address).
    pub base_port: u16,
    /// Where histories, logs and reports go.
    pub store: PathBuf,
    /// Network faults through `nft`, `proxy`, or `auto` (nftables when usable).
    pub net: String,
}

/// The outcome of a run.
pub struct Outcome {
    /// Test name.
    pub test: String,
    /// The report text.
    pub report: String,
    /// Checker verdicts.
    pub verdicts: Vec<Verdict>,
    /// Where the files are.
    pub dir: PathBuf,
}

/// Runs one test.
pub async fn run(plan: &Plan) -> Result<Outcome, String> {
    let test = test_name(plan);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let dir = plan.store.join(&test).join(stamp.to_string());
    let mut notes = Vec::new();
    let (cluster, net) = cluster_and_net(plan, &dir, &mut notes).await?;
    if plan.nemeses.contains(&Nemesis::Clock) && crate::cluster::libfaketime().is_none() {
        notes.push("no clock faults: libfaketime is not installed (Debian: faketime)".into());
    }
    let cluster = Arc::new(Mutex::new(cluster));
    {
        let mut c = cluster.lock().await;
        for id in c.ids() {
            c.start(id)?;
        }
        c.wait_leader(Duration::from_secs(30))
            .await
            .ok_or("the cluster elected no leader in 30 s")?;
    }
    let (nodes, access) = {
        let c = cluster.lock().await;
        (c.nodes.clone(), c.access.clone())
    };
    let t0 = Instant::now();
    let rec = Arc::new(Recorder::new(Box::new(move || {
        t0.elapsed().as_millis() as u64
    })));
    let ctx = Ctx::new(nodes, &access, rec.clone(), plan.seed);
    let mut tasks = tokio::task::JoinSet::new();
    let mut submitters = tokio::task::JoinSet::new();
    let mut cron = None;
    if plan.workload == "cron" {
        cron = Some(workload::create_cron(&ctx, Duration::from_secs(30)).await?);
    } else if plan.workload == "lock" {
        workload::create_lock(&ctx, Duration::from_secs(30)).await?;
        for p in 0..4 {
            tasks.spawn(workload::locker(ctx.clone(), 300 + p));
        }
    } else {
        for p in 0..3 {
            submitters.spawn(workload::submitter(ctx.clone(), p));
        }
        for p in 0..4 {
            tasks.spawn(workload::worker(ctx.clone(), 100 + p));
        }
    }
    for p in 0..3 {
        if plan.workload == "reads" {
            tasks.spawn(workload::reader(ctx.clone(), 200 + p));
        }
    }
    let until = t0 + plan.time;
    let faults = nemesis::run(
        cluster.clone(),
        net.clone(),
        plan.nemeses.clone(),
        plan.script.clone(),
        plan.seed,
        t0,
        until,
    )
    .await;
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;

    let client = heal_and_drain(
        &cluster,
        net.as_deref(),
        &ctx,
        submitters,
        tasks,
        &mut notes,
    )
    .await?;

    if let Some((id, first)) = cron {
        // Let the ticks that came due while healing be created.
        tokio::time::sleep(Duration::from_secs(3)).await;
        match workload::cron_reads(&ctx, &client, id, first, 1_001).await {
            Ok(n) => notes.push(format!("cron: {n} runs in the checked window")),
            Err(e) => notes.push(format!("cron reads failed: {e}")),
        }
    }
    match workload::final_reads(&ctx, &client, 1_000).await {
        Ok(n) => notes.push(format!("final reads: {n} jobs")),
        Err(e) => notes.push(format!("final reads failed: {e}")),
    }
    digests(&cluster, &rec).await;
    let history = rec.events();
    std::fs::write(dir.join("history.jsonl"), history::to_jsonl(&history))
        .map_err(|e| e.to_string())?;
    let verdicts = checker::check_all(&history);
    let report = report::render(&test, plan.seed, &notes, &history, &faults, &verdicts);
    std::fs::write(dir.join("report.txt"), &report).map_err(|e| e.to_string())?;
    cluster.lock().await.stop_all();
    Ok(Outcome {
        test,
        report,
        verdicts,
        dir,
    })
}

/// Makes the cluster (its processes not started yet) and what injects network faults:
/// nftables when partitions or lossy links are asked for and it works, else userspace proxies
/// in front of every peer port (noted; no lossy links then).
async fn cluster_and_net(
    plan: &Plan,
    dir: &std::path::Path,
    notes: &mut Vec<String>,
) -> Result<(Cluster, Option<Arc<Faults>>), String> {
    let wants_net = plan
        .nemeses
        .iter()
        .chain(plan.script.iter().map(|s| &s.kind))
        .any(|n| matches!(n, Nemesis::Partition | Nemesis::Lossy));
    let nft = match (wants_net, plan.net.as_str()) {
        (false, _) | (true, "proxy") => None,
        (true, mode) => match Net::new(&format!("{}", std::process::id())) {
            Ok(net) => Some(net),
            Err(e) if mode == "auto" => {
                notes.push(format!(
                    "nftables unavailable ({e}): partitions through userspace proxies, no lossy links"
                ));
                None
            }
            Err(e) => return Err(e),
        },
    };
    let proxied = wants_net && nft.is_none();
    let mut cluster = Cluster::new(dir, raftline_bin()?, plan.nodes, plan.base_port, proxied)?;
    let power_loss = plan
        .nemeses
        .iter()
        .chain(plan.script.iter().map(|s| &s.kind))
        .any(|n| *n == Nemesis::LoseUnsynced);
    if power_loss {
        // Fails the test with the reason when FUSE is not usable: never a silent pass.
        cluster.use_lossyfs()?;
        notes.push("data dirs on lossyfs: a power loss drops what a node had not synced".into());
    }
    let net = match nft {
        Some(net) => Some(Arc::new(Faults::Nft(net))),
        None if proxied => {
            let nodes: Vec<_> = cluster
                .nodes
                .iter()
                .map(|n| {
                    let public = format!("{}:{}", n.ip, n.raft_port).parse();
                    let private = format!("{}:{}", n.ip, n.raft_listen_port.unwrap_or(0)).parse();
                    (n.ip.clone(), public, private)
                })
                .filter_map(|(ip, a, b)| Some((ip, a.ok()?, b.ok()?)))
                .collect();
            Some(Arc::new(Faults::Proxy(Proxies::start(&nodes).await?)))
        }
        None => None,
    };
    Ok((cluster, net))
}

/// The test's name: workload and nemeses (or `scripted`).
fn test_name(plan: &Plan) -> String {
    let names: Vec<&str> = plan.nemeses.iter().map(|n| n.name()).collect();
    if plan.script.is_empty() {
        format!("{}-{}", plan.workload, names.join("+"))
    } else {
        format!("{}-scripted", plan.workload)
    }
}

/// Heals the network, resumes and restarts every node, stops the submitters, lets
/// well-behaved workers drain the queue, then stops every task. Returns a client for the
/// final reads.
async fn heal_and_drain(
    cluster: &Arc<Mutex<Cluster>>,
    net: Option<&Faults>,
    ctx: &Ctx,
    mut submitters: tokio::task::JoinSet<()>,
    mut tasks: tokio::task::JoinSet<()>,
    notes: &mut Vec<String>,
) -> Result<raftline::client::Client, String> {
    // Heal: network, paused and killed nodes; then drain the queue with well-behaved workers.
    if let Some(net) = net {
        net.heal()?;
    }
    {
        let mut c = cluster.lock().await;
        for id in c.ids() {
            c.pause(id, false);
            c.start(id)?;
        }
        if c.wait_leader(Duration::from_secs(30)).await.is_none() {
            notes.push("no leader within 30 s after healing".into());
        }
    }
    // No new jobs while draining: every job submitted must be finished by the final reads.
    ctx.stop_submitting.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while submitters.join_next().await.is_some() {}
    })
    .await;
    submitters.abort_all();
    ctx.draining.store(true, Ordering::Relaxed);
    let client = cluster.lock().await.client();
    if !workload::drained(&client, Duration::from_secs(60)).await {
        notes.push("the queue did not drain within 60 s after healing".into());
    }
    ctx.stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    Ok(client)
}

/// Records each node's state digest once all nodes have applied the same index.
async fn digests(cluster: &Arc<Mutex<Cluster>>, rec: &Recorder) {
    let c = cluster.lock().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = Vec::new();
        for id in c.ids() {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_secs(2), c.client_of(id).node_digest(0)).await
            {
                seen.push((id, s.digest_applied, s.digest));
            }
        }
        let same_index = seen.windows(2).all(|w| w[0].1 == w[1].1);
        if (same_index && seen.len() == c.ids().len()) || Instant::now() > deadline {
            for (node, applied, digest) in seen {
                rec.complete(
                    2_000 + node,
                    Some(node),
                    Kind::Ok,
                    Op::Digest {
                        node,
                        applied,
                        digest,
                    },
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
