//! What the machine tells webhooks and triggers: the webhook commands, the data of each topic's
//! event, built only when some webhook or trigger wants the topic (no allocation on the hot
//! path otherwise), and the alerts (`alerts.rs`): `node.down`, `node.up`, `sla.missed`,
//! `breaker.opened`, `schedule.missed` start the triggers of their topic too, with the event's
//! data as JSON for payload.

use base64::Engine as _;
use serde_json::json;

use super::command::{Command, Response};
use super::controls::BreakerState;
use super::job::JobId;
use super::limits;
use super::workflow::WorkflowId;
use super::Machine;

impl Machine {
    /// Applies a webhook command (`webhooks.rs`).
    pub(super) fn webhook_command(&mut self, command: &Command) -> Response {
        let ctx = self.ctx();
        match command {
            Command::CreateWebhook {
                url,
                topics,
                secret,
                max_attempts,
            } => self
                .webhooks
                .create(ctx, url, topics, secret, *max_attempts),
            Command::DeleteWebhook { id } => self.webhooks.delete(*id),
            Command::TestWebhook { id } => self.webhooks.test(ctx, *id),
            Command::WebhookAttempt(outcome) => self.webhooks.attempt(ctx, outcome),
            Command::NodeHealth { node_id, down } => {
                self.node_health(*node_id, *down);
                Response::Ok
            }
            other => unreachable!("not a webhook command: {other:?}"),
        }
    }

    /// Webhooks and their outbox.
    pub fn webhooks(&self) -> &super::webhooks::Webhooks {
        &self.webhooks
    }

    /// A job reached a terminal state: `job.<state>` (and `sla.missed` is told separately).
    pub(super) fn notify_job(&mut self, topic: &str, id: JobId) {
        if !self.webhooks.wants(topic) {
            return;
        }
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        let data = json!({
            "job_id": job.id,
            "queue": job.spec.queue,
            "state": job.state.name(),
            "attempts": job.attempts_used,
            "tags": job.spec.tags,
            "error": job.error,
            "created_ms": job.created_ms,
            "finished_ms": job.finished_ms,
            "deadline_missed": job.deadline_missed,
            "workflow_id": job.step.map(|s| s.workflow),
        });
        let ctx = self.ctx();
        self.webhooks.notify(ctx, topic, &data);
    }

    /// A workflow reached a terminal state: `workflow.<state>`.
    pub(super) fn notify_workflow(&mut self, topic: &str, id: WorkflowId) {
        if !self.webhooks.wants(topic) {
            return;
        }
        let Some(w) = self.workflows.get(id) else {
            return;
        };
        let data = json!({
            "workflow_id": w.id,
            "name": w.spec.name,
            "state": w.state.name(),
            "created_ms": w.created_ms,
            "finished_ms": w.finished_ms,
        });
        let ctx = self.ctx();
        self.webhooks.notify(ctx, topic, &data);
    }

    /// An event was emitted (by a caller or a timer) and not deduplicated.
    pub(super) fn notify_event(&mut self, topic: &str, key: &str, payload: &[u8]) {
        if !self.webhooks.wants(topic) {
            return;
        }
        let carried = payload.len() <= limits::WEBHOOK_PAYLOAD_BYTES_MAX;
        let data = json!({
            "dedup_key": key,
            "payload_bytes": payload.len(),
            "payload": carried.then(|| base64::engine::general_purpose::STANDARD.encode(payload)),
        });
        let ctx = self.ctx();
        self.webhooks.notify(ctx, topic, &data);
    }

    /// A queue's breaker opened (`was` is its state before the attempt's outcome).
    pub(super) fn notify_breaker(&mut self, queue: &str, was: Option<BreakerState>) {
        let now = self.controls.policy(queue).map(|c| c.breaker);
        let opened = matches!(now, Some(BreakerState::Open { .. }))
            && !matches!(was, Some(BreakerState::Open { .. }));
        if !opened || !self.alert_wanted("breaker.opened") {
            return;
        }
        let until = match now {
            Some(BreakerState::Open { until_ms }) => until_ms,
            _ => 0,
        };
        let data = json!({ "queue": queue, "until_ms": until });
        let key = format!("breaker:{queue}:{}", self.now_ms);
        self.alert("breaker.opened", &key, &data, 0);
    }

    /// A job's deadline passed before it finished.
    pub(super) fn notify_sla(&mut self, id: JobId) {
        if !self.alert_wanted("sla.missed") {
            return;
        }
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        let data = json!({
            "job_id": job.id,
            "queue": job.spec.queue,
            "state": job.state.name(),
            "deadline_ms": job.spec.deadline_ms,
        });
        let depth = job.depth;
        self.alert("sla.missed", &format!("sla:{id}"), &data, depth);
    }

    /// Ticks of a schedule came due while no Tick could run and its catch-up policy skipped
    /// them.
    pub(super) fn notify_schedule_missed(
        &mut self,
        id: super::schedule::ScheduleId,
        missed: usize,
    ) {
        if missed == 0 || !self.alert_wanted("schedule.missed") {
            return;
        }
        let name = self.schedules.get(id).map(|s| s.spec.name.clone());
        let data = json!({ "schedule_id": id, "name": name, "missed": missed });
        let key = format!("schedule:{id}:{}", self.now_ms);
        self.alert("schedule.missed", &key, &data, 0);
    }

    /// Whether a webhook or a trigger wants an alert's topic.
    fn alert_wanted(&self, topic: &str) -> bool {
        self.webhooks.wants(topic) || self.events.has_topic(topic)
    }

    /// Raises an alert: a webhook delivery, and the topic's triggers started with the data as
    /// payload (`key` deduplicates it; `depth` bounds chains, as for transitions).
    fn alert(&mut self, topic: &str, key: &str, data: &serde_json::Value, depth: u8) {
        let ctx = self.ctx();
        self.webhooks.notify(ctx, topic, data);
        if depth < limits::TRIGGER_DEPTH_MAX && self.events.has_topic(topic) {
            self.fire_event(topic, key, data.to_string().as_bytes(), depth);
        }
    }

    /// A member's health as the leader sees it: `node.down` for a new outage, `node.up` when
    /// a down member answers again; nothing when the report changes nothing.
    fn node_health(&mut self, node: u64, down: bool) {
        let now = self.now_ms;
        let Some(since) = self.alerts.set(node, down, now) else {
            return;
        };
        let (topic, data) = if down {
            ("node.down", json!({ "node_id": node, "since_ms": since }))
        } else {
            let gone = now.saturating_sub(since);
            (
                "node.up",
                json!({ "node_id": node, "down_since_ms": since, "down_ms": gone }),
            )
        };
        if self.alert_wanted(topic) {
            self.alert(topic, &format!("node:{node}:{topic}:{since}"), &data, 0);
        }
    }

    /// Nodes the leader reported down, with the time of the report.
    pub fn nodes_down(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.alerts.down()
    }
}
