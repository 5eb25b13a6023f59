//! `raftline webhook create|list|delete|test|deliveries`.

use clap::Subcommand;

use super::connect::client;
use crate::error::Result;
use crate::proto::pb;

/// `raftline webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookCmd {
    /// POST events of these topics to a URL (admin); prints the id and the signing secret once.
    Create {
        /// http:// or https:// URL.
        #[arg(long)]
        url: String,
        /// Topics, comma-separated: job.succeeded, job.dead, job.cancelled,
        /// workflow.succeeded, workflow.failed, workflow.cancelled, breaker.opened,
        /// sla.missed, schedule.missed, any emitted topic, or * for all.
        #[arg(long, value_delimiter = ',', required = true)]
        topics: Vec<String>,
        /// Signing secret (16 to 256 printable bytes); default a new random one.
        #[arg(long)]
        secret: Option<String>,
        /// Attempts per delivery, 1..=10.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every webhook, with its delivered, failed, pending and dropped counts.
    List {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Delete a webhook and its pending deliveries (admin).
    Delete {
        /// Webhook id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a `webhook.test` delivery; prints its delivery id.
    Test {
        /// Webhook id.
        id: u64,
        /// Print JSON: the webhook and the delivery id.
        #[arg(long)]
        json: bool,
    },
    /// A webhook's deliveries: pending first, then the last ended ones, newest first.
    Deliveries {
        /// Webhook id.
        id: u64,
        /// At most this many (1..=100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON lines (with each body).
        #[arg(long)]
        json: bool,
    },
}

fn webhook_json(w: &pb::WebhookInfo) -> serde_json::Value {
    serde_json::json!({
        "id": w.id, "url": w.url, "topics": w.topics, "max_attempts": w.max_attempts,
        "created_ms": w.created_ms, "delivered": w.delivered, "failed": w.failed,
        "pending": w.pending, "dropped": w.dropped,
    })
}

fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| ms.to_string(), |t| t.format("%H:%M:%S%.3f").to_string())
}

/// Runs `raftline webhook ...`.
pub async fn webhook(addr: &[String], command: WebhookCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        WebhookCmd::Create {
            url,
            topics,
            secret,
            max_attempts,
            json,
        } => {
            let reply = client
                .create_webhook(pb::CreateWebhookRequest {
                    url,
                    topics,
                    secret: secret.unwrap_or_default(),
                    max_attempts,
                })
                .await?;
            let w = reply.webhook.unwrap_or_default();
            if json {
                let mut value = webhook_json(&w);
                value["secret"] = reply.secret.into();
                println!("{value}");
            } else {
                println!("webhook {} -> {}", w.id, w.url);
                println!(
                    "secret {} (shown once: keep it to check signatures)",
                    reply.secret
                );
            }
        }
        WebhookCmd::List { json } => {
            for w in client.list_webhooks().await? {
                if json {
                    println!("{}", webhook_json(&w));
                } else {
                    println!(
                        "{:>4}  {}  topics={}  delivered={} failed={} pending={} dropped={}",
                        w.id,
                        w.url,
                        w.topics.join(","),
                        w.delivered,
                        w.failed,
                        w.pending,
                        w.dropped
                    );
                }
            }
        }
        WebhookCmd::Delete { id, json } => {
            client.delete_webhook(id).await?;
            if json {
                println!("{}", serde_json::json!({ "id": id, "state": "deleted" }));
            } else {
                println!("webhook {id} deleted");
            }
        }
        WebhookCmd::Test { id, json } => {
            let delivery = client.test_webhook(id).await?;
            if json {
                let v = serde_json::json!({ "webhook_id": id, "delivery_id": delivery });
                println!("{v}");
            } else {
                println!("delivery {delivery} queued (see `raftline webhook deliveries {id}`)");
            }
        }
        WebhookCmd::Deliveries { id, limit, json } => {
            for d in client.webhook_deliveries(id, limit).await? {
                if json {
                    let value = serde_json::json!({
                        "id": d.id, "topic": d.topic, "state": d.state, "attempts": d.attempts,
                        "created_ms": d.created_ms, "next_ms": d.next_ms,
                        "last_status": d.last_status, "last_error": d.last_error,
                        "body": d.body,
                    });
                    println!("{value}");
                } else {
                    let status = match d.last_status {
                        0 => "-".to_string(),
                        s => s.to_string(),
                    };
                    println!(
                        "{:>8}  {}  {:<18} {:<9} attempts={} status={} {}",
                        d.id,
                        time(d.created_ms),
                        d.topic,
                        d.state,
                        d.attempts,
                        status,
                        d.last_error
                    );
                }
            }
        }
    }
    Ok(())
}
