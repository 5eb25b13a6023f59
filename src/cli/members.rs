//! `raftline cluster add|remove|promote|demote|transfer-leader`: membership changes at
//! runtime, carried out by the leader (see `raft/membership.rs`). `add` brings a node in as a
//! learner, shows its catch-up, and promotes it to voter once it is within
//! `PROMOTE_LAG_MAX` entries of the leader.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::connect::client;
use super::table::{self, Table};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::machine::limits;
use crate::proto::pb;

/// How often `cluster add` reads the new node's progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The flags of `raftline cluster add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The new node's id (1 or more; an id removed earlier may be used again).
    #[arg(long)]
    pub id: u64,
    /// Its peer address, as the other nodes reach it.
    #[arg(long)]
    pub raft_addr: SocketAddr,
    /// Its API address.
    #[arg(long)]
    pub api_addr: SocketAddr,
    /// Its HTTP address: the node's own setting (`raftline node --http-addr`), not replicated;
    /// given here it is only checked against the other two.
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// Leave it a learner (no vote); `cluster promote` makes it a voter later.
    #[arg(long)]
    pub no_promote: bool,
    /// How long to wait for it to catch up, e.g. `10m` (at most 24h).
    #[arg(long, default_value = "10m")]
    pub timeout: String,
    /// Print JSON: the change and the membership it left (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
}

fn request(action: &str, node_id: u64) -> pb::ChangeMembershipRequest {
    pb::ChangeMembershipRequest {
        action: action.into(),
        node_id,
        ..Default::default()
    }
}

/// Prints the membership a change left: lines, or one JSON object naming the change.
fn print_members(reply: &pb::ChangeMembershipResponse, action: &str, id: u64, json: bool) {
    let behind = |m: &pb::Member| {
        m.matched_index
            .map(|i| reply.leader_last_log_index.saturating_sub(i))
    };
    if json {
        let members: Vec<serde_json::Value> = reply
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "raft_addr": m.raft_addr, "api_addr": m.api_addr,
                    "voter": m.voter, "behind": behind(m),
                })
            })
            .collect();
        let v = serde_json::json!({
            "action": action, "node_id": id, "leader": reply.leader,
            "leader_last_log_index": reply.leader_last_log_index, "members": members,
        });
        println!("{v}");
        return;
    }
    println!("leader: {}", reply.leader);
    let mut t = Table::new(&["NODE", "RAFT", "API", "ROLE", "BEHIND"]);
    for m in &reply.members {
        let role = if m.voter { "voter" } else { "learner" };
        let lag = behind(m).map_or_else(|| "?".into(), |n| n.to_string());
        t.row(vec![
            table::num(m.id),
            table::text(&m.raft_addr),
            table::text(&m.api_addr),
            table::text(role),
            table::num(lag),
        ]);
    }
    t.print();
}

/// Runs `raftline cluster add`.
pub async fn add(addr: &[String], args: AddArgs) -> Result<()> {
    let mut own = vec![args.raft_addr, args.api_addr];
    own.extend(args.http_addr);
    if (1..own.len()).any(|i| own[..i].contains(&own[i])) {
        return Err(Error::InvalidArgument {
            field: "http_addr".into(),
            message: "--raft-addr, --api-addr and --http-addr must differ".into(),
        });
    }
    let timeout = Duration::from_millis(super::parse::parse_duration("timeout", &args.timeout)?);
    if timeout > Duration::from_secs(24 * 3600) {
        return Err(Error::InvalidArgument {
            field: "timeout".into(),
            message: format!("{} is over the limit of 24h", args.timeout),
        });
    }
    let client = client(addr)?;
    let mut req = request("add", args.id);
    req.raft_addr = args.raft_addr.to_string();
    req.api_addr = args.api_addr.to_string();
    let reply = client.change_membership(req).await?;
    eprintln!("node {} added as a learner", args.id);
    if args.no_promote || member(&reply, args.id).is_some_and(|m| m.voter) {
        print_members(&reply, "add", args.id, args.json);
        return Ok(());
    }
    let reply = catch_up_and_promote(&client, args.id, Instant::now() + timeout).await?;
    eprintln!("node {} is a voter", args.id);
    print_members(&reply, "add", args.id, args.json);
    Ok(())
}

fn member(reply: &pb::ChangeMembershipResponse, id: u64) -> Option<&pb::Member> {
    reply.members.iter().find(|m| m.id == id)
}

/// Reads node `id`'s progress until it is close enough to the leader, then promotes it,
/// retrying a refusal (it fell back behind) until `deadline`.
pub async fn catch_up_and_promote(
    client: &Client,
    id: u64,
    deadline: Instant,
) -> Result<pb::ChangeMembershipResponse> {
    let mut last_said = None;
    loop {
        let view = client.change_membership(request("progress", 0)).await?;
        let Some(m) = member(&view, id) else {
            return Err(Error::FailedPrecondition(format!(
                "node {id} is no longer a member (removed meanwhile?)"
            )));
        };
        let behind = m
            .matched_index
            .map(|i| view.leader_last_log_index.saturating_sub(i));
        if last_said != Some(behind) {
            match behind {
                Some(n) => eprintln!(
                    "node {id}: {} of {} entries, {n} behind",
                    view.leader_last_log_index - n,
                    view.leader_last_log_index
                ),
                None => eprintln!("node {id}: not reached yet (is it running with --join?)"),
            }
            last_said = Some(behind);
        }
        if behind.is_some_and(|n| n <= limits::PROMOTE_LAG_MAX) {
            match client.change_membership(request("promote", id)).await {
                Ok(reply) => return Ok(reply),
                Err(Error::FailedPrecondition(m)) if Instant::now() < deadline => {
                    eprintln!("promotion refused, retrying: {m}");
                }
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Unavailable {
                message: format!(
                    "node {id} did not catch up in time; it stays a learner (raftline cluster \
                     promote --id {id} later, or cluster remove --id {id})"
                ),
                leader: None,
            });
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// Runs `raftline cluster remove|promote|demote|transfer-leader` (`action` as the API names it).
pub async fn change(addr: &[String], action: &str, id: u64, json: bool) -> Result<()> {
    let client = client(addr)?;
    let reply = client.change_membership(request(action, id)).await?;
    match action {
        "remove" => eprintln!("node {id} removed; it may be stopped now"),
        "transfer_leader" => eprintln!("node {} leads", reply.leader),
        _ => eprintln!("node {id}: done"),
    }
    print_members(&reply, action, id, json);
    Ok(())
}
