//! `raftline submit`, `raftline job get|cancel|retry` and `raftline jobs list`: one job at a
//! time, or a list of them by id. A list longer than one server page is read page by page
//! (see [`super::page`]), never cut short silently.

use clap::Subcommand;

use super::color;
use super::connect::client;
use super::parse::{invalid, nonzero, parse_duration, parse_env, parse_time};
use super::table::{self, Table};
use super::view;
use crate::client::Client;
use crate::error::Result;
use crate::machine::limits::{self, MAX_ATTEMPTS_MAX, PRIORITY_MAX, PRIORITY_MIN};
use crate::proto::pb;

/// `raftline submit` options.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Queue name, [A-Za-z0-9_.-]{1,128}.
    #[arg(long)]
    pub queue: String,
    /// Priority 1..=10, 10 most urgent (default 5).
    #[arg(long)]
    pub priority: Option<u32>,
    /// Start after this long (e.g. 30s, 5m, 1h, 250ms).
    #[arg(long, allow_hyphen_values = true)]
    pub delay: Option<String>,
    /// Start at this time: RFC 3339 (2026-12-01T08:00:00Z) or ms since the Unix epoch.
    #[arg(long)]
    pub run_at: Option<String>,
    /// Attempts before dead letters (default 3).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Kill an attempt after this long (e.g. 10m).
    #[arg(long, allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Lease ttl (default 30s).
    #[arg(long, allow_hyphen_values = true)]
    pub lease_ttl: Option<String>,
    /// A repeat within the window returns the first job's id.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// A tag (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Capabilities a worker must offer (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub requires: Vec<String>,
    /// Exit codes that go straight to dead letters (comma-separated).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub permanent_exit_codes: Vec<i32>,
    /// SLA: flag the job if unfinished this long after submit (e.g. 1h).
    #[arg(long, allow_hyphen_values = true)]
    pub deadline: Option<String>,
    /// Environment variable K=V for the job (repeatable).
    #[arg(long)]
    pub env: Vec<String>,
    /// A resource the job needs while it runs, NAME or NAME:UNITS (repeatable).
    #[arg(long)]
    pub resource: Vec<String>,
    /// Working directory of the job.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Print `{"id": N, "duplicate": bool}`.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// New parameters for a retry or requeue.
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Job id.
    pub id: u64,
    /// New priority.
    #[arg(long)]
    pub priority: Option<u32>,
    /// New attempt budget.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Environment variable K=V to set (repeatable).
    #[arg(long)]
    pub env: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// New command and arguments.
    #[arg(last = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// `raftline job ...`
