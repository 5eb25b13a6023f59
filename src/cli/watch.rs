//! `raftline job wait ID` and `raftline job logs ID [--follow]`: one job followed until it
//! ends, by polling it with linearizable reads (a read through the leader, so a job seen
//! terminal stays terminal and no poll goes back in time).
//!
//! Polls are [`POLL`] apart. `wait` has a deadline (`--timeout`, at most [`WAIT_MS_MAX`]);
//! while it lasts, a poll that finds the cluster unavailable (an election, a node restarting)
//! is tried again rather than ending the wait. `logs --follow` has none: like `tail -f`, it
//! runs until the job ends or the user stops it.
//!
//! An attempt's output tail is recorded when the attempt ends (the worker reports it with
//! the result), so `logs` shows a running attempt's header and its output once it ended.
//!
//! CAVEATS (not implemented): the server keeps the last `ATTEMPTS_KEPT_MAX` attempts and the
//! last `OUTPUT_TAIL_BYTES_MAX` of each one's output, so older attempts and earlier output are
//! not shown; there is no server push, so a follow sees changes up to one poll late.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::color;
use super::parse::{invalid, parse_duration};
use super::table;
use super::view::{self, JsonList, ListFormat};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::proto::pb;

/// Time between two reads of the job.
const POLL: Duration = Duration::from_millis(250);
/// The longest `--timeout` of `job wait` (24 h): a wait is a foreground command, not a
/// scheduler.
const WAIT_MS_MAX: u64 = 24 * 3_600_000;

/// Whether a job's state is final (it runs no more unless retried).
pub fn terminal(state: &str) -> bool {
    matches!(state, "succeeded" | "dead" | "cancelled")
}

