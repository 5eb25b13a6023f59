//! Queue protection: a circuit breaker, a rate limit and a concurrency limit per queue, all on
//! state-machine time and all off until a queue's policy sets them.
//!
//! - **Breaker**: the outcomes of the queue's last `window` attempts (success, or a failure of
//!   any kind including a lost lease) are kept. When the window is full and more than
//!   `threshold_pct` of them failed, the breaker opens: the queue is not leased. After
//!   `cooldown_ms` a Tick makes it half-open: one job (the probe) may be leased. The probe's
//!   success closes it (and clears the window); its failure opens it again. Every transition is
//!   kept (the newest `BREAKER_TRANSITIONS_KEPT`) with its time.
//! - **Rate limit**: a token bucket of `count` tokens refilled at `count` per `per_ms`; each
//!   lease takes one. When it is empty and jobs wait, a Tick at the time the next token arrives
//!   refills it, so waiting workers wake without polling.
//! - **Concurrency**: at most `concurrency` jobs of the queue leased at once.
//!
//! Why off by default: a breaker that trips on its own would stop a batch queue whose jobs
//! fail for their own reasons; the user who wants one names its threshold.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{in_range, invalid, Ctx, Rejection, Response};
use super::job::{validate_queue_name, JobId};
use super::limits;

/// The queue controls subsystem: paused queues, and per-queue policies with their state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controls {
    /// Paused queues.
    paused: BTreeSet<String>,
    /// Queue policies (rate, concurrency, breaker) and their state.
    policies: BTreeMap<String, QueueControl>,
}

/// Token bucket parameters: `count` leases per `per_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Tokens per period (also the burst).
    pub count: u32,
    /// Period in ms.
    pub per_ms: u64,
}

/// Breaker parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Opens when more than this share (percent) of the window failed.
    pub threshold_pct: u32,
    /// Outcomes kept.
    pub window: u32,
    /// Open this long before a probe.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold_pct: 50,
            window: 10,
            cooldown_ms: 30_000,
        }
    }
}

/// A queue's limits, as set by an operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePolicy {
    /// Rate limit.
    pub rate: Option<Rate>,
    /// Most leased jobs at once.
    pub concurrency: Option<u32>,
    /// Circuit breaker.
    pub breaker: Option<BreakerConfig>,
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BreakerState {
    /// Leasing normally.
    Closed,
    /// Not leasing until `until_ms`.
    Open {
        /// When it becomes half-open.
        until_ms: u64,
    },
    /// One probe may be leased.
    HalfOpen,
}

impl BreakerState {
    /// Lower-case name used in the API and CLI.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A queue's policy and the state it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueControl {
    /// The limits.
    pub policy: QueuePolicy,
    /// Tokens in the bucket, in millionths.
    pub tokens_micro: u64,
    /// When the bucket was last refilled.
    pub refilled_ms: u64,
    /// The newest outcomes, oldest first (true = success), at most the window.
    pub outcomes: Vec<bool>,
    /// Breaker state.
    pub breaker: BreakerState,
    /// The half-open probe, while it runs.
    pub probe: Option<JobId>,
    /// Breaker transitions: (time, new state), newest last.
    pub transitions: Vec<(u64, BreakerState)>,
}

const MICRO: u64 = 1_000_000;

impl QueueControl {
    fn bucket_max(&self) -> u64 {
        self.policy.rate.map_or(0, |r| u64::from(r.count) * MICRO)
    }

    /// Tokens (in millionths) the bucket holds at `now`.
    fn tokens_at(&self, now: u64) -> u64 {
        let Some(rate) = self.policy.rate else {
            return 0;
        };
        let elapsed = now.saturating_sub(self.refilled_ms);
        let add = u128::from(elapsed) * u128::from(rate.count) * u128::from(MICRO)
            / u128::from(rate.per_ms.max(1));
        (u128::from(self.tokens_micro) + add).min(u128::from(self.bucket_max())) as u64
    }

    /// Refills the bucket to `now`.
    fn refill(&mut self, now: u64) {
        self.tokens_micro = self.tokens_at(now);
        self.refilled_ms = now;
    }

    /// When the next whole token is there, if the bucket lacks one.
    fn token_due(&self) -> Option<u64> {
        let rate = self.policy.rate?;
        if self.tokens_micro >= MICRO {
            return None;
        }
        let missing = u128::from(MICRO - self.tokens_micro);
        let per_micro = u128::from(rate.count) * u128::from(MICRO);
        let wait = (missing * u128::from(rate.per_ms.max(1))).div_ceil(per_micro);
        Some(self.refilled_ms.saturating_add(wait as u64))
    }

