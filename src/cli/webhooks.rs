//! `raftline webhook create|list|delete|test|deliveries`.

use clap::Subcommand;

use super::connect::client;
use super::table::{self, Table};
use super::view;
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
        /// Print JSON (one array).
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
        /// Print JSON (one array, with each body).
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

/// Prints a webhook's deliveries: a table, or one JSON array.
fn deliveries(list: &[pb::WebhookDelivery], json: bool) {
    if json {
        let list = list.iter().map(|d| {
            serde_json::json!({
                "id": d.id, "topic": d.topic, "state": d.state, "attempts": d.attempts,
                "created_ms": d.created_ms, "next_ms": d.next_ms,
                "last_status": d.last_status, "last_error": d.last_error,
                "body": d.body,
            })
        });
        view::print_array(list.collect());
        return;
    }
    let mut t = Table::new(&[
        "ID", "CREATED", "TOPIC", "STATE", "ATTEMPTS", "STATUS", "NEXT", "ERROR",
    ]);
    for d in list {
        let status = match d.last_status {
            0 => "-".to_string(),
            s => s.to_string(),
        };
        let state = t.state(&d.state);
        t.row(vec![
            table::num(d.id),
            table::text(table::time(d.created_ms)),
            table::text(&d.topic),
            state,
            table::num(d.attempts),
            table::text(status),
            table::text(table::time_opt(Some(d.next_ms))),
            table::text(&d.last_error),
        ]);
    }
    t.print();
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
            let hooks = client.list_webhooks().await?;
            if json {
                view::print_array(hooks.iter().map(webhook_json).collect());
                return Ok(());
            }
            let mut t = Table::new(&[
                "ID",
                "URL",
                "TOPICS",
                "DELIVERED",
                "FAILED",
                "PENDING",
                "DROPPED",
                "CREATED",
            ]);
            for w in &hooks {
                t.row(vec![
                    table::num(w.id),
                    table::text(&w.url),
                    table::text(w.topics.join(",")),
                    table::num(w.delivered),
                    table::num(w.failed),
                    table::num(w.pending),
                    table::num(w.dropped),
                    table::text(table::time(w.created_ms)),
                ]);
            }
            t.print();
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
            deliveries(&client.webhook_deliveries(id, limit).await?, json);
        }
    }
    Ok(())
}
