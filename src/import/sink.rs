//! Where imported items go: pages of [`Item`]s become `SubmitBatch` calls of external jobs,
//! split so that no call holds more than one batch (`--batch`) or one API message, and the
//! answers are counted into a [`Summary`] (created, or already present: a known idempotency
//! key). Items a job cannot hold are skipped and counted with their reason, never submitted.
//! With `--command-template` each item becomes a shell job whose argv the template makes
//! (`template.rs`) instead of an external job with a payload.
//!
//! A call the cluster could not answer (UNAVAILABLE: a leader died, an election is under way)
//! is sent again, up to `SUBMIT_TRIES_MAX` times `SUBMIT_RETRY_MS` apart: every job carries its
//! idempotency key, so a call that was applied after all is answered `duplicate`, never twice.

use std::collections::BTreeMap;

use crate::client::Client;
use crate::error::Result;
use crate::import::Item;
use crate::machine::limits;
use crate::proto::pb;

/// Bytes a batch request keeps free below `API_MESSAGE_BYTES_MAX` for its own framing.
const BATCH_MESSAGE_SLACK_BYTES: usize = 64 * 1024;

/// How far inside `DELAY_MS_MAX` a run time must be for the importer to submit it.
const RUN_AT_MARGIN_MS: u64 = 3_600_000;

/// Tries of one `SubmitBatch` call while the cluster answers UNAVAILABLE (about 30 s in all:
/// longer than an election, short enough that a cluster that is down fails the import).
const SUBMIT_TRIES_MAX: u32 = 60;
/// Wait between two tries of one call.
const SUBMIT_RETRY_MS: u64 = 500;

/// What an import did, printed at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Items read from the source.
    pub read: u64,
    /// Jobs created.
    pub created: u64,
    /// Items whose idempotency key the cluster already held: nothing created.
    pub already_present: u64,
    /// Items a dry run would submit.
    pub would_submit: u64,
    /// Items left out, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Stream entries acknowledged (XACK) after their jobs were.
    pub acked: u64,
    /// List elements the stored cursor showed as imported: read again only to check that the
    /// list's tail is still what was imported, not submitted.
    pub behind_cursor: u64,
    /// List elements moved out of the list (`--drain`) and deleted from the holding list once
    /// their jobs were acknowledged.
    pub drained: u64,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
}

impl Summary {
    /// Counts one skipped item under `reason`.
    pub fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_insert(0) += 1;
    }

    /// Items skipped for any reason.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// The summary as one human line.
    pub fn line(&self) -> String {
        let skipped = if self.skipped.is_empty() {
            "0".to_string()
        } else {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            format!("{} ({})", self.skipped_total(), reasons.join(", "))
        };
        if self.dry_run {
            format!(
                "dry run: read {}, would submit {}, skipped {skipped}; nothing written",
                self.read, self.would_submit
            )
        } else {
            let mut line = format!(
                "read {}, created {}, already present {}, skipped {skipped}, acked {}",
                self.read, self.created, self.already_present, self.acked
            );
            if self.behind_cursor > 0 {
                line.push_str(&format!(", behind the cursor {}", self.behind_cursor));
            }
            if self.drained > 0 {
                line.push_str(&format!(", drained {}", self.drained));
            }
            line
        }
    }
}

/// Submits external jobs to one queue.
pub struct Sink<'a> {
    /// The cluster.
    pub client: &'a Client,
    /// The queue every job goes to.
    pub queue: String,
    /// Jobs per `SubmitBatch` call.
    pub batch: usize,
    /// Print instead of submit.
    pub dry_run: bool,
    /// `--command-template`: shell jobs instead of payloads.
    pub template: Option<crate::import::template::Template>,
}

