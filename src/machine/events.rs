//! Event triggers: `emit(topic, dedup_key, payload)` starts every job or workflow subscribed to
//! the topic, at most once per (topic, dedup key) within the idempotency window.
//!
//! Job and workflow transitions are topics too: `job.succeeded`, `job.dead`, `job.cancelled`,
//! `workflow.succeeded`, `workflow.failed`, `workflow.cancelled`, emitted inside the apply of
//! the transition (keyed by the job or workflow id and the time), so users chain work on them.
//! A chain is bounded: work started by an event carries its depth, and transitions of work at
//! depth `TRIGGER_DEPTH_MAX` start nothing (a trigger on `job.dead` whose job always dies
//! cannot loop forever).
//!
//! What a started job sees: a shell job gets `RAFTLINE_EVENT_TOPIC`, `RAFTLINE_EVENT_KEY` and
//! `RAFTLINE_EVENT_PAYLOAD` (the payload as UTF-8, lossy) in its environment; an external job
//! whose template has an empty payload gets the event's payload.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{Rejection, Response};
use super::job::{validate_name, JobId, JobKind};
use super::jobs::invalid;
use super::schedule::Target;
use super::workflow::WorkflowId;
use super::{limits, Machine};

/// The events subsystem: triggers by topic, event dedup keys, and timers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// Next trigger id.
    pub(super) next_trigger_id: TriggerId,
    /// Triggers by id.
    pub(super) triggers: BTreeMap<TriggerId, Trigger>,
    /// Trigger ids by topic.
    pub(super) topics: BTreeMap<String, BTreeSet<TriggerId>>,
    /// Event dedup keys (topic NUL key) -> expiry.
    pub(super) keys: BTreeMap<String, u64>,
    /// Event dedup keys by expiry.
    pub(super) key_expiry: BTreeSet<(u64, String)>,
    /// Next timer id.
    pub(super) next_timer_id: u64,
    /// Pending event timers by id.
    pub(super) timers: BTreeMap<u64, Timer>,
    /// Pending event timers by due time.
    pub(super) timer_due: BTreeSet<(u64, u64)>,
}

impl Events {
    /// No triggers or timers; ids start at 1.
    pub fn new() -> Events {
        Events {
            next_trigger_id: 1,
            next_timer_id: 1,
            ..Events::default()
        }
    }
}

/// Cluster-assigned trigger id.
pub type TriggerId = u64;

/// A subscription: what to start on each event of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Its id.
    pub id: TriggerId,
    /// The topic, `[A-Za-z0-9_.-]{1,128}`.
    pub topic: String,
    /// What it starts.
    pub target: Target,
    /// State-machine time of creation.
    pub created_ms: u64,
    /// Events that started it.
    pub fired: u64,
}

/// A durable timer: emits an event when due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Its id.
    pub id: u64,
    /// When it fires, state-machine time.
    pub due_ms: u64,
    /// The event's topic.
    pub topic: String,
    /// The event's dedup key.
    pub dedup_key: String,
    /// The event's payload.
    pub payload: Vec<u8>,
    /// State-machine time of creation.
    pub created_ms: u64,
}

/// What an emit started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Jobs started.
    pub jobs: Vec<JobId>,
    /// Workflows started.
    pub workflows: Vec<WorkflowId>,
    /// Subscribers that could not be started (a limit), with why.
    pub failed: Vec<String>,
}

impl Machine {
    /// Triggers, in id order.
    pub fn triggers(&self) -> impl Iterator<Item = &Trigger> {
        self.events.triggers.values()
    }

    pub(super) fn create_trigger(&mut self, topic: &str, target: &Target) -> Response {
        if let Err(r) = validate_name("topic", topic, limits::TOPIC_BYTES_MAX) {
            return Response::Rejected(r);
        }
        let checked = match target {
            Target::Job(spec) => spec.validate().map_err(Response::Rejected).and_then(|_| {
                if spec.idempotency_key.is_some() {
                    Err(invalid(
                        "idempotency_key",
                        "is not allowed in a trigger's job",
                    ))
                } else {
                    self.check_needs("", spec)
                }
            }),
            Target::Workflow(w) => w.validate().map_err(Response::Rejected),
        };
        if let Err(r) = checked {
            return r;
        }
        if self.events.triggers.len() >= limits::TRIGGERS_MAX {
            return Response::Rejected(Rejection::Exhausted {
                message: format!("{} triggers exist, the limit", limits::TRIGGERS_MAX),
            });
        }
        let id = self.events.next_trigger_id;
        self.events.next_trigger_id += 1;
        self.events.triggers.insert(
            id,
            Trigger {
                id,
                topic: topic.to_string(),
                target: target.clone(),
                created_ms: self.now_ms,
                fired: 0,
            },
        );
        self.events
            .topics
            .entry(topic.to_string())
            .or_default()
            .insert(id);
        Response::TriggerCreated { id }
    }