#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Show one job: state, attempts, output tails.
    Get {
        /// Job id.
        id: u64,
        /// Read this node's local state without a Raft round (may be behind).
        #[arg(long)]
        stale: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job; a running one is killed.
    Cancel {
        /// Job id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a scheduled, dead or cancelled job again now, optionally with new parameters.
    Retry(RetryArgs),
    /// Wait until a job ends, then show it as `get` does; exit 0 when it succeeded, 1 when it
    /// ended dead or cancelled or the timeout passed first.
    Wait {
        /// Job id.
        id: u64,
        /// Give up after this long (e.g. 30s, 1h30m; at most 24h).
        #[arg(long, default_value = "10m")]
        timeout: String,
        /// Print JSON (the job, as `get --json`).
        #[arg(long)]
        json: bool,
    },
    /// Each attempt's output: attempt number, node, worker, exit code, then its output tail.
    Logs {
        /// Job id.
        id: u64,
        /// Keep reading until the job ends, printing attempts and outputs as they appear.
        #[arg(long, short)]
        follow: bool,
        /// `--json`: one array of attempts; `--jsonl`: one attempt per line as it appears
        /// (with `--follow`, an attempt is printed when it starts and again when it ends).
        #[command(flatten)]
        format: view::ListFormat,
    },
}

/// Runs `raftline submit`.
pub async fn submit(addr: &[String], a: SubmitArgs) -> Result<()> {
    nonzero("priority", a.priority, PRIORITY_MIN, PRIORITY_MAX)?;
    nonzero("max_attempts", a.max_attempts, 1, MAX_ATTEMPTS_MAX)?;
    let now = crate::raft::wall_clock_ms();
    let deadline_ms = match &a.deadline {
        Some(d) => Some(now.saturating_add(parse_duration("deadline", d)?)),
        None => None,
    };
    let timeout_ms = a
        .timeout
        .as_deref()
        .map(|t| parse_duration("timeout", t))
        .transpose()?;
    if timeout_ms == Some(0) {
        return Err(invalid("timeout", "must be more than 0".into()));
    }
    let req = pb::SubmitRequest {
        queue: a.queue,
        priority: a.priority.unwrap_or(0),
        kind: Some(pb::submit_request::Kind::Shell(pb::ShellCommand {
            argv: a.argv,
            env: parse_env("env", &a.env)?,
            cwd: a.cwd.unwrap_or_default(),
        })),
        delay_ms: a
            .delay
            .as_deref()
            .map(|d| parse_duration("delay", d))
            .transpose()?
            .unwrap_or(0),
        run_at_ms: a
            .run_at
            .as_deref()
            .map(|t| parse_time("run_at", t))
            .transpose()?,
        max_attempts: a.max_attempts.unwrap_or(0),
        backoff: None,
        timeout_ms,
        lease_ttl_ms: a
            .lease_ttl
            .as_deref()
            .map(|t| parse_duration("lease_ttl", t))
            .transpose()?
            .unwrap_or(0),
        idempotency_key: a.idempotency_key.unwrap_or_default(),
        tags: a.tag,
        required_capabilities: a.requires,
        permanent_exit_codes: a.permanent_exit_codes,
        deadline_ms,
        resources: a.resource,
        dead: None,
    };
    if a.lease_ttl.is_some() && req.lease_ttl_ms < limits::LEASE_TTL_MS_MIN {
        return Err(invalid(
            "lease_ttl",
            format!("must be at least {} ms", limits::LEASE_TTL_MS_MIN),
        ));
    }
    let client = client(addr)?;
    let reply = client.submit_full(req).await?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "id": reply.id, "duplicate": reply.duplicate })
        );
    } else {
        println!("{}", reply.id);
    }
    Ok(())
}

/// The retry request of `job retry` and `dlq requeue`; a priority of 0 is refused.
pub fn retry_request(a: &RetryArgs) -> Result<pb::RetryJobRequest> {
    nonzero("priority", a.priority, PRIORITY_MIN, PRIORITY_MAX)?;
    Ok(pb::RetryJobRequest {
        id: a.id,
        argv: a.argv.clone(),
        env: parse_env("env", &a.env)?,
        priority: a.priority,
        max_attempts: a.max_attempts,
    })
}

/// Prints a job's new state after a cancel, retry or requeue.
pub fn print_state(id: u64, state: &str, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "id": id, "state": state }));
    } else {
        println!("job {id}: {}", color::state(state));
    }
}

/// Runs `raftline job ...`.
pub async fn job(addr: &[String], command: JobCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        JobCmd::Get { id, stale, json } => {
            let job = client.job(id, stale).await?;
            if json {
                println!("{}", view::job_json(&job));
            } else {
                print_job(&job);
            }
        }
        JobCmd::Cancel { id, json } => print_state(id, &client.cancel(id).await?, json),
        JobCmd::Retry(a) => {
            let state = client.retry(retry_request(&a)?).await?;
            print_state(a.id, &state, a.json);
        }
        JobCmd::Wait { id, timeout, json } => {
            return super::watch::wait(&client, id, &timeout, json).await
        }
        JobCmd::Logs { id, follow, format } => {
            return super::watch::logs(&client, id, follow, format).await
        }
    }
    Ok(())
}

