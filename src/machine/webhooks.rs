//! Webhooks: a replicated outbox of HTTP deliveries, so a leader change loses none.
//!
//! A webhook is a URL, the topics it wants and a signing secret. When something happens that a
//! webhook subscribes to (a job or workflow ends, an event is emitted, a queue's breaker opens,
//! a job misses its deadline, a schedule's ticks are skipped), the apply that made it happen
//! also puts one [`Delivery`] per subscribed webhook in the outbox: its id (cluster-wide,
//! increasing), the topic and the JSON body, built here so every replica holds the same bytes.
//!
//! The leader's deliverer (`node/webhooks.rs`) POSTs each pending delivery when it is due and
//! proposes the outcome ([`Webhooks::attempt`]): delivered, or failed and due again after a
//! backoff, or failed for good after the webhook's attempts. A leader that dies after a POST
//! and before its outcome committed leaves the delivery pending, so the next leader sends it
//! again with the same delivery id: at least once, and the id lets a receiver drop the
//! duplicate. An outcome names the attempt it reports, so one from a deposed leader that
//! arrives late changes nothing.
//!
//! Topics: `job.succeeded|dead|cancelled`, `workflow.succeeded|failed|cancelled`,
//! `breaker.opened`, `sla.missed`, `schedule.missed`, any topic given to `emit`, and `*` for
//! every one of them. `webhook test` queues a `webhook.test` delivery to one webhook.
//!
//! Bounds: `WEBHOOKS_MAX` webhooks, `WEBHOOK_PENDING_MAX` pending deliveries over all of them
//! (an event that finds the outbox full is counted in the webhook's `dropped`, not queued), and
//! the last `WEBHOOK_LOG_MAX` ended deliveries per webhook.
//!
//! Invariants: every pending delivery is in the due index once, at its `next_ms`, and belongs
//! to a webhook; every ended one is in its webhook's log, which holds no more than
//! `WEBHOOK_LOG_MAX`; ids are below the next id.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::command::{exhausted, invalid, precondition, Ctx, Response};
use super::job::{tail, validate_name};
use super::limits;

/// Cluster-assigned webhook id.
pub type WebhookId = u64;
/// Cluster-assigned delivery id: what a receiver deduplicates on.
pub type DeliveryId = u64;

/// Topics the cluster emits itself, besides those given to `emit`.
pub const SYSTEM_TOPICS: [&str; 11] = [
    "node.down",
    "node.up",
    "job.succeeded",
    "job.dead",
    "job.cancelled",
    "workflow.succeeded",
    "workflow.failed",
    "workflow.cancelled",
    "breaker.opened",
    "sla.missed",
    "schedule.missed",
];

/// The topic of `webhook test` deliveries.
pub const TEST_TOPIC: &str = "webhook.test";

/// Webhooks and their outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhooks {
    next_id: WebhookId,
    next_delivery: DeliveryId,
    hooks: BTreeMap<WebhookId, Webhook>,
    deliveries: BTreeMap<DeliveryId, Delivery>,
    /// Pending deliveries by (due time, id).
    due: BTreeSet<(u64, DeliveryId)>,
    /// Ended deliveries per webhook, oldest first.
    log: BTreeMap<WebhookId, VecDeque<DeliveryId>>,
}

/// A subscription: where to POST which topics, signed with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// `http://` or `https://` URL the deliveries are POSTed to.
    pub url: String,
    /// Topics, or `*`.
    pub topics: Vec<String>,
    /// HMAC-SHA256 key of the signature header. Held in the replicated state (every leader
    /// signs), shown only once, when the webhook is created.
    pub secret: String,
    /// Attempts per delivery.
    pub max_attempts: u32,
    /// State-machine time of creation.
    pub created_ms: u64,
    /// Deliveries that reached the receiver.
    pub delivered: u64,
    /// Deliveries that failed every attempt.
    pub failed: u64,
    /// Events not queued because the outbox was full.
    pub dropped: u64,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting for its next attempt at `next_ms`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryState {
    /// Lower-case name, as the API and CLI print it.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One event on its way to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id, the same on every attempt.
    pub id: DeliveryId,
    /// The webhook.
    pub hook: WebhookId,
    /// The event's topic.
    pub topic: String,
    /// The JSON body POSTed.
    pub body: String,
    /// State-machine time the event happened.
    pub created_ms: u64,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending), or when it ended.
    pub next_ms: u64,
    /// HTTP status of the last attempt (0: no answer).
    pub last_status: u32,
    /// Why the last attempt failed, if it did.
    pub last_error: String,
}

