//! The BullMQ 5 reader of `raftline import redis --from bullmq:QUEUE[@PREFIX]` (prefix
//! `bull` by default). It reads BullMQ's keys and changes nothing in Redis. The layout is
//! the one the `bullmq` npm client (5.x, pinned in `tests/fixtures/bullmq/package.json`)
//! writes from its Lua scripts, and the test fills Redis with that client.
//!
//! Each job id found in a state key is read from its hash `PREFIX:QUEUE:ID` (`name`, `data`,
//! `opts`, `attemptsMade` or `atm`, `priority`; for failed jobs `failedReason`, `stacktrace`,
//! `finishedOn`) and becomes an external job whose payload is
//! `{"id": ID, "name": NAME, "data": DATA}` and whose idempotency key is
//! `bullmq:QUEUE:ID` (so `jobId`s carry over). Per state:
//!
//! - `wait` and `paused` (lists, oldest at the tail): ready jobs at priority 10, since BullMQ
//!   takes waiting jobs before prioritized ones.
//! - `prioritized` (a sorted set, lowest score first): BullMQ's priority `p` (1 most urgent,
//!   up to 2^21) maps onto 9..1 by its binary magnitude, `9 - min(8, floor(log2 p))`: 1 is 9,
//!   2-3 are 8, 4-7 are 7, ... 256 and above are 1. The mapping is monotonic and jobs are
//!   submitted in score order, so their order is kept (ties share a level, where raftline
//!   keeps submit order, as BullMQ keeps insertion order within a priority).
//! - `delayed` (a sorted set scored `run time * 4096 + counter`): scheduled jobs that keep
//!   their run time, at their mapped priority (10 without one).
//! - `failed` (a sorted set by failure time): dead letters (`SubmitRequest.dead`): created
//!   dead with `failedReason` as their error (its last `ERROR_BYTES_MAX` bytes), the last
//!   entry of `stacktrace` as their last attempt's output (its last `OUTPUT_TAIL_BYTES_MAX`
//!   bytes), `attemptsMade` as attempts used, `finishedOn` as the failure time, and
//!   `opts.attempts` as their budget once `dlq requeue` runs them again.
//! - `completed`: counted as skipped and left in Redis (history, nothing to run).
//! - Repeatables (`repeat`, a sorted set of keys scored by their next run, each with a hash
//!   `PREFIX:QUEUE:repeat:KEY`: `name`, `pattern` or `every`, `tz`, `startDate`, `endDate`,
//!   `limit`, and for 5.x job schedulers `data` and `opts`; a legacy `repeat` option's data is
//!   in its next run's job hash `PREFIX:QUEUE:repeat:KEY:NEXT`) become raftline schedules:
//!   see [`repeat`]. The next runs BullMQ already queued for them (job hashes with `rjk`, ids
//!   `repeat:KEY:NEXT`) are skipped, so a run is neither lost nor doubled; a failed run is a
//!   dead letter like any failed job.
//!
//! Attempts: `opts.attempts` (BullMQ's default 1) less `attemptsMade`, at least 1, at most
//! `MAX_ATTEMPTS_MAX`. Backoff: `opts.backoff` (`{type: fixed|exponential, delay}` or a
//! number) becomes factor 1 or 2 from `delay`, without jitter (BullMQ adds none). A hash
//! that is missing, or whose `data`, `opts`, counters or (failed) `failedReason` are missing
//! or garbage, is skipped and counted under a reason naming the field, and its key is named
//! on stderr; nothing of it is written.
//!
//! CAVEATS: lists and sorted sets are paged by index, so a queue whose workers run during
//! the import may shift under it (a re-run picks up what was missed; keys prevent doubles).
//! A paused BullMQ queue does not pause the raftline queue. Flows (parent/child jobs,
//! `waiting-children`) and `active` jobs are not read. The error class of an imported
//! failure is `transient` (BullMQ does not record whether it was an `UnrecoverableError`).

pub mod repeat;

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

use super::{print_dry, redis_error, Progress};
use crate::error::{Error, Result};
use crate::import::sink::{Sink, Summary};
use crate::import::{Item, ItemOptions};
use crate::machine::job::tail;
use crate::machine::limits;
use crate::proto::pb;