/// Prints a job for people: its state, command, attempts and the end of each one's output.
pub fn print_job(job: &pb::Job) {
    let what = match &job.kind {
        Some(pb::job::Kind::Shell(s)) => s.argv.join(" "),
        Some(pb::job::Kind::Payload(p)) => format!("external payload, {} bytes", p.len()),
        None => String::new(),
    };
    println!(
        "job {}  queue {}  priority {}  {}",
        job.id,
        job.queue,
        job.priority,
        color::state(&job.state)
    );
    println!("  run: {what}");
    println!("  created: {}", table::time(job.created_ms));
    if job.run_at_ms > job.created_ms && job.state == "scheduled" {
        println!("  runs at: {}", table::time(job.run_at_ms));
    }
    if let Some(at) = job.finished_ms {
        println!("  finished: {}", table::time(at));
    }
    if !job.submitted_by_token.is_empty() {
        println!(
            "  submitted by: {} (token {})",
            job.submitted_by_name, job.submitted_by_token
        );
    }
    println!(
        "  attempts: {} of {} used ({} in all)",
        job.attempts_used, job.max_attempts, job.attempts_total
    );
    if !job.error.is_empty() {
        println!("  error: {}", job.error);
    }
    for a in &job.attempts {
        let node = a.node.map_or(String::new(), |n| format!(" node {n}"));
        let exit = a.exit_code.map_or(String::new(), |c| format!(" exit {c}"));
        let class = if a.error_class.is_empty() {
            String::new()
        } else {
            format!(" ({})", a.error_class)
        };
        let took = a.ended_ms.map_or(String::new(), |end| {
            format!(" in {}", table::duration(end.saturating_sub(a.started_ms)))
        });
        println!(
            "  attempt {}: {}{class}{exit} by {}{node}{took}",
            a.number,
            color::state(&a.result),
            a.worker
        );
        for line in a
            .output_tail
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("    | {line}");
        }
    }
}

/// Prints jobs as they arrive, page by page: a table once all are in, or JSON as they come
/// (one array, or one object per line).
pub enum JobsOut {
    /// A table for people.
    Table(Box<Table>),
    /// JSON.
    Json(view::JsonList),
}

impl JobsOut {
    /// An output in `format` (a table when no JSON was asked for).
    pub fn new(format: view::ListFormat) -> JobsOut {
        if format.any_json() {
            JobsOut::Json(view::JsonList::new(format.jsonl))
        } else {
            JobsOut::Table(Box::new(Table::new(&[
                "ID", "QUEUE", "STATE", "PRIO", "ATTEMPTS", "CREATED", "COMMAND",
            ])))
        }
    }

    /// Takes one page of jobs.
    pub fn page(&mut self, jobs: &[pb::Job]) {
        for j in jobs {
            match self {
                JobsOut::Json(out) => out.item(&view::job_json(j)),
                JobsOut::Table(t) => {
                    let what = match &j.kind {
                        Some(pb::job::Kind::Shell(s)) => s.argv.join(" "),
                        _ => "(external)".into(),
                    };
                    let state = t.state(&j.state);
                    t.row(vec![
                        table::num(j.id),
                        table::text(&j.queue),
                        state,
                        table::num(j.priority),
                        table::text(format!("{}/{}", j.attempts_used, j.max_attempts)),
                        table::text(table::time(j.created_ms)),
                        table::text(what),
                    ]);
                }
            }
        }
    }

    /// Whether no job came yet.
    pub fn is_empty(&self) -> bool {
        match self {
            JobsOut::Table(t) => t.is_empty(),
            JobsOut::Json(out) => out.is_empty(),
        }
    }

    /// Ends the output: prints the table, or closes the JSON array.
    pub fn end(self) {
        match self {
            JobsOut::Table(t) => t.print(),
            JobsOut::Json(out) => out.end(),
        }
    }
}

/// Prints up to `req.limit` jobs matching `req` (100 when 0), following the server's cursor.
pub async fn list(
    client: &Client,
    req: pb::ListJobsRequest,
    format: view::ListFormat,
) -> Result<()> {
    let limit = if req.limit == 0 {
        100
    } else {
        u64::from(req.limit)
    };
    super::search::list(client, req, limit, format).await
}