    pub(super) fn delete_trigger(&mut self, id: TriggerId) -> Response {
        let Some(t) = self.events.triggers.remove(&id) else {
            return Response::Rejected(Rejection::Missing {
                what: format!("trigger {id}"),
            });
        };
        if let Some(set) = self.events.topics.get_mut(&t.topic) {
            set.remove(&id);
            if set.is_empty() {
                self.events.topics.remove(&t.topic);
            }
        }
        Response::Ok
    }

    /// Checks an event an operator emits (now or by a timer): topic, key, payload, and that
    /// the topic is not one the cluster emits itself.
    fn check_event(topic: &str, key: &str, payload: &[u8]) -> Result<(), Response> {
        validate_name("topic", topic, limits::TOPIC_BYTES_MAX).map_err(Response::Rejected)?;
        if key.is_empty() || key.len() > limits::IDEMPOTENCY_KEY_BYTES_MAX {
            return Err(invalid(
                "dedup_key",
                format!(
                    "is {} bytes, must be 1..={}",
                    key.len(),
                    limits::IDEMPOTENCY_KEY_BYTES_MAX
                ),
            ));
        }
        if payload.len() > limits::EVENT_PAYLOAD_BYTES_MAX {
            return Err(invalid(
                "payload",
                format!(
                    "is {} bytes, the limit is {}",
                    payload.len(),
                    limits::EVENT_PAYLOAD_BYTES_MAX
                ),
            ));
        }
        if topic.starts_with("job.") || topic.starts_with("workflow.") {
            return Err(invalid(
                "topic",
                "job.* and workflow.* are emitted by the cluster on transitions",
            ));
        }
        Ok(())
    }

    pub(super) fn emit(&mut self, topic: &str, key: &str, payload: &[u8]) -> Response {
        if let Err(r) = Machine::check_event(topic, key, payload) {
            return r;
        }
        match self.fire_event(topic, key, payload, 0) {
            Some(started) => Response::Emitted {
                started,
                duplicate: false,
            },
            None => Response::Emitted {
                started: Started::default(),
                duplicate: true,
            },
        }
    }

    /// Starts the subscribers of `topic` unless `(topic, key)` was seen within the window
    /// (`None` then). `depth` is the depth of the work that caused the event.
    pub(super) fn fire_event(
        &mut self,
        topic: &str,
        key: &str,
        payload: &[u8],
        depth: u8,
    ) -> Option<Started> {
        let dedup = format!("{topic}\u{0}{key}");
        if self.events.keys.contains_key(&dedup) {
            return None;
        }
        if self.events.keys.len() < limits::EVENT_KEYS_MAX {
            let expires = self
                .now_ms
                .saturating_add(self.settings.idempotency_window_ms);
            self.events.keys.insert(dedup.clone(), expires);
            self.events.key_expiry.insert((expires, dedup));
        }
        let mut started = Started::default();
        let ids: Vec<TriggerId> = self
            .events
            .topics
            .get(topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            let Some(t) = self.events.triggers.get_mut(&id) else {
                continue;
            };
            t.fired += 1;
            let target = t.target.clone();
            match target {
                Target::Job(spec) => {
                    let mut spec = *spec;
                    match &mut spec.kind {
                        JobKind::Shell { env, .. } => {
                            let text = String::from_utf8_lossy(payload);
                            let text = super::job::tail(&text, limits::EVENT_ENV_BYTES_MAX);
                            env.insert("RAFTLINE_EVENT_TOPIC".into(), topic.to_string());
                            env.insert("RAFTLINE_EVENT_KEY".into(), key.to_string());
                            env.insert("RAFTLINE_EVENT_PAYLOAD".into(), text);
                        }
                        JobKind::External { payload: p } if p.is_empty() => {
                            *p = payload.to_vec();
                        }
                        JobKind::External { .. } => {}
                    }
                    match self.submit(&spec, 0, None) {
                        Response::Submitted { id, .. } => {
                            self.jobs.by_id.get_mut(&id).expect("submitted").depth =
                                depth.saturating_add(1);
                            started.jobs.push(id);
                        }
                        other => started.failed.push(format!("trigger {id}: {other:?}")),
                    }
                }
                Target::Workflow(w) => match self.submit_workflow(&w) {
                    Response::WorkflowSubmitted { id } => {
                        self.workflows.by_id.get_mut(&id).expect("submitted").depth =
                            depth.saturating_add(1);
                        started.workflows.push(id);
                    }
                    other => started.failed.push(format!("trigger {id}: {other:?}")),
                },
            }
        }
        Some(started)
    }

