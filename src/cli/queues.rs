//! `raftline queue ...` (pause, resume, limits, counts) and `raftline dlq ...` (dead letters).

use clap::Subcommand;

use super::connect::client;
use super::jobs::{self, print_state, retry_request, RetryArgs};
use super::parse::{invalid, parse_duration};
use super::table::{self, Table};
use super::view;
use crate::error::{Error, Result};
use crate::proto::pb;

/// `raftline queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Stop leasing from a queue (running jobs finish).
    Pause {
        /// Queue.
        queue: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume leasing from a queue.
    Resume {
        /// Queue.
        queue: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A queue's state and counts.
    Get {
        /// Queue.
        queue: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every queue.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a queue's limits; flags not given keep their value, `off` removes one.
    Set {
        /// Queue.
        queue: String,
        /// Rate limit: N/s, N/min, N/h or N/d (e.g. 100/min), or off.
        #[arg(long)]
        rate: Option<String>,
        /// Most jobs of the queue leased at once, or off.
        #[arg(long)]
        concurrency: Option<String>,
        /// Circuit breaker THRESHOLD%/WINDOW/COOLDOWN (e.g. 50%/10/30s), or off.
        #[arg(long)]
        breaker: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// Dead jobs.
    List {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// At most this many (read page by page above the server's page size).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// `--json`: one array; `--jsonl`: one job per line.
        #[command(flatten)]
        format: view::ListFormat,
    },
    /// Run a dead job again with a fresh attempt budget, optionally with new parameters; with
    /// `--all`, every dead job (of `--queue`) as is, in calls of up to 10,000.
    Requeue(DlqRequeueArgs),
    /// Remove dead jobs.
    Purge {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline dlq requeue`: one job, or `--all`.
#[derive(Debug, clap::Args)]
pub struct DlqRequeueArgs {
    /// Job id (or --all).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<u64>,
    /// Every dead job (of --queue when given).
    #[arg(long)]
    pub all: bool,
    /// With --all: only this queue.
    #[arg(long, requires = "all")]
    pub queue: Option<String>,
    /// With --all: count, change nothing.
    #[arg(long, requires = "all")]
    pub dry_run: bool,
    /// New priority.
    #[arg(long, conflicts_with = "all")]
    pub priority: Option<u32>,
    /// New attempt budget.
    #[arg(long, conflicts_with = "all")]
    pub max_attempts: Option<u32>,
    /// Environment variable K=V to set (repeatable).
    #[arg(long, conflicts_with = "all")]
    pub env: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// New command and arguments.
    #[arg(last = true, value_name = "CMD", conflicts_with = "all")]
    pub argv: Vec<String>,
}

/// Parses `N/s`, `N/min`, `N/h`, `N/d` or `off` into (count, period ms).
fn parse_rate(text: &str) -> Result<(u32, u64)> {
    if text == "off" {
        return Ok((0, 0));
    }
    let bad = || {
        invalid(
            "rate",
            format!("{text:?} is not N/s, N/min, N/h or N/d (e.g. 100/min), or off"),
        )
    };
    let (count, per) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per_ms = match per.trim() {
        "s" | "sec" | "second" => 1_000,
        "m" | "min" | "minute" => 60_000,
        "h" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(invalid(
            "rate",
            "count is 0; use off to remove the limit".into(),
        ));
    }
    Ok((count, per_ms))
}

/// Parses `THRESHOLD%/WINDOW/COOLDOWN` (e.g. `50%/10/30s`) or `off`.
fn parse_breaker(text: &str) -> Result<(u32, u32, u64)> {
    if text == "off" {
        return Ok((0, 0, 0));
    }
    let bad = || {
        invalid(
            "breaker",
            format!("{text:?} is not THRESHOLD%/WINDOW/COOLDOWN (e.g. 50%/10/30s), or off"),
        )
    };
    let parts: Vec<&str> = text.split('/').collect();
    let [pct, window, cooldown] = parts.as_slice() else {
        return Err(bad());
    };
    let pct: u32 = pct
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| bad())?;
    let window: u32 = window.trim().parse().map_err(|_| bad())?;
    let cooldown = parse_duration("breaker", cooldown)?;
    if pct == 0 {
        return Err(invalid(
            "breaker",
            "threshold is 0%; use off to remove it".into(),
        ));
    }
    Ok((pct, window, cooldown))
}

fn print_queue(q: &pb::QueueInfo, json: bool) {
    if json {
        println!("{}", view::queue_json(q));
    } else {
        queue_table(std::slice::from_ref(q)).print();
    }
}

/// Queues as a table: state, counts by job state, then the limits that are set.
fn queue_table(queues: &[pb::QueueInfo]) -> Table {
    let mut t = Table::new(&[
        "QUEUE",
        "STATE",
        "SCHEDULED",
        "READY",
        "LEASED",
        "SUCCEEDED",
        "DEAD",
        "CANCELLED",
        "LATE",
        "LIMITS",
    ]);
    for q in queues {
        let mut limits = Vec::new();
        if q.rate_count > 0 {
            limits.push(format!(
                "rate {}/{}",
                q.rate_count,
                table::duration(q.rate_per_ms)
            ));
        }
        if q.concurrency > 0 {
            limits.push(format!("concurrency {}", q.concurrency));
        }
        if q.breaker_threshold_pct > 0 {
            limits.push(format!(
                "breaker {} ({}/{} failed, opens above {}%)",
                q.breaker_state, q.recent_failures, q.recent_outcomes, q.breaker_threshold_pct
            ));
        }
        let state = t.state(if q.paused { "paused" } else { "active" });
        t.row(vec![
            table::text(&q.queue),
            state,
            table::num(q.scheduled),
            table::num(q.ready),
            table::num(q.leased),
            table::num(q.succeeded),
            table::num(q.dead),
            table::num(q.cancelled),
            table::num(q.deadline_missed),
            table::text(limits.join(", ")),
        ]);
    }
    t
}

/// Runs `raftline queue ...`.
pub async fn queue(addr: &[String], command: QueueCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        QueueCmd::Pause { queue, json } => print_queue(&client.pause(&queue, true).await?, json),
        QueueCmd::Resume { queue, json } => print_queue(&client.pause(&queue, false).await?, json),
        QueueCmd::Get { queue, json } => print_queue(&client.queue(&queue, false).await?, json),
        QueueCmd::Set {
            queue,
            rate,
            concurrency,
            breaker,
            json,
        } => {
            let current = client.queue(&queue, false).await?;
            let mut req = pb::SetQueuePolicyRequest {
                queue: queue.clone(),
                rate_count: current.rate_count,
                rate_per_ms: current.rate_per_ms,
                concurrency: current.concurrency,
                breaker_threshold_pct: current.breaker_threshold_pct,
                breaker_window: current.breaker_window,
                breaker_cooldown_ms: current.breaker_cooldown_ms,
            };
            if let Some(rate) = rate {
                (req.rate_count, req.rate_per_ms) = parse_rate(&rate)?;
            }
            if let Some(c) = concurrency {
                req.concurrency = if c == "off" {
                    0
                } else {
                    c.parse().map_err(|_| {
                        invalid("concurrency", format!("{c:?} is not a number or off"))
                    })?
                };
                if req.concurrency == 0 && c != "off" {
                    return Err(invalid("concurrency", "is 0; use off to remove it".into()));
                }
            }
            if let Some(b) = breaker {
                (
                    req.breaker_threshold_pct,
                    req.breaker_window,
                    req.breaker_cooldown_ms,
                ) = parse_breaker(&b)?;
            }
            print_queue(&client.set_queue_policy(req).await?, json);
        }
        QueueCmd::List { json } => {
            let queues = client.queues(false).await?;
            if json {
                view::print_array(queues.iter().map(view::queue_json).collect());
            } else {
                queue_table(&queues).print();
            }
        }
    }
    Ok(())
}

/// Runs `raftline dlq ...`.
pub async fn dlq(addr: &[String], command: DlqCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        DlqCmd::List {
            queue,
            limit,
            format,
        } => {
            let req = pb::ListJobsRequest {
                queue: queue.unwrap_or_default(),
                state: "dead".into(),
                limit,
                ..Default::default()
            };
            jobs::list(&client, req, format).await?;
        }
        DlqCmd::Requeue(d) if d.all => {
            let filter = super::search::FilterArgs {
                queue: d.queue,
                state: Some("dead".into()),
                ..Default::default()
            };
            super::search::bulk(&client, filter.request()?, "retry", d.dry_run, d.json).await?;
        }
        DlqCmd::Requeue(d) => {
            let a = RetryArgs {
                id: d.id.unwrap_or_default(),
                priority: d.priority,
                max_attempts: d.max_attempts,
                env: d.env,
                json: d.json,
                argv: d.argv,
            };
            let job = client.job(a.id, false).await?;
            if job.state != "dead" {
                return Err(Error::FailedPrecondition(format!(
                    "job {} is {}, not in the dead-letter queue",
                    a.id, job.state
                )));
            }
            let state = client.retry(retry_request(&a)?).await?;
            print_state(a.id, &state, a.json);
        }
        DlqCmd::Purge { queue, json } => {
            let n = client.purge_dead(queue.as_deref()).await?;
            if json {
                println!("{}", serde_json::json!({ "purged": n }));
            } else {
                println!("purged {n} dead jobs");
            }
        }
    }
    Ok(())
}