/// Runs `job wait`: reads job `id` until it is terminal or `timeout` passed; prints it as
/// `job get` does; an error (exit 1) unless it succeeded.
pub async fn wait(client: &Client, id: u64, timeout: &str, json: bool) -> Result<()> {
    let timeout_ms = parse_duration("timeout", timeout)?;
    if timeout_ms == 0 || timeout_ms > WAIT_MS_MAX {
        return Err(invalid(
            "timeout",
            format!("{timeout:?} must be more than 0 and at most 24h"),
        ));
    }
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let job = loop {
        match client.job(id, false).await {
            Ok(job) if terminal(&job.state) => break job,
            Ok(job) if Instant::now() >= deadline => {
                return Err(Error::Internal(format!(
                    "timed out: job {id} is still {} after {timeout}; stopped waiting (the job \
                     goes on)",
                    job.state
                )))
            }
            Err(Error::Unavailable { message, .. }) if Instant::now() >= deadline => {
                return Err(Error::unavailable(format!(
                    "job {id}: no answer within {timeout}: {message}"
                )))
            }
            Ok(_) | Err(Error::Unavailable { .. }) => {}
            Err(e) => return Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(POLL.min(left)).await;
    };
    if json {
        println!("{}", view::job_json(&job));
    } else {
        super::jobs::print_job(&job);
    }
    match job.state.as_str() {
        "succeeded" => Ok(()),
        state => Err(Error::FailedPrecondition(format!("job {id} ended {state}"))),
    }
}

/// What `logs` has printed of one attempt, keyed by its number and start.
#[derive(Default)]
struct Shown {
    started: BTreeSet<(u32, u64)>,
    ended: BTreeSet<(u32, u64)>,
}

impl Shown {
    /// Prints what is new in `job`'s attempts: a header for an attempt not seen yet, and the
    /// result and output of one that ended since the last call.
    fn print_new(&mut self, job: &pb::Job, mut json: Option<&mut JsonList>) {
        for a in &job.attempts {
            let key = (a.number, a.started_ms);
            let ended = a.result != "running";
            let new = if ended && self.ended.insert(key) {
                self.started.insert(key);
                true
            } else {
                !ended && self.started.insert(key)
            };
            if new {
                match json.as_deref_mut() {
                    Some(out) => out.item(&attempt_json(job.id, a)),
                    None => print_attempt(job.id, a),
                }
            }
        }
    }
}

/// One attempt as JSON for `job logs --json`/`--jsonl`.
fn attempt_json(job_id: u64, a: &pb::Attempt) -> serde_json::Value {
    serde_json::json!({
            "job_id": job_id,
            "attempt": a.number,
            "node": a.node,
            "worker": a.worker,
            "result": a.result,
            "error_class": (!a.error_class.is_empty()).then_some(&a.error_class),
            "exit_code": a.exit_code,
            "error": (!a.error.is_empty()).then_some(&a.error),
            "started_ms": a.started_ms,
            "ended_ms": a.ended_ms,
            "output": a.output_tail,
    })
}

/// Prints one attempt for people: a header line and (once ended) its output.
fn print_attempt(job_id: u64, a: &pb::Attempt) {
    let node = a.node.map_or_else(|| "-".to_string(), |n| n.to_string());
    let exit = a
        .exit_code
        .map_or_else(|| "-".to_string(), |c| c.to_string());
    let class = if a.error_class.is_empty() {
        String::new()
    } else {
        format!(" ({})", a.error_class)
    };
    let took = a.ended_ms.map_or(String::new(), |end| {
        format!("  in {}", table::duration(end.saturating_sub(a.started_ms)))
    });
    println!(
        "== job {job_id} attempt {}  node {node}  worker {}  exit {exit}  {}{class}{took}",
        a.number,
        a.worker,
        color::state(&a.result)
    );
    if !a.error.is_empty() {
        println!("error: {}", a.error);
    }
    if !a.output_tail.is_empty() {
        print!("{}", a.output_tail);
        if !a.output_tail.ends_with('\n') {
            println!();
        }
    }
}

/// Runs `job logs`: prints each attempt of job `id` with its output; with `follow`, reads
/// the job again until it is terminal, printing attempts and outputs as they appear.
pub async fn logs(client: &Client, id: u64, follow: bool, format: ListFormat) -> Result<()> {
    let json = format.any_json();
    let mut out = json.then(|| JsonList::new(format.jsonl));
    let read = follow_logs(client, id, follow, out.as_mut()).await;
    if let Some(out) = out.filter(|out| read.is_ok() || !out.is_empty()) {
        out.end();
    }
    read
}

/// The loop of [`logs`]: JSON items go to `json` when given.
async fn follow_logs(
    client: &Client,
    id: u64,
    follow: bool,
    mut json: Option<&mut JsonList>,
) -> Result<()> {
    let mut shown = Shown::default();
    loop {
        let job = match client.job(id, false).await {
            Ok(job) => job,
            // A follow outlives elections: try again next poll.
            Err(Error::Unavailable { .. }) if follow => {
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        shown.print_new(&job, json.as_deref_mut());
        if !follow || terminal(&job.state) {
            if job.attempts.is_empty() && json.is_none() {
                eprintln!("job {id} is {} with no attempts", job.state);
            } else if follow && json.is_none() {
                println!("== job {id} {}", color::state(&job.state));
            }
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attempt is printed once when first seen running and once more when it ends; one
    /// first seen ended is printed once.
    #[test]
    fn logs_print_each_change_once() {
        let running = pb::Attempt {
            number: 1,
            started_ms: 10,
            result: "running".into(),
            ..Default::default()
        };
        let ended = pb::Attempt {
            result: "failed".into(),
            ..running.clone()
        };
        let second = pb::Attempt {
            number: 2,
            started_ms: 20,
            result: "succeeded".into(),
            ..Default::default()
        };
        let mut shown = Shown::default();
        let mut job = pb::Job {
            attempts: vec![running],
            ..Default::default()
        };
        shown.print_new(&job, Some(&mut JsonList::new(true)));
        assert_eq!(shown.started.len(), 1);
        assert!(shown.ended.is_empty());
        shown.print_new(&job, Some(&mut JsonList::new(true)));
        job.attempts = vec![ended, second];
        shown.print_new(&job, Some(&mut JsonList::new(true)));
        assert_eq!(shown.ended.len(), 2);
        assert_eq!(shown.started.len(), 2);
        assert!(terminal("dead") && !terminal("leased"));
    }
}
