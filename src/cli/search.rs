//! `raftline jobs list|export`: jobs found by queue, state, tag, creation and finish times and
//! text in the command or error, read page by page following the server's cursor (a page may
//! come back short or empty with more to come: the server looks at a bounded number of jobs
//! per call).

use clap::Subcommand;

use super::connect::client;
use super::parse::{invalid, parse_duration};
use super::view;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::machine::limits::LIST_LIMIT_MAX;
use crate::proto::pb;

/// `raftline jobs ...`.
#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// List jobs by id: `jobs list --queue build --state dead --tag nightly --since 1h`.
    List {
        /// Which jobs.
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many (default 100), read page by page.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// `--json`: one array; `--jsonl`: one job per line.
        #[command(flatten)]
        format: view::ListFormat,
    },
    /// Retry, cancel or purge every job the filter keeps: one replicated command per 10,000
    /// jobs. `jobs bulk retry --queue build --state dead`, `jobs bulk cancel --tag nightly
    /// --state scheduled --dry-run`, `jobs bulk purge --queue build --finished-until 1d`.
    Bulk {
        /// retry, cancel or purge (finished jobs only).
        action: String,
        /// Which jobs.
        #[command(flatten)]
        filter: FilterArgs,
        /// Count what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write every job the filter keeps to stdout, as JSON lines (default), one JSON array
    /// (`--json`) or CSV.
    Export {
        /// Which jobs.
        #[command(flatten)]
        filter: FilterArgs,
        /// jsonl, json (one array) or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// At most this many (default: all).
        #[arg(long)]
        limit: Option<u64>,
        /// Print JSON: one array of every job.
        #[arg(long, conflicts_with_all = ["format", "jsonl"])]
        json: bool,
        /// Print JSON lines: the same as `--format jsonl` (one job per line).
        #[arg(long, conflicts_with = "format")]
        jsonl: bool,
    },
}

/// A job filter on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this state (scheduled, ready, leased, succeeded, dead, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    /// Only jobs carrying this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Created at or after: a time ago (`1h`, `30m`), an RFC 3339 time, or ms since the epoch.
    #[arg(long)]
    pub since: Option<String>,
    /// Created before (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Finished at or after (same forms); unfinished jobs are left out.
    #[arg(long)]
    pub finished_since: Option<String>,
    /// Finished before (same forms).
    #[arg(long)]
    pub finished_until: Option<String>,
    /// Text the command line or the error contains (ASCII case ignored).
    #[arg(long)]
    pub text: Option<String>,
    /// Only ids above this.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Read this node's local state.
    #[arg(long)]
    pub stale: bool,
}

impl FilterArgs {
    /// The request these flags make (the limit is set per page).
    pub fn request(&self) -> Result<pb::ListJobsRequest> {
        let now = crate::raft::wall_clock_ms();
        let when = |field: &str, v: &Option<String>| {
            v.as_deref().map_or(Ok(0), |t| parse_when(field, t, now))
        };
        Ok(pb::ListJobsRequest {
            queue: self.queue.clone().unwrap_or_default(),
            state: self.state.clone().unwrap_or_default(),
            tag: self.tag.clone().unwrap_or_default(),
            created_after_ms: when("since", &self.since)?,
            created_before_ms: when("until", &self.until)?,
            finished_after_ms: when("finished-since", &self.finished_since)?,
            finished_before_ms: when("finished-until", &self.finished_until)?,
            text: self.text.clone().unwrap_or_default(),
            after_id: self.after,
            limit: 0,
            stale: self.stale,
        })
    }
}

/// A point in time from a flag: a duration ago, an RFC 3339 time, or ms since the epoch.
pub fn parse_when(field: &str, text: &str, now_ms: u64) -> Result<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return u64::try_from(t.timestamp_millis())
            .map_err(|_| invalid(field, format!("{text:?} is before 1970")));
    }
    match parse_duration(field, text) {
        Ok(ago) => Ok(now_ms.saturating_sub(ago).max(1)),
        Err(_) => Err(invalid(
            field,
            format!(
                "{text:?} is not a time ago (1h, 30m), an RFC 3339 time \
                 (2026-12-01T08:00:00Z) or ms since the epoch"
            ),
        )),
    }
}

/// Reads jobs matching `req` from `req.after_id` on, up to `max` (all when `None`), handing
/// each page to `emit`, following the reply's cursor until the server has no more.
pub async fn follow(
    client: &Client,
    mut req: pb::ListJobsRequest,
    max: Option<u64>,
    mut emit: impl FnMut(&[pb::Job]) -> Result<()>,
) -> Result<()> {
    let mut left = max;
    loop {
        let page = left.map_or(LIST_LIMIT_MAX, |l| {
            u32::try_from(l.min(u64::from(LIST_LIMIT_MAX))).unwrap_or(LIST_LIMIT_MAX)
        });
        if page == 0 {
            return Ok(());
        }
        req.limit = page;
        let reply = client.list_jobs_page(req.clone()).await?;
        emit(&reply.jobs)?;
        if let Some(l) = left.as_mut() {
            *l = l.saturating_sub(reply.jobs.len() as u64);
        }
        if reply.next_after_id == 0 {
            return Ok(());
        }
        if reply.next_after_id <= req.after_id {
            return Err(Error::Internal(format!(
                "a list page after id {} pointed back to id {}: the server ignored the cursor",
                req.after_id, reply.next_after_id
            )));
        }
        req.after_id = reply.next_after_id;
    }
}

