//! The history model: every operation a test's clients performed, as a flat list of events.
//!
//! A history is what Jepsen calls one: each client operation is an [`Kind::Invoke`] event
//! followed, later, by exactly one completion of the same `process` ([`Kind::Ok`],
//! [`Kind::Fail`] or [`Kind::Info`]). A process has at most one operation in flight, so the
//! completion is simply the next event of that process. The position of an event in the list is
//! the real-time order the harness observed: if a completion precedes an invocation in the list,
//! the first operation finished before the second one started. The checkers in
//! [`crate::checker`] rely on nothing else.
//!
//! The meaning of a completion:
//! - `ok`: the operation definitely took effect, and the completion carries what it returned
//!   (the job id a submit got, the grants a lease got, ...).
//! - `fail`: the operation definitely did not take effect (a committed rejection).
//! - `info`: unknown, it may or may not have taken effect (timeout, connection lost). An
//!   invocation that never completes is treated the same way.
//!
//! Observations the harness makes itself rather than a client operation ([`Op::FinalRead`],
//! [`Op::CronRun`], [`Op::CronExpect`], [`Op::Digest`]) may be recorded as a lone `ok` event
//! without an invocation.
//!
//! On disk a history is JSONL: one [`Event`] per line ([`to_jsonl`], [`from_jsonl`]); the
//! operation is nested under `op`, tagged by `f`, e.g.
//!
//! ```text
//! {"index":0,"time_ms":12,"process":3,"node":1,"kind":"invoke","op":{"f":"submit","value":7,"job":null}}
//! ```
//!
//! The [`Recorder`] appends events from many client tasks; it takes the time from a clock the
//! caller hands it, so this module reads no clock itself.
//!
//! CAVEATS (not implemented): no streaming writer (a history is kept in memory and written at
//! the end); no schema version field.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One entry of a history: an invocation or a completion of one operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position of the event in the history (0, 1, 2, ...).
    pub index: u64,
    /// Milliseconds since the test started, when the event was recorded.
    pub time_ms: u64,
    /// The logical client or worker that performed the operation.
    pub process: u64,
    /// The node the client talked to, `None` when unknown.
    pub node: Option<u64>,
    /// Invocation or one of the three completions.
    pub kind: Kind,
    /// The operation, with the fields known at this point (a completion carries the result).
    pub op: Op,
}

/// Whether an event starts an operation or says how it ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The operation starts.
    Invoke,
    /// The operation definitely happened.
    Ok,
    /// The operation definitely did not happen.
    Fail,
    /// Unknown whether the operation happened (timeout, connection lost).
    Info,
}

/// A job handed to a worker by a lease.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The leased job's id.
    pub job: u64,
    /// The fencing token of this lease; a completion must carry it.
    pub token: u64,
    /// The job's payload value (the value its submit carried).
    pub value: u64,
}