/// What the deliverer needs to make one attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery (body, id, attempts so far).
    pub delivery: Delivery,
    /// Where to POST it.
    pub url: String,
    /// What to sign it with.
    pub secret: String,
}

/// The outcome of one attempt, as the deliverer proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptOutcome {
    /// The delivery.
    pub delivery: DeliveryId,
    /// The attempt this reports (1 for the first): an outcome for any other is stale.
    pub attempt: u32,
    /// HTTP status (0: no answer).
    pub status: u32,
    /// Empty on a 2xx; otherwise why it failed.
    pub error: String,
}

impl Webhooks {
    /// No webhooks; ids start at 1.
    pub fn new() -> Webhooks {
        Webhooks {
            next_id: 1,
            next_delivery: 1,
            ..Webhooks::default()
        }
    }

    /// Whether no webhook exists.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Webhooks in id order.
    pub fn hooks(&self) -> impl Iterator<Item = &Webhook> {
        self.hooks.values()
    }

    /// A webhook by id.
    pub fn hook(&self, id: WebhookId) -> Option<&Webhook> {
        self.hooks.get(&id)
    }

    /// A webhook's deliveries: pending ones, then its log, newest first, at most `limit`.
    pub fn deliveries_of(&self, id: WebhookId, limit: usize) -> Vec<&Delivery> {
        let pending = self
            .due
            .iter()
            .filter_map(|(_, d)| self.deliveries.get(d))
            .filter(|d| d.hook == id);
        let ended = self
            .log
            .get(&id)
            .into_iter()
            .flat_map(|log| log.iter().rev())
            .filter_map(|d| self.deliveries.get(d));
        pending.chain(ended).take(limit).collect()
    }

    /// Pending deliveries of one webhook.
    pub fn pending_of(&self, id: WebhookId) -> u64 {
        self.due
            .iter()
            .filter(|(_, d)| self.deliveries[d].hook == id)
            .count() as u64
    }

    /// Deliveries due by `now_ms` (oldest due first), skipping those `busy` holds, at most
    /// `limit`; and the earliest due time of the rest, if any.
    pub fn due(
        &self,
        now_ms: u64,
        busy: &BTreeSet<DeliveryId>,
        limit: usize,
    ) -> (Vec<DueDelivery>, Option<u64>) {
        let mut out = Vec::new();
        let mut next = None;
        for &(at, id) in &self.due {
            if busy.contains(&id) {
                continue;
            }
            if at > now_ms || out.len() >= limit {
                next = Some(at);
                break;
            }
            let delivery = &self.deliveries[&id];
            let hook = &self.hooks[&delivery.hook];
            out.push(DueDelivery {
                delivery: delivery.clone(),
                url: hook.url.clone(),
                secret: hook.secret.clone(),
            });
        }
        (out, next)
    }

    /// Pending deliveries, over every webhook.
    pub fn pending(&self) -> usize {
        self.due.len()
    }

