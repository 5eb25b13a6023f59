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

use super::command::{invalid, Ctx, Rejection, Response};
use super::job::{tail, validate_name, JobId, JobKind, JobSpec};
use super::keys::ExpiringKeys;
use super::limits;
use super::schedule::Target;
use super::workflow::WorkflowId;

/// The events subsystem: triggers by topic, event dedup keys, and timers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// Next trigger id.
    next_trigger_id: TriggerId,
    /// Triggers by id.
    triggers: BTreeMap<TriggerId, Trigger>,
    /// Trigger ids by topic.
    topics: BTreeMap<String, BTreeSet<TriggerId>>,
    /// Event dedup keys (topic NUL key), until the window passes.
    keys: ExpiringKeys<()>,
    /// Next timer id.
    next_timer_id: u64,
    /// Pending event timers by id.
    timers: BTreeMap<u64, Timer>,
    /// Pending event timers by due time.
    timer_due: BTreeSet<(u64, u64)>,
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
    #[serde(with = "crate::machine::codec::bytes")]
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

impl Events {
    /// Triggers, in id order.
    pub fn triggers(&self) -> impl Iterator<Item = &Trigger> {
        self.triggers.values()
    }

    /// Timers, by due time.
    pub fn timers(&self) -> impl Iterator<Item = &Timer> {
        self.timer_due
            .iter()
            .filter_map(|(_, id)| self.timers.get(id))
    }

    /// Whether any trigger is subscribed to any topic.
    pub fn has_topics(&self) -> bool {
        !self.topics.is_empty()
    }

