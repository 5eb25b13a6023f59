//! Group commit of proposals: concurrent writes on the leader share one log entry.
//!
//! Every write this node proposes as leader (its own clients' and those forwarded by
//! followers) goes through one batcher task. While fewer than
//! [`limits::PROPOSALS_IN_FLIGHT_MAX`] entries are being committed, a write is proposed at
//! once, alone: an idle cluster adds no delay. When every slot is busy, writes queue, and the
//! next free slot takes all that queued (up to [`limits::BATCH_COMMANDS_MAX`] commands and
//! [`limits::BATCH_BYTES_MAX`] bytes) as one [`Command::Batch`] entry: one append, one fsync
//! on each node and one replication message for all of them. So batches grow with load, and
//! each write is still acknowledged only once its entry is committed and applied.
//!
//! A command that is itself a batch (a worker's completions with its next lease) is spliced
//! into the entry and gets its slice of the responses back, so batches never nest.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{wall_clock_ms, ForwardReply, TypeConfig};
use crate::machine::limits;
use crate::machine::{Command, Proposal, Response};

/// A write waiting to be proposed, and where its outcome goes.
pub(super) struct Pending {
    pub command: Command,
    pub reply: oneshot::Sender<ForwardReply>,
}

/// Starts the batcher of `raft`; writes are sent to the returned channel.
pub(super) fn spawn(raft: Raft<TypeConfig>, timeout: Duration) -> mpsc::Sender<Pending> {
    let (tx, rx) = mpsc::channel(limits::PROPOSALS_QUEUED_MAX);
    tokio::spawn(run(raft, rx, timeout));
    tx
}

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<Pending>, timeout: Duration) {
    let slots = Arc::new(Semaphore::new(limits::PROPOSALS_IN_FLIGHT_MAX));
    let mut carry: Option<Pending> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.command.weight();
        let mut batch = vec![first];
        while batch.len() < limits::BATCH_COMMANDS_MAX {
            let Ok(next) = rx.try_recv() else {
                break;
            };
            let weight = next.command.weight();
            if bytes + weight > limits::BATCH_BYTES_MAX {
                carry = Some(next);
                break;
            }
            bytes += weight;
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            write(&raft, batch, timeout).await;
            drop(slot);
        });
    }
}

/// Where one pending write's responses sit in the entry's response list.
struct Span {
    start: usize,
    len: usize,
    /// The write was a batch itself: it gets `Response::Batch` of its slice.
    nested: bool,
}

async fn write(raft: &Raft<TypeConfig>, batch: Vec<Pending>, timeout: Duration) {
    let single = batch.len() == 1;
    let mut commands = Vec::new();
    let mut parts = Vec::with_capacity(batch.len());
    for p in batch {
        let start = commands.len();
        let nested = matches!(p.command, Command::Batch(_));
        match p.command {
            Command::Batch(inner) if !single => commands.extend(inner),
            command => commands.push(command),
        }
        let span = Span {
            start,
            len: commands.len() - start,
            nested: nested && !single,
        };
        parts.push((span, p.reply));
    }
    crate::metrics::EVENTS
        .batch_commands
        .observe(commands.len() as f64);
    let command = if single {
        commands.pop().unwrap_or(Command::Batch(Vec::new()))
    } else {
        Command::Batch(commands)
    };
    let proposal = Proposal {
        now_ms: wall_clock_ms(),
        command,
    };
    let outcome = match tokio::time::timeout(timeout, raft.client_write(proposal)).await {
        Ok(Ok(written)) => Ok(written.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
            Err(ForwardReply::NotLeader)
        }
        Ok(Err(e)) => Err(ForwardReply::Unavailable(format!(
            "write outcome unknown: {e}"
        ))),
        Err(_) => Err(ForwardReply::Unavailable(format!(
            "write not confirmed within {} ms (no quorum reachable?); the outcome is unknown",
            timeout.as_millis()
        ))),
    };
    match outcome {
        Ok(response) if single => {
            if let Some((_, reply)) = parts.pop() {
                let _ = reply.send(ForwardReply::Applied(response));
            }
        }
        Ok(Response::Batch(mut responses)) => {
            // Hand the slices out from the back so each is split off without copying the rest.
            for (span, reply) in parts.into_iter().rev() {
                if responses.len() != span.start + span.len {
                    let _ = reply.send(ForwardReply::Unavailable(
                        "batch response does not match the batch".into(),
                    ));
                    continue;
                }
                let mut mine = responses.split_off(span.start);
                let response = if span.nested {
                    Response::Batch(mine)
                } else {
                    mine.pop().unwrap_or_default()
                };
                let _ = reply.send(ForwardReply::Applied(response));
            }
        }
        Ok(other) => {
            for (_, reply) in parts {
                let _ = reply.send(ForwardReply::Unavailable(format!(
                    "unexpected response to a batch: {other:?}"
                )));
            }
        }
        Err(reply_all) => {
            for (_, reply) in parts {
                let _ = reply.send(reply_all.clone());
            }
        }
    }
}