    fn transition(&mut self, now: u64, to: BreakerState) {
        self.breaker = to;
        self.transitions.push((now, to));
        if self.transitions.len() > limits::BREAKER_TRANSITIONS_KEPT {
            self.transitions.remove(0);
        }
    }
}

impl QueuePolicy {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), Response> {
        if let Some(r) = self.rate {
            if !(1..=limits::RATE_COUNT_MAX).contains(&r.count) {
                return Err(invalid(
                    "rate",
                    format!("count {} must be 1..={}", r.count, limits::RATE_COUNT_MAX),
                ));
            }
            if !(1_000..=limits::RATE_PERIOD_MS_MAX).contains(&r.per_ms) {
                return Err(invalid(
                    "rate",
                    format!(
                        "period {} ms must be 1000..={} (a second to a day)",
                        r.per_ms,
                        limits::RATE_PERIOD_MS_MAX
                    ),
                ));
            }
        }
        if let Some(c) = self.concurrency {
            in_range(
                "concurrency",
                c.into(),
                1,
                limits::QUEUE_CONCURRENCY_MAX.into(),
            )
            .map_err(Response::Rejected)?;
        }
        if let Some(b) = self.breaker {
            if !(1..=99).contains(&b.threshold_pct) {
                return Err(invalid(
                    "breaker",
                    format!("threshold {}% must be 1..=99", b.threshold_pct),
                ));
            }
            if !(1..=limits::BREAKER_WINDOW_MAX).contains(&b.window) {
                return Err(invalid(
                    "breaker",
                    format!(
                        "window {} must be 1..={}",
                        b.window,
                        limits::BREAKER_WINDOW_MAX
                    ),
                ));
            }
            if !(1_000..=limits::BREAKER_COOLDOWN_MS_MAX).contains(&b.cooldown_ms) {
                return Err(invalid(
                    "breaker",
                    format!(
                        "cooldown {} ms must be 1000..={}",
                        b.cooldown_ms,
                        limits::BREAKER_COOLDOWN_MS_MAX
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Controls {
    /// A queue's policy and its state, if it has one.
    pub fn policy(&self, queue: &str) -> Option<&QueueControl> {
        self.policies.get(queue)
    }

    /// Whether any queue has a policy.
    pub fn has_policies(&self) -> bool {
        !self.policies.is_empty()
    }

    /// Whether a queue is paused.
    pub fn is_paused(&self, queue: &str) -> bool {
        self.paused.contains(queue)
    }

    /// Paused queues, in name order.
    pub fn paused(&self) -> impl Iterator<Item = &String> + '_ {
        self.paused.iter()
    }

    /// Pauses or resumes a queue (checked by the machine).
    pub(super) fn set_paused(&mut self, queue: &str, paused: bool) {
        if paused {
            self.paused.insert(queue.to_string());
        } else {
            self.paused.remove(queue);
        }
    }

    /// Sets (or, with the default policy, removes) a queue's policy.
    pub(super) fn set_policy(&mut self, ctx: Ctx, queue: &str, policy: &QueuePolicy) -> Response {
        if let Err(r) = validate_queue_name("queue", queue) {
            return Response::Rejected(r);
        }
        if let Err(r) = policy.validate() {
            return r;
        }
        let now = ctx.now_ms;
        if *policy == QueuePolicy::default() {
            self.policies.remove(queue);
            return Response::Ok;
        }
        if !self.policies.contains_key(queue) && self.policies.len() >= limits::QUEUES_MAX {
            return Response::Rejected(Rejection::Exhausted {
                message: format!("{} queues have policies, the limit", limits::QUEUES_MAX),
            });
        }
        let control = self
            .policies
            .entry(queue.to_string())
            .or_insert_with(|| QueueControl {
                policy: QueuePolicy::default(),
                tokens_micro: 0,
                refilled_ms: now,
                outcomes: Vec::new(),
                breaker: BreakerState::Closed,
                probe: None,
                transitions: Vec::new(),
            });
        let fresh_rate = control.policy.rate != policy.rate;
        control.policy = *policy;
        if fresh_rate {
            // A new rate starts with a full bucket.
            control.tokens_micro = control.bucket_max();
            control.refilled_ms = now;
        }
        if policy.breaker.is_none() && control.breaker != BreakerState::Closed {
            control.transition(now, BreakerState::Closed);
            control.probe = None;
        }
        if let Some(b) = policy.breaker {
            let keep = control.outcomes.len().saturating_sub(b.window as usize);
            control.outcomes.drain(..keep);
        }
        Response::Ok
    }

    /// Whether the queue's policy lets one more job be leased now, given how many of its jobs
    /// are leased and whether a job is leased (for the half-open probe).
    pub(super) fn open(
        &self,
        ctx: Ctx,
        queue: &str,
        leased: u64,
        is_leased: impl Fn(JobId) -> bool,
    ) -> bool {
        self.closed_by(ctx, queue, leased, is_leased).is_none()
    }

    /// Which part of the queue's policy refuses one more lease now, if any: `concurrency`,
    /// `breaker` (open, or half-open with its probe out) or `rate` (no token).
    pub(super) fn closed_by(
        &self,
        ctx: Ctx,
        queue: &str,
        leased: u64,
        is_leased: impl Fn(JobId) -> bool,
    ) -> Option<&'static str> {
        let c = self.policies.get(queue)?;
        if let Some(limit) = c.policy.concurrency {
            if leased >= u64::from(limit) {
                return Some("concurrency");
            }
        }
        match c.breaker {
            BreakerState::Open { .. } => return Some("breaker"),
            BreakerState::HalfOpen => {
                if c.probe.is_some_and(is_leased) {
                    return Some("breaker");
                }
            }
            BreakerState::Closed => {}
        }
        if c.policy.rate.is_some() && c.tokens_at(ctx.now_ms) < MICRO {
            return Some("rate");
        }
        None
    }

    /// A job of `queue` was leased: take a token, mark the probe.
    pub(super) fn leased(&mut self, ctx: Ctx, queue: &str, id: JobId) {
        let Some(c) = self.policies.get_mut(queue) else {
            return;
        };
        if c.policy.rate.is_some() {
            c.refill(ctx.now_ms);
            c.tokens_micro = c.tokens_micro.saturating_sub(MICRO);
        }
        if c.breaker == BreakerState::HalfOpen {
            c.probe = Some(id);
        }
    }

    /// An attempt of a job of `queue` ended with success (`ok`) or a failure.
    pub(super) fn outcome(&mut self, ctx: Ctx, queue: &str, id: JobId, ok: bool) {
        let now = ctx.now_ms;
        let Some(c) = self.policies.get_mut(queue) else {
            return;
        };
        let Some(b) = c.policy.breaker else {
            return;
        };
        match c.breaker {
            BreakerState::HalfOpen if c.probe == Some(id) => {
                c.probe = None;
                c.outcomes.clear();
                if ok {
                    c.transition(now, BreakerState::Closed);
                } else {
                    let until_ms = now.saturating_add(b.cooldown_ms);
                    c.transition(now, BreakerState::Open { until_ms });
                }
            }
            BreakerState::Closed => {
                c.outcomes.push(ok);
                if c.outcomes.len() > b.window as usize {
                    c.outcomes.remove(0);
                }
                let failed = c.outcomes.iter().filter(|o| !**o).count() as u64;
                let full = c.outcomes.len() == b.window as usize;
                if full && failed * 100 > u64::from(b.threshold_pct) * u64::from(b.window) {
                    let until_ms = now.saturating_add(b.cooldown_ms);
                    c.transition(now, BreakerState::Open { until_ms });
                }
            }
            // Late outcomes of jobs leased before the breaker opened.
            _ => {}
        }
    }

    /// The earliest time a queue control has work for a Tick: an open breaker's cooldown
    /// ending, or a token arriving for a queue with ready jobs (`has_ready`) and an empty
    /// bucket.
    pub(super) fn next_due(&self, has_ready: impl Fn(&str) -> bool) -> Option<u64> {
        self.policies
            .iter()
            .filter_map(|(queue, c)| {
                let cooldown = match c.breaker {
                    BreakerState::Open { until_ms } => Some(until_ms),
                    _ => None,
                };
                let token = if has_ready(queue) {
                    c.token_due()
                } else {
                    None
                };
                [cooldown, token].into_iter().flatten().min()
            })
            .min()
    }

    /// Does the due control work of a Tick (at most one item); returns whether it did any.
    pub(super) fn tick_one(&mut self, ctx: Ctx, has_ready: impl Fn(&str) -> bool) -> bool {
        let now = ctx.now_ms;
        let due = self.policies.iter().find_map(|(queue, c)| {
            let open_due = matches!(c.breaker, BreakerState::Open { until_ms } if until_ms <= now);
            let token_due = has_ready(queue) && c.token_due().is_some_and(|t| t <= now);
            (open_due || token_due).then(|| (queue.clone(), open_due))
        });
        let Some((queue, open_due)) = due else {
            return false;
        };
        let c = self.policies.get_mut(&queue).expect("found");
        if open_due {
            c.transition(now, BreakerState::HalfOpen);
            c.probe = None;
        } else {
            c.refill(now);
        }
        true
    }

    /// Panics if a control's state is out of its bounds.
    pub fn check_invariants(&self) {
        for (queue, c) in &self.policies {
            if let Some(b) = c.policy.breaker {
                assert!(
                    c.outcomes.len() <= b.window as usize,
                    "queue {queue}: breaker window overfull"
                );
            }
            assert!(
                c.transitions.len() <= limits::BREAKER_TRANSITIONS_KEPT,
                "queue {queue}: transitions kept"
            );
            assert!(
                c.tokens_micro <= c.bucket_max(),
                "queue {queue}: bucket overfull"
            );
        }
        assert!(self.policies.len() <= limits::QUEUES_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now_ms: u64) -> Ctx {
        Ctx::at(now_ms)
    }

    /// The subsystem alone, without a machine: a token bucket of 2 per second lets two leases
    /// through, then refuses until the next token is due, which `next_due` names when jobs
    /// wait; a Tick at that time refills it.
    #[test]
    fn token_bucket_refills_on_state_machine_time() {
        let mut c = Controls::default();
        let policy = QueuePolicy {
            rate: Some(Rate {
                count: 2,
                per_ms: 1_000,
            }),
            ..QueuePolicy::default()
        };
        assert_eq!(c.set_policy(ctx(0), "q", &policy), Response::Ok);
        let open = |c: &Controls, now| c.open(ctx(now), "q", 0, |_| false);
        for id in 1..=2 {
            assert!(open(&c, 0), "token {id}");
            c.leased(ctx(0), "q", id);
        }
        assert!(!open(&c, 0), "bucket empty");
        assert_eq!(c.next_due(|_| true), Some(500), "the next token");
        assert_eq!(c.next_due(|_| false), None, "no job waits: nothing due");
        assert!(!c.tick_one(ctx(499), |_| true), "not due yet");
        assert!(c.tick_one(ctx(500), |_| true));
        assert!(open(&c, 500));
        c.check_invariants();
    }

    /// The breaker opens above its threshold over a full window, goes half-open after its
    /// cooldown, lets one probe through, and closes on the probe's success.
    #[test]
    fn breaker_opens_probes_and_closes() {
        let mut c = Controls::default();
        let breaker = BreakerConfig {
            threshold_pct: 50,
            window: 4,
            cooldown_ms: 1_000,
        };
        let policy = QueuePolicy {
            breaker: Some(breaker),
            ..QueuePolicy::default()
        };
        c.set_policy(ctx(0), "q", &policy);
        for (id, ok) in [(1, true), (2, false), (3, false), (4, false)] {
            c.outcome(ctx(10), "q", id, ok);
        }
        assert_eq!(
            c.policy("q").unwrap().breaker,
            BreakerState::Open { until_ms: 1_010 }
        );
        assert!(!c.open(ctx(10), "q", 0, |_| false));
        assert!(c.tick_one(ctx(1_010), |_| false));
        assert_eq!(c.policy("q").unwrap().breaker, BreakerState::HalfOpen);
        assert!(c.open(ctx(1_010), "q", 0, |_| false), "one probe");
        c.leased(ctx(1_010), "q", 9);
        assert!(!c.open(ctx(1_010), "q", 1, |id| id == 9), "probe running");
        c.outcome(ctx(1_020), "q", 9, true);
        assert_eq!(c.policy("q").unwrap().breaker, BreakerState::Closed);
        c.check_invariants();
    }

    /// A concurrency limit counts the queue's leased jobs; a bad policy names its field.
    #[test]
    fn concurrency_and_bad_policy() {
        let mut c = Controls::default();
        let policy = QueuePolicy {
            concurrency: Some(2),
            ..QueuePolicy::default()
        };
        c.set_policy(ctx(0), "q", &policy);
        assert!(c.open(ctx(0), "q", 1, |_| false));
        assert!(!c.open(ctx(0), "q", 2, |_| false));
        let bad = QueuePolicy {
            concurrency: Some(0),
            ..QueuePolicy::default()
        };
        assert!(matches!(
            c.set_policy(ctx(0), "q", &bad),
            Response::Rejected(Rejection::Invalid { field, .. }) if field == "concurrency"
        ));
    }
}