/// An operation of one of the workloads, tagged `"f"` on the wire.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// Submit a job whose payload is `value` (unique per submit in a test).
    Submit {
        /// The payload value, unique per submit.
        value: u64,
        /// The job id the cluster assigned; set on `ok` only.
        job: Option<u64>,
    },
    /// Lease jobs for a worker.
    Lease {
        /// The jobs granted; empty on the invocation and on `fail`/`info`.
        grants: Vec<Grant>,
    },
    /// Report a job's attempt as succeeded under a lease's fencing token. `ok`: the cluster
    /// accepted it; `fail`: refused (stale token); `info`: unknown.
    Complete {
        /// The job completed.
        job: u64,
        /// The fencing token of the lease the worker holds.
        token: u64,
        /// The job's payload value.
        value: u64,
    },
    /// A linearizable read of one job.
    Read {
        /// The job read.
        job: u64,
        /// The payload value seen; `None` on the invocation or when not found.
        value: Option<u64>,
        /// On `ok`: `None` when the job was not found, else its state name (`scheduled`,
        /// `ready`, `leased`, `succeeded`, `dead`, `cancelled`).
        state: Option<String>,
    },
    /// A linearizable read of a queue's job count (all states).
    CountRead {
        /// The queue read.
        queue: String,
        /// On `ok`: the number of jobs the queue holds.
        total: Option<u64>,
    },
    /// The final state of a job, read after the faults healed and the queue drained.
    FinalRead {
        /// The job read.
        job: u64,
        /// Its payload value.
        value: u64,
        /// Its state name.
        state: String,
        /// How many attempts recorded a successful outcome on the job.
        attempts_succeeded: u32,
    },
    /// Acquire a lock on `resource` as `owner`.
    Acquire {
        /// The lock's name.
        resource: String,
        /// Who asks for it.
        owner: String,
        /// The fencing token granted; set on `ok` only.
        token: Option<u64>,
    },
    /// Release a lock held with `token`.
    Release {
        /// The lock's name.
        resource: String,
        /// The fencing token of the grant being released.
        token: u64,
    },
    /// Write `value` to the fenced register guarded by `resource`. `ok`: the register accepted
    /// it (it accepts only a token >= the largest it has seen).
    FencedWrite {
        /// The lock's name (one register per lock).
        resource: String,
        /// The writer's fencing token.
        token: u64,
        /// The value written.
        value: u64,
    },
    /// A run of a cron tick, observed by the harness (recorded as `ok` only, once per run).
    CronRun {
        /// The schedule's id.
        schedule: String,
        /// The tick (scheduled fire time, ms) the run belongs to.
        tick_ms: u64,
        /// The node that ran it.
        node: u64,
        /// The run's fencing token.
        token: u64,
    },
    /// The ticks `schedule` should have fired in the checked window (written once by the
    /// harness, as `ok`).
    CronExpect {
        /// The schedule's id.
        schedule: String,
        /// The expected ticks, ms.
        ticks_ms: Vec<u64>,
    },
    /// A node's state-machine digest at an applied log index, taken after heal (as `ok`).
    Digest {
        /// The node.
        node: u64,
        /// The last applied log index the digest covers.
        applied: u64,
        /// The digest, e.g. a hex hash of the state.
        digest: String,
    },
}

impl Op {
    /// The wire name of the operation (the `"f"` tag), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Submit { .. } => "submit",
            Op::Lease { .. } => "lease",
            Op::Complete { .. } => "complete",
            Op::Read { .. } => "read",
            Op::CountRead { .. } => "count_read",
            Op::FinalRead { .. } => "final_read",
            Op::Acquire { .. } => "acquire",
            Op::Release { .. } => "release",
            Op::FencedWrite { .. } => "fenced_write",
            Op::CronRun { .. } => "cron_run",
            Op::CronExpect { .. } => "cron_expect",
            Op::Digest { .. } => "digest",
        }
    }

    /// Whether the harness records this as a lone `ok` observation rather than as an
    /// invocation followed by a completion.
    pub fn is_observation(&self) -> bool {
        matches!(
            self,
            Op::FinalRead { .. } | Op::CronRun { .. } | Op::CronExpect { .. } | Op::Digest { .. }
        )
    }
}

