//! `raftline-jepsen`: runs partition and fault tests against a real raftline cluster.
//!
//! `cargo run --release -p raftline-jepsen -- --workload queue --nemesis partition,kill,pause
//! --time 60 --seed S`; `--all` runs every workload against every nemesis. Files go under
//! `jepsen/store/<test>/<time>/`. The last line is `N passed, N failed`; the exit code is 1
//! when any checker failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use raftline_jepsen::nemesis::{Kind, Step};
use raftline_jepsen::runner::{self, Plan};

/// Partition and fault tests for raftline.
#[derive(Debug, Parser)]
#[command(name = "raftline-jepsen")]
struct Args {
    /// Workload: queue, reads, lock or cron.
    #[arg(long, default_value = "queue")]
    workload: String,
    /// Faults, comma-separated: partition, kill, pause, lossy, restart, clock, lose-unsynced
    /// (a power loss: needs FUSE, i.e. /dev/fuse and root or fusermount3; fails when absent).
    #[arg(long, value_delimiter = ',', default_value = "partition,kill,pause")]
    nemesis: Vec<String>,
    /// A scripted fault sequence, run in order instead of random picks, e.g.
    /// `kill:leader,pause:2,partition:leader,clock:1,restart` (targets: leader, random, N).
    #[arg(long, value_delimiter = ',')]
    script: Vec<String>,
    /// Seconds of faults per test.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Seed of the fault schedule (random when omitted; printed for replay).
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes in the cluster (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// First port (each node uses three on its own loopback address 127.0.1.N).
    #[arg(long, default_value_t = 17100)]
    base_port: u16,
    /// Run every workload against partition, kill and pause alone, and against all three
    /// with membership changes (member) between them.
    /// Not lose-unsynced: it needs FUSE, so it is asked for by name (CI does).
    #[arg(long)]
    all: bool,
    /// Where results go.
    #[arg(long, default_value = "jepsen/store")]
    store: PathBuf,
    /// Network faults: nft (nftables, needs root), proxy (userspace proxies), or auto.
    #[arg(long, default_value = "auto")]
    net: String,
}

fn plans(args: &Args) -> Result<Vec<Plan>, String> {
    if !matches!(args.workload.as_str(), "queue" | "reads" | "lock" | "cron") {
        return Err(format!(
            "--workload {:?}: one of queue, reads, lock, cron",
            args.workload
        ));
    }
    if !matches!(args.net.as_str(), "auto" | "nft" | "proxy") {
        return Err(format!("--net {:?}: must be auto, nft or proxy", args.net));
    }
    if !(3..=5).contains(&args.nodes) {
        return Err(format!("--nodes {}: must be 3..=5", args.nodes));
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let nemeses: Vec<Kind> = args
        .nemesis
        .iter()
        .map(|n| Kind::parse(n))
        .collect::<Result<_, _>>()?;
    let script: Vec<Step> = args
        .script
        .iter()
        .map(|s| Step::parse(s))
        .collect::<Result<_, _>>()?;
    let plan = |workload: &str, nemeses: Vec<Kind>| Plan {
        workload: workload.to_string(),
        nemeses,
        script: script.clone(),
        time: Duration::from_secs(args.time),
        seed,
        nodes: args.nodes,
        base_port: args.base_port,
        store: args.store.clone(),
        net: args.net.clone(),
    };
    if !args.all {
        return Ok(vec![plan(&args.workload, nemeses)]);
    }
    let mut all = Vec::new();
    for workload in ["queue", "reads", "lock", "cron"] {
        for n in [Kind::Partition, Kind::Kill, Kind::Pause] {
            all.push(plan(workload, vec![n]));
        }
        all.push(plan(
            workload,
            vec![Kind::Partition, Kind::Kill, Kind::Pause, Kind::Member],
        ));
    }
    Ok(all)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let plans = match plans(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for plan in &plans {
        let outcome = tokio::select! {
            o = runner::run(plan) => o,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: tearing down");
                return ExitCode::from(130);
            }
        };
        match outcome {
            Ok(o) => {
                println!("{}", o.report);
                println!("files: {}", o.dir.display());
                if o.verdicts.iter().all(|v| v.valid) {
                    passed += 1;
                } else {
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