/// Runs `raftline jobs ...`.
pub async fn jobs(addr: &[String], command: JobsCmd) -> Result<()> {
    match command {
        JobsCmd::List {
            filter,
            limit,
            format,
        } => {
            let client = client(addr)?;
            list(&client, filter.request()?, limit, format).await
        }
        JobsCmd::Export {
            filter,
            format,
            limit,
            json,
            jsonl,
        } => {
            let format = match (json, jsonl) {
                (true, _) => "json",
                (_, true) => "jsonl",
                _ => format.as_str(),
            };
            export(&client(addr)?, filter.request()?, format, limit).await
        }
        JobsCmd::Bulk {
            action,
            filter,
            dry_run,
            json,
        } => bulk(&client(addr)?, filter.request()?, &action, dry_run, json).await,
    }
}

/// Prints up to `limit` jobs matching `req`: a table, one JSON array or JSON lines. A call
/// failing after some jobs came still prints (and closes) what was read, then the error; one
/// failing before prints only the error.
pub async fn list(
    client: &Client,
    req: pb::ListJobsRequest,
    limit: u64,
    format: view::ListFormat,
) -> Result<()> {
    let mut out = super::jobs::JobsOut::new(format);
    let read = follow(client, req, Some(limit), |page| {
        out.page(page);
        Ok(())
    })
    .await;
    if read.is_ok() || !out.is_empty() {
        out.end();
    }
    read
}

/// Runs a bulk action over every job `filter` keeps, call after call while the server says
/// more match; prints the totals.
pub async fn bulk(
    client: &Client,
    filter: pb::ListJobsRequest,
    action: &str,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let (mut matched, mut changed, mut skipped) = (0u64, 0u64, 0u64);
    let mut calls = 0u32;
    loop {
        let req = pb::BulkJobsRequest {
            filter: Some(filter.clone()),
            action: action.to_string(),
            dry_run,
        };
        let reply = client.bulk_jobs(req).await?;
        matched += reply.matched;
        changed += reply.changed;
        skipped += reply.skipped;
        calls += 1;
        // A dry run changes nothing, so a second call would count the same jobs again; a call
        // that changed nothing would find them again too.
        if !reply.more || dry_run || reply.changed == 0 || calls >= BULK_CALLS_MAX {
            break;
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"action": action, "dry_run": dry_run, "matched": matched,
                "changed": changed, "skipped": skipped})
        );
    } else {
        let verb = if dry_run { "would change" } else { "changed" };
        println!("{action}: {matched} matched, {changed} {verb}, {skipped} skipped");
    }
    Ok(())
}

/// Calls one `jobs bulk` makes (of up to 10,000 jobs each) before it stops.
const BULK_CALLS_MAX: u32 = 1_000;

/// The CSV columns of an export.
const CSV_COLUMNS: [&str; 12] = [
    "id",
    "queue",
    "state",
    "priority",
    "created_ms",
    "finished_ms",
    "attempts_used",
    "max_attempts",
    "tags",
    "command",
    "error",
    "idempotency_key",
];

async fn export(
    client: &Client,
    req: pb::ListJobsRequest,
    format: &str,
    limit: Option<u64>,
) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Internal(format!("stdout: {e}"));
    let stdout = std::io::stdout();
    match format {
        "jsonl" | "json" => {
            let array = format == "json";
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut first = true;
            let read = follow(client, req, limit, |page| {
                for j in page {
                    let open = match (array, std::mem::take(&mut first)) {
                        (true, true) => "[",
                        (true, false) => ",",
                        (false, _) => "",
                    };
                    writeln!(out, "{open}{}", view::job_json(j)).map_err(io)?;
                }
                Ok(())
            })
            .await;
            if array && (read.is_ok() || !first) {
                writeln!(out, "{}]", if first { "[" } else { "" }).map_err(io)?;
            }
            out.flush().map_err(io)?;
            read
        }
        "csv" => {
            let mut out = csv::Writer::from_writer(stdout.lock());
            let csv_err = |e: csv::Error| Error::Internal(format!("stdout: {e}"));
            out.write_record(CSV_COLUMNS).map_err(csv_err)?;
            follow(client, req, limit, |page| {
                for j in page {
                    out.write_record(csv_row(j)).map_err(csv_err)?;
                }
                Ok(())
            })
            .await?;
            out.flush().map_err(io)
        }
        other => Err(invalid(
            "format",
            format!("{other:?} is not jsonl, json or csv"),
        )),
    }
}

fn csv_row(j: &pb::Job) -> [String; 12] {
    let command = match &j.kind {
        Some(pb::job::Kind::Shell(s)) => s.argv.join(" "),
        _ => String::new(),
    };
    [
        j.id.to_string(),
        j.queue.clone(),
        j.state.clone(),
        j.priority.to_string(),
        j.created_ms.to_string(),
        j.finished_ms.map(|f| f.to_string()).unwrap_or_default(),
        j.attempts_used.to_string(),
        j.max_attempts.to_string(),
        j.tags.join(";"),
        command,
        j.error.clone(),
        j.idempotency_key.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_ago_rfc3339_or_ms() {
        let now = 10_000_000;
        assert_eq!(parse_when("since", "1h", 7_200_000).unwrap(), 3_600_000);
        assert_eq!(
            parse_when("since", "1700000000000", now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_when("since", "2026-12-01T08:00:00Z", now).unwrap(),
            1_796_112_000_000
        );
        let e = parse_when("until", "yesterday", now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("until"), "{e}");
    }
}