    /// Checks a webhook's fields (also done at the API's edge, before anything is proposed).
    pub fn check(
        url: &str,
        topics: &[String],
        secret: &str,
        max_attempts: u32,
    ) -> Result<(), Response> {
        check_url(url)?;
        if topics.is_empty() {
            return Err(invalid("topics", "must name at least one topic (or *)"));
        }
        if topics.len() > limits::WEBHOOK_TOPICS_MAX {
            return Err(invalid(
                "topics",
                format!(
                    "has {} entries, the limit is {}",
                    topics.len(),
                    limits::WEBHOOK_TOPICS_MAX
                ),
            ));
        }
        for (i, t) in topics.iter().enumerate() {
            if t != "*" {
                validate_name(&format!("topics[{i}]"), t, limits::TOPIC_BYTES_MAX)
                    .map_err(Response::Rejected)?;
                if (t.starts_with("job.") || t.starts_with("workflow."))
                    && !SYSTEM_TOPICS.contains(&t.as_str())
                {
                    return Err(invalid(
                        &format!("topics[{i}]"),
                        format!(
                            "{t} is not a topic the cluster emits; those are {SYSTEM_TOPICS:?}"
                        ),
                    ));
                }
            }
        }
        let (min, max) = (
            limits::WEBHOOK_SECRET_BYTES_MIN,
            limits::WEBHOOK_SECRET_BYTES_MAX,
        );
        if secret.len() < min || secret.len() > max {
            return Err(invalid(
                "secret",
                format!("is {} bytes, must be {min}..={max}", secret.len()),
            ));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("secret", "must be printable ASCII without spaces"));
        }
        if !(1..=limits::WEBHOOK_ATTEMPTS_MAX).contains(&max_attempts) {
            return Err(invalid(
                "max_attempts",
                format!(
                    "is {max_attempts}, must be 1..={}",
                    limits::WEBHOOK_ATTEMPTS_MAX
                ),
            ));
        }
        Ok(())
    }

    /// Creates a webhook.
    pub(super) fn create(
        &mut self,
        ctx: Ctx,
        url: &str,
        topics: &[String],
        secret: &str,
        max_attempts: u32,
    ) -> Response {
        if let Err(r) = Webhooks::check(url, topics, secret, max_attempts) {
            return r;
        }
        if self.hooks.len() >= limits::WEBHOOKS_MAX {
            return exhausted(format!(
                "{} webhooks exist, the limit (WEBHOOKS_MAX)",
                limits::WEBHOOKS_MAX
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        self.hooks.insert(
            id,
            Webhook {
                id,
                url: url.to_string(),
                topics,
                secret: secret.to_string(),
                max_attempts,
                created_ms: ctx.now_ms,
                delivered: 0,
                failed: 0,
                dropped: 0,
            },
        );
        Response::WebhookCreated { id }
    }

    /// Deletes a webhook with its pending deliveries and its log.
    pub(super) fn delete(&mut self, id: WebhookId) -> Response {
        if self.hooks.remove(&id).is_none() {
            return missing(id);
        }
        let gone: Vec<(u64, DeliveryId)> = self
            .due
            .iter()
            .filter(|(_, d)| self.deliveries[d].hook == id)
            .copied()
            .collect();
        for key in gone {
            self.due.remove(&key);
            self.deliveries.remove(&key.1);
        }
        for d in self.log.remove(&id).unwrap_or_default() {
            self.deliveries.remove(&d);
        }
        Response::Ok
    }

    /// Queues a `webhook.test` delivery to one webhook.
    pub(super) fn test(&mut self, ctx: Ctx, id: WebhookId) -> Response {
        if !self.hooks.contains_key(&id) {
            return missing(id);
        }
        if self.due.len() >= limits::WEBHOOK_PENDING_MAX {
            return exhausted(format!(
                "{} deliveries are pending, the limit (WEBHOOK_PENDING_MAX)",
                limits::WEBHOOK_PENDING_MAX
            ));
        }
        let data = serde_json::json!({ "webhook_id": id });
        let delivery = self.enqueue(ctx, id, TEST_TOPIC, &data);
        Response::WebhookQueued { delivery }
    }

    /// Whether some webhook wants `topic` (so callers build the event's data only then).
    pub fn wants(&self, topic: &str) -> bool {
        self.hooks.values().any(|h| subscribed(h, topic))
    }

    /// Queues one delivery of an event per webhook subscribed to `topic`.
    pub(super) fn notify(&mut self, ctx: Ctx, topic: &str, data: &serde_json::Value) {
        let hooks: Vec<WebhookId> = self
            .hooks
            .values()
            .filter(|h| subscribed(h, topic))
            .map(|h| h.id)
            .collect();
        for id in hooks {
            if self.due.len() >= limits::WEBHOOK_PENDING_MAX {
                self.hooks.get_mut(&id).expect("hook").dropped += 1;
                continue;
            }
            self.enqueue(ctx, id, topic, data);
        }
    }

    fn enqueue(
        &mut self,
        ctx: Ctx,
        hook: WebhookId,
        topic: &str,
        data: &serde_json::Value,
    ) -> DeliveryId {
        let id = self.next_delivery;
        self.next_delivery += 1;
        let body = serde_json::json!({
            "id": id.to_string(),
            "topic": topic,
            "created_ms": ctx.now_ms,
            "data": data,
        })
        .to_string();
        self.deliveries.insert(
            id,
            Delivery {
                id,
                hook,
                topic: topic.to_string(),
                body,
                created_ms: ctx.now_ms,
                state: DeliveryState::Pending,
                attempts: 0,
                next_ms: ctx.now_ms,
                last_status: 0,
                last_error: String::new(),
            },
        );
        self.due.insert((ctx.now_ms, id));
        id
    }

    /// Records the outcome of an attempt: delivered on a 2xx, otherwise due again after a
    /// backoff, or failed once the webhook's attempts are used. An outcome for an attempt
    /// other than the next one, or for a delivery no longer pending, is stale and changes
    /// nothing.
    pub(super) fn attempt(&mut self, ctx: Ctx, outcome: &AttemptOutcome) -> Response {
        let Some(d) = self.deliveries.get(&outcome.delivery) else {
            return precondition(format!("delivery {} is gone", outcome.delivery));
        };
        if d.state != DeliveryState::Pending || d.attempts + 1 != outcome.attempt {
            return precondition(format!(
                "delivery {} is {} after {} attempts; this outcome is for attempt {}",
                d.id,
                d.state.name(),
                d.attempts,
                outcome.attempt
            ));
        }
        let max_attempts = self.hooks[&d.hook].max_attempts;
        let d = self.deliveries.get_mut(&outcome.delivery).expect("found");
        self.due.remove(&(d.next_ms, d.id));
        d.attempts = outcome.attempt;
        d.last_status = outcome.status;
        d.last_error = tail(&outcome.error, limits::WEBHOOK_ERROR_BYTES_MAX);
        let ok = (200..300).contains(&outcome.status) && outcome.error.is_empty();
        let hook = self.hooks.get_mut(&d.hook).expect("hook");
        if ok || d.attempts >= max_attempts {
            d.state = if ok {
                hook.delivered += 1;
                DeliveryState::Delivered
            } else {
                hook.failed += 1;
                DeliveryState::Failed
            };
            d.next_ms = ctx.now_ms;
            let (hook, id) = (d.hook, d.id);
            let log = self.log.entry(hook).or_default();
            log.push_back(id);
            while log.len() > limits::WEBHOOK_LOG_MAX {
                let old = log.pop_front().expect("longer than the limit");
                self.deliveries.remove(&old);
            }
        } else {
            d.next_ms = ctx.now_ms.saturating_add(backoff_ms(d.attempts));
            self.due.insert((d.next_ms, d.id));
        }
        Response::Ok
    }

    /// Panics if an invariant of the module doc is broken.
    pub fn check_invariants(&self) {
        assert!(self.hooks.len() <= limits::WEBHOOKS_MAX);
        for (&(at, id), d) in self.due.iter().map(|k| (k, &self.deliveries[&k.1])) {
            assert_eq!(d.state, DeliveryState::Pending, "delivery {id}");
            assert_eq!(d.next_ms, at, "delivery {id} due time");
            assert!(
                self.hooks.contains_key(&d.hook),
                "delivery {id} of no webhook"
            );
        }
        let logged: usize = self.log.values().map(VecDeque::len).sum();
        assert_eq!(self.due.len() + logged, self.deliveries.len());
        for (hook, log) in &self.log {
            assert!(log.len() <= limits::WEBHOOK_LOG_MAX);
            for id in log {
                let d = &self.deliveries[id];
                assert_eq!(d.hook, *hook);
                assert_ne!(d.state, DeliveryState::Pending, "delivery {id} in the log");
            }
        }
        assert!(self.deliveries.keys().all(|id| *id < self.next_delivery));
        assert!(self.hooks.keys().all(|id| *id < self.next_id));
    }
}

/// Wait after failed attempt `n` (1 for the first): 1 s, 5 s, 25 s, ... up to 5 min.
pub fn backoff_ms(n: u32) -> u64 {
    let mut wait = limits::WEBHOOK_BACKOFF_MS;
    for _ in 1..n {
        wait = wait.saturating_mul(5);
    }
    wait.min(limits::WEBHOOK_BACKOFF_MS_MAX)
}

fn subscribed(hook: &Webhook, topic: &str) -> bool {
    hook.topics.iter().any(|t| t == "*" || t == topic)
}

fn missing(id: WebhookId) -> Response {
    Response::Rejected(super::Rejection::Missing {
        what: format!("webhook {id}"),
    })
}

/// A URL a webhook may POST to: `http://` or `https://`, a host, no spaces or user info.
fn check_url(url: &str) -> Result<(), Response> {
    if url.len() > limits::WEBHOOK_URL_BYTES_MAX {
        return Err(invalid(
            "url",
            format!(
                "is {} bytes, the limit is {}",
                url.len(),
                limits::WEBHOOK_URL_BYTES_MAX
            ),
        ));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid("url", format!("is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("url", "must start with http:// or https://"));
    }
    match uri.authority() {
        None => Err(invalid("url", "has no host")),
        Some(a) if a.as_str().contains('@') => {
            Err(invalid("url", "must not carry a user or password"))
        }
        Some(a) if a.host().is_empty() => Err(invalid("url", "has no host")),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks_with(topics: &[&str], attempts: u32) -> Webhooks {
        let mut w = Webhooks::new();
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let r = w.create(
            Ctx::at(1),
            "http://127.0.0.1:9/hook",
            &topics,
            "0123456789abcdef",
            attempts,
        );
        assert_eq!(r, Response::WebhookCreated { id: 1 });
        w
    }

    fn outcome(delivery: u64, attempt: u32, status: u32) -> AttemptOutcome {
        let error = if (200..300).contains(&status) {
            String::new()
        } else {
            format!("status {status}")
        };
        AttemptOutcome {
            delivery,
            attempt,
            status,
            error,
        }
    }

    /// An event reaches only subscribed webhooks; a failed attempt is due again after the
    /// backoff, a stale or repeated outcome changes nothing, and the last attempt fails it.
    #[test]
    fn deliveries_retry_then_fail_and_stale_outcomes_change_nothing() {
        let mut w = hooks_with(&["job.dead"], 2);
        w.notify(Ctx::at(10), "job.succeeded", &serde_json::json!({}));
        assert_eq!(w.pending(), 0);
        w.notify(Ctx::at(10), "job.dead", &serde_json::json!({"job_id": 7}));
        let (due, _) = w.due(10, &BTreeSet::new(), 10);
        assert_eq!(due.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&due[0].delivery.body).unwrap();
        assert_eq!(body["id"], "1");
        assert_eq!(body["data"]["job_id"], 7);
        assert_eq!(w.attempt(Ctx::at(20), &outcome(1, 1, 500)), Response::Ok);
        let before = w.clone();
        assert!(matches!(
            w.attempt(Ctx::at(21), &outcome(1, 1, 200)),
            Response::Rejected(_)
        ));
        assert_eq!(w, before);
        assert_eq!(w.due(20, &BTreeSet::new(), 10).1, Some(20 + backoff_ms(1)));
        assert_eq!(w.attempt(Ctx::at(2_000), &outcome(1, 2, 0)), Response::Ok);
        assert_eq!(w.pending(), 0);
        assert_eq!(w.hook(1).unwrap().failed, 1);
        assert_eq!(w.deliveries_of(1, 10)[0].state, DeliveryState::Failed);
        w.check_invariants();
    }

    /// A full outbox counts what it drops; the log keeps the newest ended deliveries.
    #[test]
    fn outbox_and_log_are_bounded() {
        let mut w = hooks_with(&["*"], 1);
        for i in 0..=limits::WEBHOOK_PENDING_MAX as u64 {
            w.notify(Ctx::at(i), "t", &serde_json::json!({}));
        }
        assert_eq!(w.pending(), limits::WEBHOOK_PENDING_MAX);
        assert_eq!(w.hook(1).unwrap().dropped, 1);
        for id in 1..=limits::WEBHOOK_PENDING_MAX as u64 {
            assert_eq!(w.attempt(Ctx::at(1), &outcome(id, 1, 204)), Response::Ok);
        }
        assert_eq!(
            w.deliveries_of(1, usize::MAX).len(),
            limits::WEBHOOK_LOG_MAX
        );
        assert_eq!(
            w.hook(1).unwrap().delivered,
            limits::WEBHOOK_PENDING_MAX as u64
        );
        w.check_invariants();
        assert_eq!(w.delete(1), Response::Ok);
        assert_eq!(w.deliveries_of(1, 10).len(), 0);
        w.check_invariants();
    }

    /// Bad fields are refused naming the field.
    #[test]
    fn bad_webhooks_are_refused() {
        let t = |s: &str| vec![s.to_string()];
        let field = |r: Result<(), Response>| match r {
            Err(Response::Rejected(super::super::Rejection::Invalid { field, .. })) => field,
            other => panic!("{other:?}"),
        };
        let ok = "0123456789abcdef";
        assert_eq!(field(Webhooks::check("ftp://x/", &t("*"), ok, 3)), "url");
        assert_eq!(
            field(Webhooks::check("http://u:p@x/", &t("*"), ok, 3)),
            "url"
        );
        assert_eq!(field(Webhooks::check("not a url", &t("*"), ok, 3)), "url");
        assert_eq!(field(Webhooks::check("http://x/", &[], ok, 3)), "topics");
        assert_eq!(
            field(Webhooks::check("http://x/", &t("job.x"), ok, 3)),
            "topics[0]"
        );
        assert_eq!(
            field(Webhooks::check("http://x/", &t("a b"), ok, 3)),
            "topics[0]"
        );
        assert_eq!(
            field(Webhooks::check("http://x/", &t("*"), "short", 3)),
            "secret"
        );
        assert_eq!(
            field(Webhooks::check("http://x/", &t("*"), ok, 0)),
            "max_attempts"
        );
        assert_eq!(
            field(Webhooks::check("http://x/", &t("*"), ok, 11)),
            "max_attempts"
        );
        assert!(Webhooks::check("https://x:8443/a?b=c", &t("job.dead"), ok, 3).is_ok());
    }
}