/// Renders a history as JSONL, one event per line, each line ending in `\n`.
pub fn to_jsonl(events: &[Event]) -> String {
    let mut out = String::new();
    for event in events {
        // These plain types (no maps with non-string keys, no custom impls) always serialize.
        let line = serde_json::to_string(event).expect("an Event always serializes");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Parses a JSONL history; blank lines are skipped. The error names the 1-based line.
pub fn from_jsonl(text: &str) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event =
            serde_json::from_str(line).map_err(|e| format!("history line {}: {e}", number + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// A clock handed to the [`Recorder`]: milliseconds since the test started.
pub type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// An append-only, thread-safe history being recorded.
///
/// Indexes are assigned, and the clock read, under one lock, so `index` order is the real-time
/// order of the calls and `time_ms` never decreases along the history (for a monotonic clock).
pub struct Recorder {
    clock: Clock,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// A recorder taking each event's `time_ms` from `clock` (a test passes a fake one).
    pub fn new(clock: Clock) -> Recorder {
        Recorder {
            clock,
            events: Mutex::new(Vec::new()),
        }
    }

    /// Records the invocation of `op` by `process`, talking to `node`.
    pub fn invoke(&self, process: u64, node: Option<u64>, op: Op) {
        self.push(process, node, Kind::Invoke, op);
    }

    /// Records how `process`'s operation in flight ended (`kind` is `ok`, `fail` or `info`),
    /// or a lone `ok` observation.
    pub fn complete(&self, process: u64, node: Option<u64>, kind: Kind, op: Op) {
        debug_assert!(kind != Kind::Invoke, "complete() called with Kind::Invoke");
        self.push(process, node, kind, op);
    }

    /// A copy of the history recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    fn push(&self, process: u64, node: Option<u64>, kind: Kind, op: Op) {
        let mut events = self.lock();
        let event = Event {
            index: events.len() as u64,
            time_ms: (self.clock)(),
            process,
            node,
            kind,
            op,
        };
        events.push(event);
    }

    /// The events, even if a recording thread panicked (appends are whole, so the list is
    /// still well formed).
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.lock().len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A fake clock that advances 5 ms per reading.
    fn fake_clock() -> Clock {
        let now = Arc::new(AtomicU64::new(0));
        Box::new(move || now.fetch_add(5, Ordering::SeqCst))
    }

    /// One event of every operation, as a recorder would produce them.
    fn every_op() -> Vec<Event> {
        let recorder = Recorder::new(fake_clock());
        let ops = vec![
            Op::Submit {
                value: 1,
                job: Some(10),
            },
            Op::Lease {
                grants: vec![Grant {
                    job: 10,
                    token: 2,
                    value: 1,
                }],
            },
            Op::Complete {
                job: 10,
                token: 2,
                value: 1,
            },
            Op::Read {
                job: 10,
                value: None,
                state: None,
            },
            Op::FinalRead {
                job: 10,
                value: 1,
                state: "succeeded".into(),
                attempts_succeeded: 1,
            },
            Op::Acquire {
                resource: "r".into(),
                owner: "w1".into(),
                token: Some(4),
            },
            Op::Release {
                resource: "r".into(),
                token: 4,
            },
            Op::FencedWrite {
                resource: "r".into(),
                token: 4,
                value: 9,
            },
            Op::CronRun {
                schedule: "s".into(),
                tick_ms: 60_000,
                node: 2,
                token: 1,
            },
            Op::CronExpect {
                schedule: "s".into(),
                ticks_ms: vec![60_000, 120_000],
            },
            Op::Digest {
                node: 1,
                applied: 88,
                digest: "ab12".into(),
            },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            let kind = [Kind::Ok, Kind::Fail, Kind::Info][i % 3];
            recorder.invoke(i as u64, Some(1), op.clone());
            recorder.complete(i as u64, None, kind, op);
        }
        recorder.events()
    }

    /// A history survives a JSONL round trip unchanged, for every operation and kind.
    #[test]
    fn jsonl_round_trip() {
        let events = every_op();
        let text = to_jsonl(&events);
        assert_eq!(text.lines().count(), events.len());
        assert_eq!(from_jsonl(&text), Ok(events));
    }

    /// The wire form uses lower-case kinds and an `"f"` tag in snake_case.
    #[test]
    fn jsonl_wire_form() {
        let events = every_op();
        let text = to_jsonl(&events[..2]);
        assert!(text.starts_with(r#"{"index":0,"time_ms":0,"process":0,"node":1,"#));
        assert!(text.contains(r#""kind":"invoke","op":{"f":"submit","value":1,"job":10}"#));
        assert!(to_jsonl(&events).contains(r#""f":"fenced_write""#));
    }

    /// A malformed line is an error naming its line number; blank lines are skipped.
    #[test]
    fn jsonl_error_names_line() {
        let good = to_jsonl(&every_op()[..1]);
        let text = format!("{good}\n{{\"index\": 1, \"kind\": \"maybe\"}}\n");
        let err = from_jsonl(&text).unwrap_err();
        assert!(err.starts_with("history line 3:"), "{err}");
    }

    /// The recorder numbers events in call order and stamps the clock's time.
    #[test]
    fn recorder_assigns_index_and_time() {
        let events = every_op();
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.index, i as u64);
            assert_eq!(event.time_ms, 5 * i as u64);
        }
        assert_eq!(events[1].kind, Kind::Ok);
        assert_eq!(events[3].kind, Kind::Fail);
    }
}