    /// A transition of work at `depth`: fires `topic` for its subscribers, if any, unless the
    /// chain is at its bound.
    pub(super) fn transition_event(&mut self, topic: &str, key: String, depth: u8) {
        if depth >= limits::TRIGGER_DEPTH_MAX || !self.events.topics.contains_key(topic) {
            return;
        }
        self.fire_event(topic, &key, key.as_bytes(), depth);
    }

    /// Timers, by due time.
    pub fn timers(&self) -> impl Iterator<Item = &Timer> {
        self.events
            .timer_due
            .iter()
            .filter_map(|(_, id)| self.events.timers.get(id))
    }

    pub(super) fn create_timer(
        &mut self,
        due_ms: u64,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Response {
        if let Err(r) = Machine::check_event(topic, key, payload) {
            return r;
        }
        let horizon = self.now_ms.saturating_add(limits::DELAY_MS_MAX);
        if due_ms > horizon {
            return invalid(
                "due_ms",
                format!("is {due_ms}, more than DELAY_MS_MAX after now (limit {horizon})"),
            );
        }
        if self.events.timers.len() >= limits::TIMERS_MAX {
            return Response::Rejected(Rejection::Exhausted {
                message: format!("{} timers exist, the limit", limits::TIMERS_MAX),
            });
        }
        let id = self.events.next_timer_id;
        self.events.next_timer_id += 1;
        self.events.timers.insert(
            id,
            Timer {
                id,
                due_ms,
                topic: topic.to_string(),
                dedup_key: key.to_string(),
                payload: payload.to_vec(),
                created_ms: self.now_ms,
            },
        );
        self.events.timer_due.insert((due_ms, id));
        Response::TimerCreated { id, due_ms }
    }

    pub(super) fn cancel_timer(&mut self, id: u64) -> Response {
        let Some(t) = self.events.timers.remove(&id) else {
            return Response::Rejected(Rejection::Missing {
                what: format!("timer {id} (fired, cancelled or never created)"),
            });
        };
        self.events.timer_due.remove(&(t.due_ms, id));
        Response::Ok
    }

    /// Fires one due timer; returns whether it did.
    pub(super) fn fire_timer(&mut self) -> bool {
        let now = self.now_ms;
        let Some(&(due, id)) = self.events.timer_due.first().filter(|(t, _)| *t <= now) else {
            return false;
        };
        self.events.timer_due.remove(&(due, id));
        let t = self.events.timers.remove(&id).expect("indexed timer");
        self.fire_event(&t.topic, &t.dedup_key, &t.payload, 0);
        true
    }

    /// Removes one expired event key; returns whether it did.
    pub(super) fn expire_event_key(&mut self) -> bool {
        let now = self.now_ms;
        let Some((at, key)) = self
            .events
            .key_expiry
            .first()
            .filter(|(t, _)| *t <= now)
            .cloned()
        else {
            return false;
        };
        self.events.key_expiry.remove(&(at, key.clone()));
        self.events.keys.remove(&key);
        true
    }

    /// Panics if the trigger or event indexes are off.
    pub(super) fn check_event_invariants(&self) {
        let indexed: BTreeSet<TriggerId> = self.events.topics.values().flatten().copied().collect();
        let held: BTreeSet<TriggerId> = self.events.triggers.keys().copied().collect();
        assert_eq!(indexed, held, "trigger topic index");
        assert_eq!(
            self.events.keys.len(),
            self.events.key_expiry.len(),
            "event keys"
        );
        assert_eq!(
            self.events.timers.len(),
            self.events.timer_due.len(),
            "timer index"
        );
        for (due, id) in &self.events.timer_due {
            assert_eq!(
                self.events.timers.get(id).map(|t| t.due_ms),
                Some(*due),
                "timer {id}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::{Command, Proposal};
    use crate::machine::JobSpec;

    fn apply(m: &mut Machine, now: u64, command: Command) -> Response {
        m.apply(&Proposal {
            now_ms: now,
            command,
        })
    }

    /// An event with the same dedup key twice starts its subscribers once; a new key starts
    /// them again; the key is forgotten after the window.
    #[test]
    fn dedup_window() {
        let mut m = Machine::new();
        let r = apply(
            &mut m,
            1_000,
            Command::CreateTrigger {
                topic: "deploys".into(),
                target: Target::Job(Box::new(JobSpec::shell("q", &["true"]))),
            },
        );
        assert!(matches!(r, Response::TriggerCreated { id: 1 }), "{r:?}");
        let emit = |m: &mut Machine, now, key: &str| {
            apply(
                m,
                now,
                Command::Emit {
                    topic: "deploys".into(),
                    dedup_key: key.into(),
                    payload: b"v1.2".to_vec(),
                },
            )
        };
        let Response::Emitted { started, duplicate } = emit(&mut m, 1_000, "a") else {
            panic!()
        };
        assert!(!duplicate);
        assert_eq!(started.jobs.len(), 1);
        let job = m.job(started.jobs[0]).unwrap();
        let JobKind::Shell { env, .. } = &job.spec.kind else {
            panic!()
        };
        assert_eq!(env["RAFTLINE_EVENT_PAYLOAD"], "v1.2");
        assert!(matches!(
            emit(&mut m, 2_000, "a"),
            Response::Emitted {
                duplicate: true,
                ..
            }
        ));
        assert!(matches!(
            emit(&mut m, 2_000, "b"),
            Response::Emitted {
                duplicate: false,
                ..
            }
        ));
        assert_eq!(m.job_count(), 2);
        let later = 1_000 + m.settings().idempotency_window_ms + 1;
        while m.next_due().is_some_and(|d| d <= later) {
            apply(&mut m, later, Command::Tick);
        }
        assert!(matches!(
            emit(&mut m, later, "a"),
            Response::Emitted {
                duplicate: false,
                ..
            }
        ));
        let bad = apply(
            &mut m,
            later,
            Command::Emit {
                topic: "job.succeeded".into(),
                dedup_key: "x".into(),
                payload: vec![],
            },
        );
        assert!(matches!(bad, Response::Rejected(Rejection::Invalid { .. })));
    }

    /// A trigger on `job.dead` whose job always dies stops at the depth bound.
    #[test]
    fn transition_chains_are_bounded() {
        let mut m = Machine::new();
        let mut spec = JobSpec::shell("q", &["false"]);
        spec.max_attempts = 1;
        apply(
            &mut m,
            1_000,
            Command::CreateTrigger {
                topic: "job.cancelled".into(),
                target: Target::Job(Box::new(spec.clone())),
            },
        );
        let Response::Submitted { id, .. } = apply(
            &mut m,
            1_000,
            Command::Submit {
                spec,
                delay_ms: 0,
                run_at_ms: None,
            },
        ) else {
            panic!()
        };
        let mut next = id;
        let mut chain = 0;
        for _ in 0..20 {
            let before = m.job_count();
            apply(&mut m, 1_000, Command::Cancel { job_id: next });
            if m.job_count() == before {
                break;
            }
            chain += 1;
            next = m.list(None, None, next, 10).last().unwrap().id;
        }
        assert_eq!(chain, limits::TRIGGER_DEPTH_MAX as usize);
    }

    /// A timer emits its event when due (through a Tick), once; a cancelled one never does.
    #[test]
    fn timers_emit_when_due() {
        let mut m = Machine::new();
        apply(
            &mut m,
            1_000,
            Command::CreateTrigger {
                topic: "wake".into(),
                target: Target::Job(Box::new(JobSpec::shell("q", &["true"]))),
            },
        );
        let timer = |m: &mut Machine, key: &str| {
            apply(
                m,
                1_000,
                Command::CreateTimer {
                    due_ms: None,
                    delay_ms: 5_000,
                    topic: "wake".into(),
                    dedup_key: key.into(),
                    payload: vec![],
                },
            )
        };
        assert_eq!(
            timer(&mut m, "a"),
            Response::TimerCreated {
                id: 1,
                due_ms: 6_000
            }
        );
        timer(&mut m, "b");
        assert_eq!(
            apply(&mut m, 1_000, Command::CancelTimer { id: 2 }),
            Response::Ok
        );
        assert_eq!(m.next_due(), Some(6_000));
        apply(&mut m, 5_999, Command::Tick);
        assert_eq!(m.job_count(), 0);
        apply(&mut m, 6_000, Command::Tick);
        assert_eq!(m.job_count(), 1, "fired once, the cancelled one never");
        apply(&mut m, 7_000, Command::Tick);
        assert_eq!(m.job_count(), 1);
        assert_eq!(m.timers().count(), 0);
    }
}
