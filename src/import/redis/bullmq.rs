//! The BullMQ 5 reader of `raftline import redis --from bullmq:QUEUE[@PREFIX]` (prefix
//! `bull` by default). It reads BullMQ's keys and changes nothing in Redis.
//!
//! Each job id found in a state key is read from its hash `PREFIX:QUEUE:ID` (`name`, `data`,
//! `opts`, `attemptsMade`) and becomes an external job whose payload is
//! `{"id": ID, "name": NAME, "data": DATA}` and whose idempotency key is
//! `bullmq:QUEUE:ID` (so `jobId`s carry over). Per state:
//!
//! - `wait` and `paused` (lists, oldest at the tail): ready jobs at priority 10, since BullMQ
//!   takes waiting jobs before prioritized ones.
//! - `prioritized` (a sorted set, lowest score first): BullMQ's priority `p` (1 most urgent,
//!   up to 2^21) maps onto 9..1 by its binary magnitude, `9 - min(8, floor(log2 p))`: 1 is 9,
//!   2-3 are 8, 4-7 are 7, ... 256 and above are 1. The mapping is monotonic and jobs are
//!   submitted in score order, so their order is kept (ties share a level, where raftline
//!   keeps submit order).
//! - `delayed` (a sorted set scored `run time * 4096 + counter`): scheduled jobs that keep
//!   their run time, at their mapped priority (10 without one).
//! - `failed`, `completed` and repeatable jobs (`repeat`): counted as skipped and left in
//!   Redis (dead letters and schedules cannot be created through `SubmitBatch`).
//!
//! Attempts: `opts.attempts` (BullMQ's default 1) less `attemptsMade`, at least 1, at most
//! `MAX_ATTEMPTS_MAX`. Backoff: `opts.backoff` (`{type: fixed|exponential, delay}` or a
//! number) becomes factor 1 or 2 from `delay`, without jitter (BullMQ adds none). A hash
//! that is missing or whose `data` or `opts` is not JSON is skipped and counted, and named
//! on stderr.
//!
//! CAVEATS: lists and sorted sets are paged by index, so a queue whose workers run during
//! the import may shift under it (a re-run picks up what was missed; keys prevent doubles).

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

use super::{print_dry, redis_error, Progress};
use crate::error::{Error, Result};
use crate::import::sink::{Sink, Summary};
use crate::import::{Item, ItemOptions};
use crate::machine::limits;
use crate::proto::pb;

/// BullMQ's default key prefix.
pub const PREFIX_DEFAULT: &str = "bull";

/// The keys of a BullMQ queue any of which shows it exists.
const QUEUE_KEYS: [&str; 8] = [
    "meta",
    "id",
    "wait",
    "paused",
    "prioritized",
    "delayed",
    "failed",
    "completed",
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

/// The item for job `id` from its hash, or why it is skipped.
pub fn job_item(
    queue: &Queue,
    id: &str,
    hash: &HashMap<String, String>,
    run_at_ms: Option<u64>,
) -> std::result::Result<Item, &'static str> {
    if hash.is_empty() {
        return Err("bullmq job hash missing");
    }
    let garbage = "bullmq job hash with missing or garbage fields";
    let data: serde_json::Value = hash
        .get("data")
        .and_then(|d| serde_json::from_str(d).ok())
        .ok_or(garbage)?;
    let opts: serde_json::Value = match hash.get("opts") {
        Some(o) => serde_json::from_str(o).map_err(|_| garbage)?,
        None => serde_json::json!({}),
    };
    let number = |v: Option<&String>| v.map(|s| s.parse::<u64>().map_err(|_| garbage));
    let made = number(hash.get("attemptsMade").or(hash.get("atm")))
        .transpose()?
        .unwrap_or(0);
    let p = number(hash.get("priority")).transpose()?.unwrap_or(0);
    let attempts = opts["attempts"].as_u64().unwrap_or(1);
    let max_attempts = attempts
        .saturating_sub(made)
        .clamp(1, limits::MAX_ATTEMPTS_MAX as u64);
    let payload = serde_json::json!({
        "id": id,
        "name": hash.get("name").cloned().unwrap_or_default(),
        "data": data,
    });
    Ok(Item {
        key: format!("bullmq:{}:{id}", queue.name),
        payload: serde_json::to_vec(&payload).map_err(|_| garbage)?,
        tags: Vec::new(),
        options: ItemOptions {
            priority: priority(p),
            run_at_ms,
            max_attempts: max_attempts as u32,
            backoff: backoff(&opts["backoff"]),
        },
    })
}

/// raftline's backoff for BullMQ's `opts.backoff`.
fn backoff(v: &serde_json::Value) -> Option<pb::Backoff> {
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
        for set in ["prioritized", "delayed"] {
            self.sorted(con, set, sink, summary, &progress).await?;
        }
        for (suffix, cmd, reason) in [
            ("failed", "ZCARD", "failed in BullMQ (left in Redis)"),
            ("completed", "ZCARD", "completed in BullMQ (left in Redis)"),
            ("repeat", "ZCARD", "repeatable in BullMQ (not imported)"),
        ] {
            let key = self.queue.key(suffix);
            let n: u64 = redis::cmd(cmd)
                .arg(&key)
                .query_async(con)
                .await
                .map_err(|e| redis_error(&key, e))?;
            summary.read += n;
            *summary.skipped.entry(reason.into()).or_insert(0) += n;
        }
        progress.finish();
        Ok(())
    }

    /// Reads the hashes of `ids` (with run times) and submits them as one page.
    async fn page(
        &self,
        con: &mut MultiplexedConnection,
        ids: Vec<(String, Option<u64>)>,
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
        for ((id, run_at_ms), hash) in ids.into_iter().zip(hashes) {
            match job_item(self.queue, &id, &hash, run_at_ms) {
                Ok(item) => items.push(item),
                Err(reason) => {
                    eprintln!("skipped {}: {reason}", self.queue.key(&id));
                    summary.read += 1;
                    summary.skip(reason);
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
            let ids = ids.into_iter().map(|id| (id, None)).collect();
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
            let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(start)
                .arg(start + page - 1)
                .arg("WITHSCORES")
                .query_async(con)
                .await
                .map_err(|e| redis_error(&key, e))?;
            if members.is_empty() {
                return Ok(());
            }
            let count = members.len() as i64;
            let delayed = suffix == "delayed";
            let ids = members
                .into_iter()
                .map(|(id, score)| (id, delayed.then_some((score as u64) >> 12)))
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

    /// A hash becomes a payload with attempts and backoff; garbage is refused.
    #[test]
    fn job_item_reads_hash() {
        let q = Queue::parse("mail@b");
        assert_eq!(q.key("wait"), "b:mail:wait");
        let hash: HashMap<String, String> = [
            ("name", "send"),
            ("data", r#"{"to":"x"}"#),
            (
                "opts",
                r#"{"attempts":5,"backoff":{"type":"exponential","delay":1000}}"#,
            ),
            ("attemptsMade", "2"),
            ("priority", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let item = job_item(&q, "7", &hash, None).unwrap();
        assert_eq!(item.key, "bullmq:mail:7");
        assert_eq!(
            item.payload,
            br#"{"data":{"to":"x"},"id":"7","name":"send"}"#
        );
        assert_eq!((item.options.priority, item.options.max_attempts), (8, 3));
        assert_eq!(item.options.backoff.unwrap().factor, 2);
        let mut bad = hash.clone();
        bad.insert("data".into(), "{not json".into());
        assert!(job_item(&q, "7", &bad, None).is_err());
        assert!(job_item(&q, "7", &HashMap::new(), None).is_err());
    }
}
