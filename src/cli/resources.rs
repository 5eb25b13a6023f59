//! `raftline resource ...` (named capacities that jobs need and locks hold) and
//! `raftline lock ...` (a unit of a resource held under a fencing token).

use clap::Subcommand;

use super::connect::client;
use super::parse::parse_duration;
use super::table::{self, Table};
use super::view;
use crate::error::{bounded, Error, Result};
use crate::proto::pb;

/// `raftline resource ...`
#[derive(Debug, Subcommand)]
pub enum ResourceCmd {
    /// Create a resource or change its capacity (1 = exclusive).
    Set {
        /// Resource name.
        name: String,
        /// Units.
        #[arg(long)]
        capacity: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every resource with its holders (jobs and locks) and waiting jobs.
    List {
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// One resource.
    Get {
        /// Resource name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline lock ...`
#[derive(Debug, Subcommand)]
pub enum LockCmd {
    /// Take one unit of a resource; prints the fencing token and expiry.
    Acquire {
        /// Resource name.
        name: String,
        /// Who holds it.
        #[arg(long)]
        owner: String,
        /// Time to live (e.g. 30s).
        #[arg(long, default_value = "30s")]
        ttl: String,
        /// Wait up to this long for a free unit (e.g. 10s).
        #[arg(long)]
        wait: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Extend a lock.
    Renew {
        /// Resource name.
        name: String,
        /// Fencing token of the grant (`--token` is the API token).
        #[arg(long = "fencing-token", id = "fencing_token")]
        token: u64,
        /// New time to live from now.
        #[arg(long, default_value = "30s")]
        ttl: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a lock back.
    Release {
        /// Resource name.
        name: String,
        /// Fencing token of the grant (`--token` is the API token).
        #[arg(long = "fencing-token", id = "fencing_token")]
        token: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `raftline resource ...`.
pub async fn resource(addr: &[String], command: ResourceCmd) -> Result<()> {
    let client = client(addr)?;
    let show = |list: &[pb::ResourceInfo], json: bool| {
        if json {
            view::print_array(list.iter().map(view::resource_json).collect());
            return;
        }
        let mut t = Table::new(&["NAME", "CAPACITY", "HELD", "JOBS", "LOCKS", "WAITING"]);
        for r in list {
            let locks: Vec<String> = r
                .locks
                .iter()
                .map(|l| {
                    format!(
                        "{} (token {}, expires {})",
                        l.owner,
                        l.token,
                        table::time(l.expires_ms)
                    )
                })
                .collect();
            let jobs: Vec<String> = r.job_holders.iter().map(|u| u.job_id.to_string()).collect();
            let waiters: Vec<String> = r.waiters.iter().map(|u| u.job_id.to_string()).collect();
            t.row(vec![
                table::text(&r.name),
                table::num(r.capacity),
                table::num(r.used_by_jobs as usize + r.locks.len()),
                table::text(jobs.join(",")),
                table::text(locks.join(", ")),
                table::text(waiters.join(",")),
            ]);
        }
        t.print();
    };
    let one = |list: Vec<pb::ResourceInfo>, name: &str, json: bool| match list
        .iter()
        .find(|r| r.name == name)
    {
        Some(r) if json => {
            println!("{}", view::resource_json(r));
            Ok(())
        }
        Some(r) => {
            show(std::slice::from_ref(r), false);
            Ok(())
        }
        None => Err(Error::NotFound(format!(
            "resource {}",
            bounded(name.into())
        ))),
    };
    match command {
        ResourceCmd::Set {
            name,
            capacity,
            json,
        } => one(
            vec![client.set_resource(&name, capacity).await?],
            &name,
            json,
        ),
        ResourceCmd::List { json } => {
            show(&client.resources("", false).await?, json);
            Ok(())
        }
        ResourceCmd::Get { name, json } => one(client.resources(&name, false).await?, &name, json),
    }
}

/// Runs `raftline lock ...`.
pub async fn lock(addr: &[String], command: LockCmd) -> Result<()> {
    let client = client(addr)?;
    let print = |g: &pb::LockGrant, json: bool, name: &str| {
        if json {
            println!(
                "{}",
                serde_json::json!({ "token": g.token, "expires_ms": g.expires_ms })
            );
        } else {
            println!(
                "{name}: token {} expires {}",
                g.token,
                table::time(g.expires_ms)
            );
        }
    };
    match command {
        LockCmd::Acquire {
            name,
            owner,
            ttl,
            wait,
            json,
        } => {
            let req = pb::AcquireLockRequest {
                resource: name.clone(),
                owner,
                ttl_ms: parse_duration("ttl", &ttl)?,
                wait_ms: wait
                    .as_deref()
                    .map(|w| parse_duration("wait", w))
                    .transpose()?
                    .unwrap_or(0),
            };
            print(&client.acquire_lock(req).await?, json, &name);
        }
        LockCmd::Renew {
            name,
            token,
            ttl,
            json,
        } => {
            let ttl = parse_duration("ttl", &ttl)?;
            print(&client.renew_lock(&name, token, ttl).await?, json, &name);
        }
        LockCmd::Release { name, token, json } => {
            client.release_lock(&name, token).await?;
            if json {
                let v = serde_json::json!({ "resource": name, "token": token, "released": true });
                println!("{v}");
            } else {
                println!("{name}: released token {token}");
            }
        }
    }
    Ok(())
}