/// BullMQ's default key prefix.
pub const PREFIX_DEFAULT: &str = "bull";

/// What an imported failure shows as its last attempt's worker.
const SOURCE: &str = "bullmq";

/// The keys of a BullMQ queue any of which shows it exists.
const QUEUE_KEYS: [&str; 9] = [
    "meta",
    "id",
    "wait",
    "paused",
    "prioritized",
    "delayed",
    "failed",
    "completed",
    "repeat",
];

/// A BullMQ queue: its name and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The queue's name.
    pub name: String,
    /// The key prefix (`bull`).
    pub prefix: String,
}

impl Queue {
    /// `QUEUE[@PREFIX]`.
    pub fn parse(rest: &str) -> Queue {
        match rest.split_once('@') {
            Some((name, prefix)) => Queue {
                name: name.into(),
                prefix: prefix.into(),
            },
            None => Queue {
                name: rest.into(),
                prefix: PREFIX_DEFAULT.into(),
            },
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{}:{suffix}", self.prefix, self.name)
    }

    /// Checks that the queue exists: one of its keys does.
    pub async fn check(&self, con: &mut MultiplexedConnection) -> Result<()> {
        let keys: Vec<String> = QUEUE_KEYS.iter().map(|k| self.key(k)).collect();
        let found: u64 = redis::cmd("EXISTS")
            .arg(&keys)
            .query_async(con)
            .await
            .map_err(|e| redis_error(&self.key("*"), e))?;
        if found == 0 {
            return Err(Error::InvalidArgument {
                field: "from".into(),
                message: format!(
                    "no BullMQ queue {:?} under prefix {:?}: none of {} exists",
                    self.name,
                    self.prefix,
                    keys.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// raftline's priority for BullMQ's `p` (see the module docs); 10 for none.
pub fn priority(p: u64) -> u32 {
    if p == 0 {
        return limits::PRIORITY_MAX;
    }
    9 - (63 - p.leading_zeros()).min(8)
}

/// Where a job id was found: how its hash becomes an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// `wait`, `paused` or `prioritized`: ready now.
    Ready,
    /// `delayed`: scheduled at this time (ms since the epoch).
    Delayed(u64),
    /// `failed`: a dead letter.
    Failed,
}

/// Why a hash is skipped: its field `field` is missing or garbage.
/// One page of a sorted set with scores: `page` members from rank `start`.
async fn zrange_page(
    con: &mut MultiplexedConnection,
    key: &str,
    start: i64,
    page: i64,
) -> Result<Vec<(String, f64)>> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(start)
        .arg(start + page - 1)
        .arg("WITHSCORES")
        .query_async(con)
        .await
        .map_err(|e| redis_error(key, e))
}

fn garbage(field: &str) -> String {
    format!("bullmq job hash with missing or garbage `{field}`")
}

/// A JSON field of a hash, or why not.
pub(crate) fn json_field(
    hash: &HashMap<String, String>,
    field: &str,
) -> std::result::Result<Option<serde_json::Value>, String> {
    hash.get(field)
        .map(|v| serde_json::from_str(v).map_err(|_| garbage(field)))
        .transpose()
}

/// A number field of a hash (the first of `fields` present), or why not.
fn number_field(
    hash: &HashMap<String, String>,
    fields: &[&str],
) -> std::result::Result<Option<u64>, String> {
    for field in fields {
        if let Some(v) = hash.get(*field) {
            return v.parse::<u64>().map(Some).map_err(|_| garbage(field));
        }
    }
    Ok(None)
}

/// The item for job `id` from its hash, or why it is skipped.
pub fn job_item(
    queue: &Queue,
    id: &str,
    hash: &HashMap<String, String>,
    found: Found,
) -> std::result::Result<Item, String> {
    if hash.is_empty() {
        return Err("bullmq job hash missing".into());
    }
    // A repeatable's queued next run is its schedule's to start; a failed run is history.
    let next_run = hash.contains_key("rjk") || id.starts_with("repeat:");
    if next_run && found != Found::Failed {
        return Err("next run of a bullmq repeatable (imported as its schedule)".into());
    }
    let data = json_field(hash, "data")?.ok_or_else(|| garbage("data"))?;
    let opts = json_field(hash, "opts")?.unwrap_or_else(|| serde_json::json!({}));
    let made = number_field(hash, &["attemptsMade", "atm"])?.unwrap_or(0);
    let p = number_field(hash, &["priority"])?.unwrap_or(0);
    let attempts = opts["attempts"].as_u64().filter(|a| *a > 0).unwrap_or(1);
    let (max_attempts, dead) = match found {
        Found::Failed => (attempts, Some(dead_letter(hash, made)?)),
        Found::Ready | Found::Delayed(_) => (attempts.saturating_sub(made), None),
    };
    let payload = serde_json::json!({
        "id": id,
        "name": hash.get("name").cloned().unwrap_or_default(),
        "data": data,
    });
    Ok(Item {
        key: format!("bullmq:{}:{id}", queue.name),
        payload: serde_json::to_vec(&payload).map_err(|_| garbage("data"))?,
        tags: Vec::new(),
        options: ItemOptions {
            priority: priority(p),
            run_at_ms: match found {
                Found::Delayed(at) => Some(at),
                _ => None,
            },
            max_attempts: max_attempts.clamp(1, limits::MAX_ATTEMPTS_MAX as u64) as u32,
            backoff: backoff(&opts["backoff"]),
            dead,
        },
    })
}

/// The dead letter of a failed job's hash: its reason, the last stack trace, attempts made
/// and failure time, each within raftline's bounds.
fn dead_letter(
    hash: &HashMap<String, String>,
    made: u64,
) -> std::result::Result<pb::DeadLetter, String> {
    let reason = hash
        .get("failedReason")
        .ok_or_else(|| garbage("failedReason"))?;
    let trace = match json_field(hash, "stacktrace")? {
        Some(serde_json::Value::Array(traces)) => match traces.last() {
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(_) => return Err(garbage("stacktrace")),
            None => String::new(),
        },
        Some(serde_json::Value::Null) | None => String::new(),
        Some(_) => return Err(garbage("stacktrace")),
    };
    Ok(pb::DeadLetter {
        error: tail(reason, limits::ERROR_BYTES_MAX),
        attempts_made: made.min(limits::MAX_ATTEMPTS_MAX as u64) as u32,
        output_tail: tail(&trace, limits::OUTPUT_TAIL_BYTES_MAX),
        failed_at_ms: number_field(hash, &["finishedOn"])?,
        source: SOURCE.into(),
    })
}

/// raftline's backoff for BullMQ's `opts.backoff`.
pub(crate) fn backoff(v: &serde_json::Value) -> Option<pb::Backoff> {
    let (factor, delay) = match v {
        serde_json::Value::Number(n) => (1, n.as_u64()?),
        serde_json::Value::Object(o) => {
            let factor = if o.get("type")?.as_str()? == "exponential" {
                2
            } else {
                1
            };
            (factor, o.get("delay")?.as_u64()?)
        }
        _ => return None,
    };
    let base_ms = delay.clamp(1, limits::BACKOFF_MS_MAX);
    Some(pb::Backoff {
        base_ms,
        factor,
        cap_ms: limits::BACKOFF_MS_MAX,
        no_jitter: true,
    })
}

/// Reads one BullMQ queue into a sink.
pub struct BullReader<'a> {
    /// The queue.
    pub queue: &'a Queue,
    /// `--json`.
    pub json: bool,
}

impl BullReader<'_> {
    /// Imports the queue as the module docs say.
    pub async fn import(
        &self,
        con: &mut MultiplexedConnection,
        sink: &Sink<'_>,
        summary: &mut Summary,
    ) -> Result<()> {
        let progress = Progress::new(0, self.json);
        for list in ["wait", "paused"] {
            self.list(con, list, sink, summary, &progress).await?;
        }
        for set in ["prioritized", "delayed", "failed"] {
            self.sorted(con, set, sink, summary, &progress).await?;
        }
        let key = self.queue.key("completed");
        let n: u64 = redis::cmd("ZCARD")
            .arg(&key)
            .query_async(con)
            .await
            .map_err(|e| redis_error(&key, e))?;
        summary.read += n;
        *summary
            .skipped
            .entry("completed in BullMQ (left in Redis)".into())
            .or_insert(0) += n;
        repeat::Repeatables {
            queue: self.queue,
            json: self.json,
        }
        .import(con, sink, summary)
        .await?;
        progress.finish();
        Ok(())
    }

    /// Reads the hashes of `ids` (where they were found) and submits them as one page.
    async fn page(
        &self,
        con: &mut MultiplexedConnection,
        ids: Vec<(String, Found)>,
        sink: &Sink<'_>,
        summary: &mut Summary,
    ) -> Result<()> {
        let mut pipe = redis::pipe();
        for (id, _) in &ids {
            pipe.cmd("HGETALL").arg(self.queue.key(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe
            .query_async(con)
            .await
            .map_err(|e| redis_error(&self.queue.key("*"), e))?;
        let mut items = Vec::with_capacity(ids.len());
        for ((id, found), hash) in ids.into_iter().zip(hashes) {
            match job_item(self.queue, &id, &hash, found) {
                Ok(item) => items.push(item),
                Err(reason) => {
                    eprintln!("skipped {}: {reason}", self.queue.key(&id));
                    summary.read += 1;
                    summary.skip(&reason);
                }
            }
        }
        if sink.dry_run {
            print_dry(&items, self.json);
        }
        sink.submit(&items, summary).await?;
        Ok(())
    }

    /// A list of job ids, oldest (the tail) first, in pages.
    async fn list(
        &self,
        con: &mut MultiplexedConnection,
        suffix: &str,
        sink: &Sink<'_>,
        summary: &mut Summary,
        progress: &Progress,
    ) -> Result<()> {
        let key = self.queue.key(suffix);
        let page = sink.batch as i64;
        let mut from_tail: i64 = 0;
        loop {
            let mut ids: Vec<String> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(-(from_tail + page))
                .arg(-(from_tail + 1))
                .query_async(con)
                .await
                .map_err(|e| redis_error(&key, e))?;
            if ids.is_empty() {
                return Ok(());
            }
            ids.reverse();
            let count = ids.len() as i64;
            let ids = ids.into_iter().map(|id| (id, Found::Ready)).collect();
            self.page(con, ids, sink, summary).await?;
            progress.show(summary.read);
            from_tail += count;
            if count < page {
                return Ok(());
            }
        }
    }

    /// A sorted set of job ids, lowest score first, in pages; `delayed` scores carry run times.
    async fn sorted(
        &self,
        con: &mut MultiplexedConnection,
        suffix: &str,
        sink: &Sink<'_>,
        summary: &mut Summary,
        progress: &Progress,
    ) -> Result<()> {
        let key = self.queue.key(suffix);
        let page = sink.batch as i64;
        let mut start: i64 = 0;
        loop {
            let members = zrange_page(con, &key, start, page).await?;
            if members.is_empty() {
                return Ok(());
            }
            let count = members.len() as i64;
            let ids = members
                .into_iter()
                .map(|(id, score)| {
                    let found = match suffix {
                        "delayed" => Found::Delayed((score as u64) >> 12),
                        "failed" => Found::Failed,
                        _ => Found::Ready,
                    };
                    (id, found)
                })
                .collect();
            self.page(con, ids, sink, summary).await?;
            progress.show(summary.read);
            start += count;
            if count < page {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job hash from field pairs (also for `repeat`'s tests).
    pub(super) fn hash(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// BullMQ priorities map monotonically onto 9..1; none is 10.
    #[test]
    fn priority_keeps_order() {
        assert_eq!(priority(0), 10);
        assert_eq!(priority(1), 9);
        assert_eq!((priority(2), priority(3), priority(4)), (8, 8, 7));
        assert_eq!(priority(255), 2);
        assert_eq!(priority(256), 1);
        assert_eq!(priority(1 << 21), 1);
        let mut last = 10;
        for p in 1..5000 {
            assert!(priority(p) <= last && priority(p) >= 1);
            last = priority(p);
        }
    }

    /// A hash becomes a payload with attempts and backoff; garbage is refused, naming the
    /// field; a repeatable's next run is left to its schedule.
    #[test]
    fn job_item_reads_hash() {
        let q = Queue::parse("mail@b");
        assert_eq!(q.key("wait"), "b:mail:wait");
        let h = hash(&[
            ("name", "send"),
            ("data", r#"{"to":"x"}"#),
            (
                "opts",
                r#"{"attempts":5,"backoff":{"type":"exponential","delay":1000}}"#,
            ),
            ("attemptsMade", "2"),
            ("priority", "3"),
        ]);
        let item = job_item(&q, "7", &h, Found::Ready).unwrap();
        assert_eq!(item.key, "bullmq:mail:7");
        assert_eq!(
            item.payload,
            br#"{"data":{"to":"x"},"id":"7","name":"send"}"#
        );
        assert_eq!((item.options.priority, item.options.max_attempts), (8, 3));
        assert_eq!(item.options.backoff.unwrap().factor, 2);
        assert_eq!(item.options.dead, None);
        for (field, value) in [("data", "{not json"), ("opts", "[1"), ("atm", "x")] {
            let mut bad = h.clone();
            bad.remove("attemptsMade");
            bad.insert(field.into(), value.into());
            let why = job_item(&q, "7", &bad, Found::Ready).unwrap_err();
            assert!(why.contains(&format!("`{field}`")), "{why}");
        }
        assert!(job_item(&q, "7", &HashMap::new(), Found::Ready).is_err());
        let mut next_run = h.clone();
        next_run.insert("rjk".into(), "nightly".into());
        let why = job_item(&q, "repeat:nightly:1", &next_run, Found::Delayed(1)).unwrap_err();
        assert!(why.contains("repeatable"), "{why}");
        next_run.insert("failedReason".into(), "boom".into());
        let failed_run = job_item(&q, "repeat:nightly:1", &next_run, Found::Failed).unwrap();
        assert_eq!(failed_run.options.dead.unwrap().error, "boom");
    }

    /// A failed job's hash becomes a dead letter: its reason and last stack trace bounded,
    /// attempts made, failure time, and its whole budget for a requeue; no reason is garbage.
    #[test]
    fn failed_hash_is_a_dead_letter() {
        let q = Queue::parse("mail");
        let long = "x".repeat(limits::OUTPUT_TAIL_BYTES_MAX + 10);
        let traces = serde_json::to_string(&["Error: first", long.as_str()]).unwrap();
        let h = hash(&[
            ("name", "charge"),
            ("data", "{}"),
            (
                "opts",
                r#"{"attempts":2,"backoff":{"type":"fixed","delay":100}}"#,
            ),
            ("atm", "2"),
            ("failedReason", "card declined"),
            ("stacktrace", &traces),
            ("finishedOn", "1700000000123"),
        ]);
        let item = job_item(&q, "1", &h, Found::Failed).unwrap();
        let dead = item.options.dead.unwrap();
        assert_eq!(dead.error, "card declined");
        assert_eq!(dead.attempts_made, 2);
        assert_eq!(dead.output_tail.len(), limits::OUTPUT_TAIL_BYTES_MAX);
        assert_eq!(dead.failed_at_ms, Some(1_700_000_000_123));
        assert_eq!(dead.source, "bullmq");
        assert_eq!(item.options.max_attempts, 2);
        assert_eq!(item.options.run_at_ms, None);
        let mut no_reason = h.clone();
        no_reason.remove("failedReason");
        let why = job_item(&q, "1", &no_reason, Found::Failed).unwrap_err();
        assert!(why.contains("`failedReason`"), "{why}");
        let mut bad_trace = h;
        bad_trace.insert("stacktrace".into(), "{}".into());
        let why = job_item(&q, "1", &bad_trace, Found::Failed).unwrap_err();
        assert!(why.contains("`stacktrace`"), "{why}");
    }
}