    /// Whether a trigger is subscribed to `topic`.
    pub fn has_topic(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    /// Earliest time an event key expires or a timer fires.
    pub fn next_due(&self) -> Option<u64> {
        [
            self.keys.next_due(),
            self.timer_due.first().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Checks a trigger's topic, and the parts of its target that need no other subsystem
    /// (a job target's resources are checked by the machine).
    pub(super) fn check_trigger(topic: &str, target: &Target) -> Result<(), Response> {
        validate_name("topic", topic, limits::TOPIC_BYTES_MAX).map_err(Response::Rejected)?;
        match target {
            Target::Job(spec) => {
                spec.validate().map_err(Response::Rejected)?;
                if spec.idempotency_key.is_some() {
                    return Err(invalid(
                        "idempotency_key",
                        "is not allowed in a trigger's job",
                    ));
                }
                Ok(())
            }
            Target::Workflow(w) => w.validate().map_err(Response::Rejected),
        }
    }

    /// Adds a checked trigger.
    pub(super) fn create_trigger(&mut self, ctx: Ctx, topic: &str, target: &Target) -> Response {
        if self.triggers.len() >= limits::TRIGGERS_MAX {
            return Response::Rejected(Rejection::Exhausted {
                message: format!("{} triggers exist, the limit", limits::TRIGGERS_MAX),
            });
        }
        let id = self.next_trigger_id;
        self.next_trigger_id += 1;
        self.triggers.insert(
            id,
            Trigger {
                id,
                topic: topic.to_string(),
                target: target.clone(),
                created_ms: ctx.now_ms,
                fired: 0,
            },
        );
        self.topics.entry(topic.to_string()).or_default().insert(id);
        Response::TriggerCreated { id }
    }

    /// Removes a trigger.
    pub(super) fn delete_trigger(&mut self, id: TriggerId) -> Response {
        let Some(t) = self.triggers.remove(&id) else {
            return Response::Rejected(Rejection::Missing {
                what: format!("trigger {id}"),
            });
        };
        if let Some(set) = self.topics.get_mut(&t.topic) {
            set.remove(&id);
            if set.is_empty() {
                self.topics.remove(&t.topic);
            }
        }
        Response::Ok
    }

    /// Checks an event an operator emits (now or by a timer): topic, key, payload, and that
    /// the topic is not one the cluster emits itself.
    pub(super) fn check_event(topic: &str, key: &str, payload: &[u8]) -> Result<(), Response> {
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
        if super::alerts::TOPICS.contains(&topic) {
            return Err(invalid(
                "topic",
                format!("{topic} is an alert the cluster raises itself"),
            ));
        }
        Ok(())
    }

    /// Claims an event: `None` if `(topic, key)` was seen within the window; otherwise the
    /// key is remembered (while `EVENT_KEYS_MAX` allows), each subscribed trigger counts the
    /// event, and their targets are returned in trigger order, ready to start (a job target
    /// carries the event in its environment or payload).
    pub(super) fn claim(
        &mut self,
        ctx: Ctx,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Option<Vec<(TriggerId, Target)>> {
        let dedup = format!("{topic}\u{0}{key}");
        if self.keys.get(&dedup).is_some() {
            return None;
        }
        if self.keys.len() < limits::EVENT_KEYS_MAX {
            let expires = ctx
                .now_ms
                .saturating_add(ctx.settings.idempotency_window_ms);
            self.keys.insert(dedup, (), expires);
        }
        let ids: Vec<TriggerId> = self
            .topics
            .get(topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut targets = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(t) = self.triggers.get_mut(&id) else {
                continue;
            };
            t.fired += 1;
            let target = match t.target.clone() {
                Target::Job(spec) => Target::Job(Box::new(with_event(*spec, topic, key, payload))),
                workflow => workflow,
            };
            targets.push((id, target));
        }
        Some(targets)
    }

    /// Checks and adds a timer due at `due_ms`.
    pub(super) fn create_timer(
        &mut self,
        ctx: Ctx,
        due_ms: u64,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Response {
        if let Err(r) = Events::check_event(topic, key, payload) {
            return r;
        }
        let horizon = ctx.now_ms.saturating_add(limits::DELAY_MS_MAX);
        if due_ms > horizon {
            return invalid(
                "due_ms",
                format!("is {due_ms}, more than DELAY_MS_MAX after now (limit {horizon})"),
            );
        }
        if self.timers.len() >= limits::TIMERS_MAX {
            return Response::Rejected(Rejection::Exhausted {
                message: format!("{} timers exist, the limit", limits::TIMERS_MAX),
            });
        }
        let id = self.next_timer_id;
        self.next_timer_id += 1;
        self.timers.insert(
            id,
            Timer {
                id,
                due_ms,
                topic: topic.to_string(),
                dedup_key: key.to_string(),
                payload: payload.to_vec(),
                created_ms: ctx.now_ms,
            },
        );
        self.timer_due.insert((due_ms, id));
        Response::TimerCreated { id, due_ms }
    }

    /// Cancels a pending timer.
    pub(super) fn cancel_timer(&mut self, id: u64) -> Response {
        let Some(t) = self.timers.remove(&id) else {
            return Response::Rejected(Rejection::Missing {
                what: format!("timer {id} (fired, cancelled or never created)"),
            });
        };
        self.timer_due.remove(&(t.due_ms, id));
        Response::Ok
    }

    /// Takes one timer due by now, to be fired by the machine.
    pub(super) fn take_due_timer(&mut self, now_ms: u64) -> Option<Timer> {
        let &(due, id) = self.timer_due.first().filter(|(t, _)| *t <= now_ms)?;
        self.timer_due.remove(&(due, id));
        Some(self.timers.remove(&id).expect("indexed timer"))
    }

    /// Removes one expired event key; returns whether it did.
    pub(super) fn expire_key(&mut self, now_ms: u64) -> bool {
        self.keys.expire_one(now_ms)
    }

    /// Panics if the trigger or event indexes are off.
    pub fn check_invariants(&self) {
        let indexed: BTreeSet<TriggerId> = self.topics.values().flatten().copied().collect();
        let held: BTreeSet<TriggerId> = self.triggers.keys().copied().collect();
        assert_eq!(indexed, held, "trigger topic index");
        self.keys.check_invariants("event");
        assert_eq!(self.timers.len(), self.timer_due.len(), "timer index");
        for (due, id) in &self.timer_due {
            assert_eq!(
                self.timers.get(id).map(|t| t.due_ms),
                Some(*due),
                "timer {id}"
            );
        }
        if let Some((&last, _)) = self.triggers.last_key_value() {
            assert!(last < self.next_trigger_id, "trigger id {last} >= next");
        }
    }
}

/// A trigger's job template with the event it starts for: a shell job gets the event in its
/// environment; an external job whose template has an empty payload gets the event's.
fn with_event(mut spec: JobSpec, topic: &str, key: &str, payload: &[u8]) -> JobSpec {
    match &mut spec.kind {
        JobKind::Shell { env, .. } => {
            let text = String::from_utf8_lossy(payload);
            let text = tail(&text, limits::EVENT_ENV_BYTES_MAX);
            env.insert("RAFTLINE_EVENT_TOPIC".into(), topic.to_string());
            env.insert("RAFTLINE_EVENT_KEY".into(), key.to_string());
            env.insert("RAFTLINE_EVENT_PAYLOAD".into(), text);
        }
        JobKind::External { payload: p } if p.is_empty() => {
            *p = payload.to_vec();
        }
        JobKind::External { .. } => {}
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A started shell job sees the event in its environment (the payload as UTF-8, cut to
    /// `EVENT_ENV_BYTES_MAX`); an external job with an empty payload gets the event's, and one
    /// with its own keeps it.
    #[test]
    fn started_jobs_carry_the_event() {
        let shell = with_event(
            JobSpec::shell("q", &["true"]),
            "deploys",
            "v42",
            b"{\"v\":42}",
        );
        let JobKind::Shell { env, .. } = &shell.kind else {
            panic!("shell");
        };
        assert_eq!(env["RAFTLINE_EVENT_TOPIC"], "deploys");
        assert_eq!(env["RAFTLINE_EVENT_KEY"], "v42");
        assert_eq!(env["RAFTLINE_EVENT_PAYLOAD"], "{\"v\":42}");
        let big = vec![b'x'; limits::EVENT_ENV_BYTES_MAX + 10];
        let cut = with_event(JobSpec::shell("q", &["true"]), "t", "k", &big);
        let JobKind::Shell { env, .. } = &cut.kind else {
            panic!("shell");
        };
        assert_eq!(
            env["RAFTLINE_EVENT_PAYLOAD"].len(),
            limits::EVENT_ENV_BYTES_MAX
        );
        let external = |payload: &[u8]| {
            JobSpec::new(
                "q",
                JobKind::External {
                    payload: payload.to_vec(),
                },
            )
        };
        let empty = with_event(external(b""), "t", "k", b"event");
        assert_eq!(
            empty.kind,
            JobKind::External {
                payload: b"event".to_vec()
            }
        );
        let own = with_event(external(b"mine"), "t", "k", b"event");
        assert_eq!(
            own.kind,
            JobKind::External {
                payload: b"mine".to_vec()
            }
        );
    }
}
