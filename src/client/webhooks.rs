//! Webhook calls of the client (`raftline webhook ...`).

use super::{fits, Client};
use crate::error::Result;
use crate::proto::pb;

impl Client {
    /// Creates a webhook (admin); the reply holds its secret, shown only here.
    pub async fn create_webhook(
        &self,
        req: pb::CreateWebhookRequest,
    ) -> Result<pb::CreateWebhookResponse> {
        fits(&req)?;
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.create_webhook(req).await }
        })
        .await
    }

    /// Every webhook.
    pub async fn list_webhooks(&self) -> Result<Vec<pb::WebhookInfo>> {
        self.call(true, |mut c| async move {
            c.list_webhooks(pb::ListWebhooksRequest { stale: false })
                .await
        })
        .await
        .map(|r| r.webhooks)
    }

    /// Deletes a webhook and its deliveries (admin).
    pub async fn delete_webhook(&self, id: u64) -> Result<()> {
        self.call(true, |mut c| async move {
            c.delete_webhook(pb::WebhookRef { id }).await
        })
        .await
        .map(|_| ())
    }

    /// Queues a `webhook.test` delivery; its delivery id.
    pub async fn test_webhook(&self, id: u64) -> Result<u64> {
        self.call(false, |mut c| async move {
            c.test_webhook(pb::WebhookRef { id }).await
        })
        .await
        .map(|r| r.delivery_id)
    }

    /// A webhook's deliveries: pending first, then the ended ones, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: u64,
        limit: u32,
    ) -> Result<Vec<pb::WebhookDelivery>> {
        self.call(true, |mut c| async move {
            c.list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
                id,
                limit,
                stale: false,
            })
            .await
        })
        .await
        .map(|r| r.deliveries)
    }
}
