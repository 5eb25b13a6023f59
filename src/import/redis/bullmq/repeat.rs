//! BullMQ repeatables as raftline schedules.
//!
//! BullMQ 5 keeps a queue's repeatables in the sorted set `PREFIX:QUEUE:repeat` (member: the
//! repeat key, score: its next run in ms) with a hash `PREFIX:QUEUE:repeat:KEY` each. A job
//! scheduler (`upsertJobScheduler`, 5.16 and later; the key is the scheduler's id) stores
//! `name`, `pattern` or `every`, `tz`, `startDate`, `endDate`, `limit`, `offset`, `ic` and
//! its job template's `data` and `opts`; a legacy `queue.add(name, data, {repeat})` (the key
//! is an md5 of the options) stores `name`, `pattern` or `every`, `tz` and `endDate` only,
//! and its data and options are in its next run's job hash `PREFIX:QUEUE:repeat:KEY:NEXT`.
//!
//! Each becomes a schedule named `bullmq.QUEUE.KEY` (characters other than `A-Za-z0-9_.-`
//! made `_`, and a hash of the whole added, when the key has them or is too long) whose job
//! goes to the import's queue with the payload `{"name": NAME, "data": DATA, "repeat": KEY}`
//! and the template's priority, attempts and backoff mapped as for a job (see the parent
//! module):
//!
//! - `pattern` + `tz` (UTC when unset) -> the same cron in the same zone. BullMQ parses it
//!   with cron-parser 4, raftline with croner: 5 or 6 fields (seconds first) read the same,
//!   as do `L`, `nL`, `n#k`, `?`, 7 for Sunday, names and steps (a test holds croner to
//!   that); cron-parser's `@yearly`, `@monthly`, `@weekly`, `@daily` and `@hourly` are
//!   written out as their 5 fields. Whatever else croner refuses (each pattern is checked
//!   with the cluster's own rules before anything is written) is skipped, the reason on
//!   stderr; so is a zone chrono-tz does not know.
//! - `every` ms -> `@every Nms` starting at the repeatable's next run, so the ticks stay on
//!   BullMQ's (multiples of `every`); under a second, raftline's shortest interval, skipped.
//! - `startDate`, `endDate` -> the schedule's start and end; a `limit` (a count of runs)
//!   has no raftline equivalent: skipped.
//! - Catch-up `latest` (BullMQ runs an overdue repeat once when workers come back), overlap
//!   `allow` (BullMQ does not wait for the previous run).
//!
//! A re-run is idempotent: a schedule of the same name with the same cron and zone counts as
//! already present; one of the same name with another spec is skipped, never replaced.
//! Schedules are counted in the summary with the jobs (read, created, already present).

use std::collections::{BTreeMap, HashMap};

use redis::aio::MultiplexedConnection;

use super::super::redis_error;
use super::{backoff, json_field, priority, zrange_page, Queue};
use crate::error::Result;
use crate::import::sink::{Sink, Summary};
use crate::machine::limits;
use crate::proto::{from_wire, pb};

/// cron-parser's named expressions, as croner's fields.
const NAMED: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// The summary's reason for a repeatable the cluster's rules refuse.
const REFUSED: &str = "bullmq repeatable raftline cannot schedule (cron or time zone)";

fn garbage(field: &str) -> String {
    format!("bullmq repeatable hash with missing or garbage `{field}`")
}