impl Sink<'_> {
    /// The request for `item`, or the reason it can't be a job.
    fn request(
        &self,
        item: &Item,
        now_ms: u64,
    ) -> std::result::Result<pb::SubmitRequest, &'static str> {
        // The cluster refuses a run time beyond DELAY_MS_MAX from its own clock, and the
        // whole batch with it: skip such an item here, with a margin for clock skew.
        let run_at_max = now_ms + limits::DELAY_MS_MAX - RUN_AT_MARGIN_MS;
        if item.options.run_at_ms.is_some_and(|t| t > run_at_max) {
            return Err("run time more than DELAY_MS_MAX (366 days) ahead");
        }
        if item.payload.len() > limits::PAYLOAD_BYTES_MAX {
            return Err("payload over PAYLOAD_BYTES_MAX (256 KiB)");
        }
        if item.key.len() > limits::IDEMPOTENCY_KEY_BYTES_MAX {
            return Err("idempotency key over IDEMPOTENCY_KEY_BYTES_MAX");
        }
        let kind = match &self.template {
            Some(template) => pb::submit_request::Kind::Shell(pb::ShellCommand {
                argv: template.argv(&item.payload)?,
                ..Default::default()
            }),
            None => pb::submit_request::Kind::Payload(item.payload.clone()),
        };
        Ok(pb::SubmitRequest {
            queue: self.queue.clone(),
            kind: Some(kind),
            idempotency_key: item.key.clone(),
            tags: item.tags.clone(),
            priority: item.options.priority,
            run_at_ms: item.options.run_at_ms,
            max_attempts: item.options.max_attempts,
            backoff: item.options.backoff,
            dead: item.options.dead.clone(),
            ..Default::default()
        })
    }

    /// Submits one page of items (counted as read) and counts the answers. Returns the items
    /// the cluster acknowledged (created or already present), in order; an error stops the
    /// import, with the failed call's jobs not written (a batch is one log entry).
    pub async fn submit(&self, items: &[Item], summary: &mut Summary) -> Result<Vec<usize>> {
        summary.read += items.len() as u64;
        let mut accepted = Vec::with_capacity(items.len());
        let mut chunk: Vec<(usize, pb::SubmitRequest)> = Vec::new();
        let mut chunk_bytes = 0;
        let budget = limits::API_MESSAGE_BYTES_MAX - BATCH_MESSAGE_SLACK_BYTES;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for (i, item) in items.iter().enumerate() {
            let req = match self.request(item, now_ms) {
                Ok(req) => req,
                Err(reason) => {
                    summary.skip(reason);
                    continue;
                }
            };
            if self.dry_run {
                summary.would_submit += 1;
                accepted.push(i);
                continue;
            }
            let bytes = prost::Message::encoded_len(&req) + 8;
            if !chunk.is_empty() && (chunk.len() >= self.batch || chunk_bytes + bytes > budget) {
                self.flush(&mut chunk, summary, &mut accepted).await?;
                chunk_bytes = 0;
            }
            chunk_bytes += bytes;
            chunk.push((i, req));
        }
        self.flush(&mut chunk, summary, &mut accepted).await?;
        Ok(accepted)
    }

    async fn flush(
        &self,
        chunk: &mut Vec<(usize, pb::SubmitRequest)>,
        summary: &mut Summary,
        accepted: &mut Vec<usize>,
    ) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let (indexes, jobs): (Vec<usize>, Vec<pb::SubmitRequest>) = chunk.drain(..).unzip();
        let answers = self.submit_batch(jobs).await?;
        assert_eq!(answers.len(), indexes.len(), "one answer per submitted job");
        for (i, answer) in indexes.into_iter().zip(answers) {
            if answer.duplicate {
                summary.already_present += 1;
            } else {
                summary.created += 1;
            }
            accepted.push(i);
        }
        Ok(())
    }

    /// One `SubmitBatch` call, sent again while the cluster is unavailable (module doc).
    async fn submit_batch(&self, jobs: Vec<pb::SubmitRequest>) -> Result<Vec<pb::SubmitResponse>> {
        let mut tries = 1;
        loop {
            match self.client.submit_batch(jobs.clone()).await {
                Err(crate::error::Error::Unavailable { message, .. })
                    if tries < SUBMIT_TRIES_MAX =>
                {
                    if tries == 1 {
                        eprintln!("the cluster is unavailable ({message}); trying again");
                    }
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(SUBMIT_RETRY_MS)).await;
                }
                other => return other,
            }
        }
    }
}
