//! Webhooks: create (the secret is made here when the caller gives none, and shown once),
//! list, delete, test, and a webhook's deliveries. Deliveries are made by the leader
//! (`node/webhooks.rs`).

use tonic::Status;

use super::ApiService;
use crate::error::Error;
use crate::machine::webhooks::{Delivery, Webhook};
use crate::machine::{limits, Command, Response as Applied};
use crate::proto::pb;

fn info(m: &crate::machine::Machine, w: &Webhook) -> pb::WebhookInfo {
    let pending = m.webhooks().pending_of(w.id);
    pb::WebhookInfo {
        id: w.id,
        url: w.url.clone(),
        topics: w.topics.clone(),
        max_attempts: w.max_attempts,
        created_ms: w.created_ms,
        delivered: w.delivered,
        failed: w.failed,
        dropped: w.dropped,
        pending,
    }
}

fn delivery(d: &Delivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: d.id,
        topic: d.topic.clone(),
        state: d.state.name().into(),
        attempts: d.attempts,
        created_ms: d.created_ms,
        next_ms: d.next_ms,
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        body: d.body.clone(),
    }
}

fn not_found(id: u64) -> Status {
    Error::NotFound(format!("webhook {id}")).into()
}

pub(super) async fn create_webhook(
    api: &ApiService,
    req: pb::CreateWebhookRequest,
) -> Result<pb::CreateWebhookResponse, Status> {
    let secret = if req.secret.is_empty() {
        crate::access::new_webhook_secret()?
    } else {
        req.secret
    };
    let max_attempts = match req.max_attempts {
        0 => limits::WEBHOOK_ATTEMPTS_DEFAULT,
        n => n,
    };
    let command = Command::CreateWebhook {
        url: req.url,
        topics: req.topics,
        secret: secret.clone(),
        max_attempts,
    };
    let id = propose_expect!(api, command, Applied::WebhookCreated { id } => id);
    api.replica.read_barrier().await?;
    let webhook = api
        .replica
        .read(|m| m.webhooks().hook(id).map(|w| info(m, w)))
        .ok_or_else(|| Error::Internal(format!("webhook {id} vanished")))?;
    Ok(pb::CreateWebhookResponse {
        webhook: Some(webhook),
        secret,
    })
}

pub(super) async fn list_webhooks(
    api: &ApiService,
    req: pb::ListWebhooksRequest,
) -> Result<pb::ListWebhooksResponse, Status> {
    api.read_barrier(req.stale).await?;
    let webhooks = api
        .replica
        .read(|m| m.webhooks().hooks().map(|w| info(m, w)).collect());
    Ok(pb::ListWebhooksResponse { webhooks })
}

pub(super) async fn delete_webhook(
    api: &ApiService,
    req: pb::WebhookRef,
) -> Result<pb::DeleteWebhookResponse, Status> {
    propose_expect!(api, Command::DeleteWebhook { id: req.id }, Applied::Ok => ());
    Ok(pb::DeleteWebhookResponse {})
}

pub(super) async fn test_webhook(
    api: &ApiService,
    req: pb::WebhookRef,
) -> Result<pb::TestWebhookResponse, Status> {
    let delivery_id = propose_expect!(api, Command::TestWebhook { id: req.id },
        Applied::WebhookQueued { delivery } => delivery);
    Ok(pb::TestWebhookResponse { delivery_id })
}

pub(super) async fn list_deliveries(
    api: &ApiService,
    req: pb::ListWebhookDeliveriesRequest,
) -> Result<pb::ListWebhookDeliveriesResponse, Status> {
    let max = limits::WEBHOOK_LOG_MAX as u64;
    if req.limit as u64 > max {
        return Err(Error::InvalidArgument {
            field: "limit".into(),
            message: format!("is {}, the limit is {max}", req.limit),
        }
        .into());
    }
    let limit = if req.limit == 0 {
        max
    } else {
        req.limit.into()
    };
    api.read_barrier(req.stale).await?;
    let id = req.id;
    api.replica
        .read(|m| {
            let w = m.webhooks();
            w.hook(id).map(|_| {
                w.deliveries_of(id, limit as usize)
                    .into_iter()
                    .map(delivery)
                    .collect()
            })
        })
        .map(|deliveries| pb::ListWebhookDeliveriesResponse { deliveries })
        .ok_or_else(|| not_found(id))
}