/// The schedule name for repeat key `key` of BullMQ queue `queue` (see the module doc).
pub fn schedule_name(queue: &str, key: &str) -> String {
    let raw = format!("bullmq.{queue}.{key}");
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if raw.len() <= limits::SCHEDULE_NAME_BYTES_MAX && raw.chars().all(allowed) {
        return raw;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(raw.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let clean: String = raw
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(limits::SCHEDULE_NAME_BYTES_MAX - hash.len() - 1)
        .collect();
    format!("{clean}.{hash}")
}

/// BullMQ's cron `pattern` as raftline's (named expressions written out).
pub fn cron_of(pattern: &str) -> String {
    let p = pattern.trim();
    NAMED
        .iter()
        .find(|(name, _)| p.eq_ignore_ascii_case(name))
        .map_or_else(|| p.to_string(), |(_, fields)| fields.to_string())
}

fn number(h: &HashMap<String, String>, field: &str) -> std::result::Result<Option<u64>, String> {
    h.get(field)
        .map(|v| {
            // cjson writes large numbers as floats (`1.7e+12`) in some Redis builds.
            v.parse::<u64>()
                .ok()
                .or_else(|| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|f| *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| garbage(field))
        })
        .transpose()
}

/// The schedule for repeat key `key` (next run `next_ms`) from its hash `h` and its next
/// run's job hash `next_run` (empty when there is none), whose jobs go to `target_queue`;
/// or why it is skipped. Pure: the caller checks it against the cluster's rules.
pub fn schedule_request(
    queue: &Queue,
    target_queue: &str,
    key: &str,
    next_ms: u64,
    h: &HashMap<String, String>,
    next_run: &HashMap<String, String>,
) -> std::result::Result<pb::CreateScheduleRequest, String> {
    if h.is_empty() {
        return Err("bullmq repeatable without its hash (written before BullMQ 5)".into());
    }
    let name = h.get("name").ok_or_else(|| garbage("name"))?;
    if h.contains_key("limit") {
        return Err("bullmq repeatable with a limit (raftline schedules have none)".into());
    }
    let (cron, start_ms) = match (h.get("pattern"), h.get("every")) {
        (Some(p), None) => (cron_of(p), number(h, "startDate")?),
        (None, Some(_)) => {
            let every = number(h, "every")?
                .filter(|e| *e > 0)
                .ok_or_else(|| garbage("every"))?;
            if every < limits::SCHEDULE_INTERVAL_MS_MIN {
                return Err(
                    "bullmq repeatable every under 1 s (raftline's shortest interval)".into(),
                );
            }
            (format!("@every {every}ms"), Some(next_ms))
        }
        _ => return Err(garbage("pattern")),
    };
    let data = match json_field(h, "data").map_err(|_| garbage("data"))? {
        Some(d) => d,
        // A job scheduler (it keeps an `ic`) stores no data when it is `{}`.
        None if h.contains_key("ic") => serde_json::json!({}),
        None => json_field(next_run, "data")?.ok_or_else(|| garbage("data"))?,
    };
    let opts = match json_field(h, "opts").map_err(|_| garbage("opts"))? {
        Some(o) => o,
        None => json_field(next_run, "opts")?.unwrap_or_else(|| serde_json::json!({})),
    };
    let payload = serde_json::to_vec(&serde_json::json!({
        "name": name,
        "data": data,
        "repeat": key,
    }))
    .map_err(|_| garbage("data"))?;
    if payload.len() > limits::PAYLOAD_BYTES_MAX {
        return Err("payload over PAYLOAD_BYTES_MAX (256 KiB)".into());
    }
    let attempts = opts["attempts"].as_u64().filter(|a| *a > 0).unwrap_or(1);
    let job = pb::SubmitRequest {
        queue: target_queue.into(),
        priority: priority(opts["priority"].as_u64().unwrap_or(0)),
        kind: Some(pb::submit_request::Kind::Payload(payload)),
        max_attempts: attempts.min(limits::MAX_ATTEMPTS_MAX as u64) as u32,
        backoff: backoff(&opts["backoff"]),
        ..Default::default()
    };
    Ok(pb::CreateScheduleRequest {
        name: schedule_name(&queue.name, key),
        cron,
        tz: h
            .get("tz")
            .filter(|tz| !tz.is_empty())
            .map_or_else(|| "UTC".to_string(), Clone::clone),
        start_ms,
        end_ms: number(h, "endDate")?,
        target: Some(pb::create_schedule_request::Target::Job(job)),
        catch_up: "latest".into(),
        overlap: "allow".into(),
    })
}

/// Why the cluster would refuse `req`, by its own rules (nothing is sent).
pub fn refusal(req: &pb::CreateScheduleRequest) -> Option<String> {
    let spec = match from_wire::schedule_spec(req.clone()) {
        Ok(spec) => spec,
        Err(e) => return Some(e.to_string()),
    };
    spec.validate()
        .err()
        .map(|r| crate::error::Error::from(r).to_string())
}

/// Reads a BullMQ queue's repeatables into schedules.
pub struct Repeatables<'a> {
    /// The queue.
    pub queue: &'a Queue,
    /// `--json`: a dry run prints no line per schedule (the summary is the one object).
    pub json: bool,
}

impl Repeatables<'_> {
    /// Imports every repeatable of the queue, in pages of `--batch`.
    pub async fn import(
        &self,
        con: &mut MultiplexedConnection,
        sink: &Sink<'_>,
        summary: &mut Summary,
    ) -> Result<()> {
        let key = self.queue.key("repeat");
        let page = sink.batch as i64;
        let mut start: i64 = 0;
        // Schedules already in the cluster, name -> (cron, zone); read once, when needed.
        let mut known: Option<BTreeMap<String, (String, String)>> = None;
        loop {
            let members = zrange_page(con, &key, start, page).await?;
            let count = members.len() as i64;
            let mut pipe = redis::pipe();
            for (member, score) in &members {
                let next = score.max(0.0) as u64;
                pipe.cmd("HGETALL").arg(format!("{key}:{member}"));
                pipe.cmd("HGETALL").arg(format!("{key}:{member}:{next}"));
            }
            let hashes: Vec<HashMap<String, String>> = if members.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(con)
                    .await
                    .map_err(|e| redis_error(&key, e))?
            };
            for ((member, score), pair) in members.iter().zip(hashes.chunks(2)) {
                summary.read += 1;
                let next = score.max(0.0) as u64;
                let req =
                    schedule_request(self.queue, &sink.queue, member, next, &pair[0], &pair[1])
                        .and_then(|req| match refusal(&req) {
                            Some(why) => Err(format!("{REFUSED}: {why}")),
                            None => Ok(req),
                        });
                match req {
                    Ok(req) => self.create(sink, req, summary, &mut known).await?,
                    Err(why) => {
                        eprintln!("skipped {key}:{member}: {why}");
                        summary.skip(why.split_once(": ").map_or(&why, |(r, _)| r));
                    }
                }
            }
            start += count;
            if count < page {
                return Ok(());
            }
        }
    }

    /// Creates the schedule unless one of its name exists (see the module doc).
    async fn create(
        &self,
        sink: &Sink<'_>,
        req: pb::CreateScheduleRequest,
        summary: &mut Summary,
        known: &mut Option<BTreeMap<String, (String, String)>>,
    ) -> Result<()> {
        let known = match known {
            Some(known) => known,
            None => known.insert(
                sink.client
                    .schedules()
                    .await?
                    .into_iter()
                    .map(|s| (s.name, (s.cron, s.tz)))
                    .collect(),
            ),
        };
        match known.get(&req.name) {
            Some((cron, tz)) if *cron == req.cron && *tz == req.tz => summary.already_present += 1,
            Some((cron, tz)) => {
                eprintln!(
                    "skipped schedule {}: one of that name exists with {cron:?} in {tz} \
                     (the repeatable is {:?} in {})",
                    req.name, req.cron, req.tz
                );
                summary.skip("schedule name taken by a different schedule");
            }
            None if sink.dry_run => {
                if !self.json {
                    println!(
                        "would create schedule {} ({} in {})",
                        req.name, req.cron, req.tz
                    );
                }
                summary.would_submit += 1;
            }
            None => {
                known.insert(req.name.clone(), (req.cron.clone(), req.tz.clone()));
                sink.client.create_schedule(req).await?;
                summary.created += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::hash;
    use super::*;

    fn job_of(req: &pb::CreateScheduleRequest) -> &pb::SubmitRequest {
        match &req.target {
            Some(pb::create_schedule_request::Target::Job(job)) => job,
            other => panic!("not a job: {other:?}"),
        }
    }

    /// A job scheduler with a cron pattern and a zone becomes the same cron in the same zone,
    /// its template's data, priority, attempts and backoff carried over; the cluster's rules
    /// accept it.
    #[test]
    fn scheduler_with_pattern_is_a_cron_schedule() {
        let q = Queue::parse("mail");
        let h = hash(&[
            ("name", "report"),
            ("pattern", "0 30 3 * * *"),
            ("tz", "Europe/Berlin"),
            ("data", r#"{"kind":"nightly"}"#),
            ("opts", r#"{"attempts":4,"priority":2,"backoff":5000}"#),
            ("ic", "1"),
        ]);
        let req = schedule_request(&q, "jobs", "nightly-report", 9, &h, &HashMap::new()).unwrap();
        assert_eq!(req.name, "bullmq.mail.nightly-report");
        assert_eq!(
            (req.cron.as_str(), req.tz.as_str()),
            ("0 30 3 * * *", "Europe/Berlin")
        );
        assert_eq!((req.start_ms, req.end_ms), (None, None));
        let job = job_of(&req);
        assert_eq!(job.queue, "jobs");
        assert_eq!((job.priority, job.max_attempts), (8, 4));
        assert_eq!(job.backoff.unwrap().base_ms, 5000);
        assert_eq!(
            job.kind,
            Some(pb::submit_request::Kind::Payload(
                br#"{"data":{"kind":"nightly"},"name":"report","repeat":"nightly-report"}"#
                    .to_vec()
            ))
        );
        assert_eq!(refusal(&req), None);
    }

    /// A legacy `repeat: {every}` takes its data from its next run and starts at that run;
    /// every under a second, a limit, garbage and a pattern croner refuses are skipped with
    /// their reasons; named expressions are written out.
    #[test]
    fn every_limit_garbage_and_refused_patterns() {
        let q = Queue::parse("mail");
        let legacy = hash(&[("name", "ping"), ("every", "60000")]);
        let next = hash(&[("data", r#"{"n":1}"#), ("opts", r#"{"attempts":0}"#)]);
        let req = schedule_request(&q, "jobs", "abc123", 1_800_000, &legacy, &next).unwrap();
        assert_eq!(
            (req.cron.as_str(), req.tz.as_str()),
            ("@every 60000ms", "UTC")
        );
        assert_eq!(req.start_ms, Some(1_800_000));
        assert_eq!(job_of(&req).max_attempts, 1);
        assert_eq!(refusal(&req), None);

        let no_data = schedule_request(&q, "jobs", "abc123", 1, &legacy, &HashMap::new());
        assert!(no_data.unwrap_err().contains("`data`"));
        let fast = hash(&[("name", "poll"), ("every", "500"), ("ic", "1")]);
        let why = schedule_request(&q, "jobs", "f", 1, &fast, &HashMap::new()).unwrap_err();
        assert!(why.contains("under 1 s"), "{why}");
        let limited = hash(&[
            ("name", "x"),
            ("every", "5000"),
            ("limit", "3"),
            ("ic", "1"),
        ]);
        let why = schedule_request(&q, "jobs", "l", 1, &limited, &HashMap::new()).unwrap_err();
        assert!(why.contains("limit"), "{why}");
        let neither = hash(&[("name", "x"), ("ic", "1")]);
        let why = schedule_request(&q, "jobs", "n", 1, &neither, &HashMap::new()).unwrap_err();
        assert!(why.contains("`pattern`"), "{why}");
        let bad_tz = hash(&[("name", "x"), ("pattern", "0 * * * *"), ("tz", "Mars/Base")]);
        let req = schedule_request(&q, "jobs", "t", 1, &bad_tz, &next).unwrap();
        assert!(refusal(&req).unwrap().contains("tz"));
        // A pattern that never fires (February 31st) is refused by the cluster's rules (and by
        // cron-parser: no form it accepts was found that croner refuses, but any is skipped).
        let never = hash(&[("name", "x"), ("pattern", "0 0 31 2 *")]);
        let req = schedule_request(&q, "jobs", "n", 1, &never, &next).unwrap();
        assert!(refusal(&req).is_some());
        assert_eq!(cron_of("@daily"), "0 0 * * *");
        let daily = hash(&[("name", "x"), ("pattern", "@weekly")]);
        let req = schedule_request(&q, "jobs", "w", 1, &daily, &next).unwrap();
        assert_eq!(req.cron, "0 0 * * 0");
    }

    /// Forms cron-parser 4 (BullMQ's parser) accepts are accepted by the cluster's rules
    /// (croner) too: `L`, `nL`, `n#k`, `?`, 7 for Sunday, steps, names, seconds.
    #[test]
    fn cron_parser_patterns_under_croner() {
        let q = Queue::parse("mail");
        let next = hash(&[("data", "{}")]);
        for pattern in [
            "0 0 * * 5L",
            "0 0 * * 5#3",
            "0 0 L * *",
            "0 0 12 ? * *",
            "0 0 * * 7",
            "0 0 1-31/2 * *",
            "0 0 * * MON-FRI",
            "0 0 * JAN,FEB *",
            "*/30 * * * * *",
        ] {
            let h = hash(&[("name", "x"), ("pattern", pattern)]);
            let req = schedule_request(&q, "jobs", "k", 1, &h, &next).unwrap();
            assert_eq!(refusal(&req), None, "{pattern}");
        }
    }

    /// Schedule names keep allowed keys as they are and make others valid and distinct.
    #[test]
    fn schedule_names_are_valid_and_distinct() {
        assert_eq!(
            schedule_name("mail", "nightly-report"),
            "bullmq.mail.nightly-report"
        );
        let a = schedule_name("mail", "every day:9");
        let b = schedule_name("mail", "every day/9");
        assert_ne!(a, b);
        let long = schedule_name("mail", &"k".repeat(300));
        for name in [a, b, long] {
            assert!(name.len() <= limits::SCHEDULE_NAME_BYTES_MAX, "{name}");
            crate::machine::job::validate_name("name", &name, limits::SCHEDULE_NAME_BYTES_MAX)
                .unwrap();
        }
    }
}
