//! Who wrote what. A write made through the API carries its caller ([`Command::By`], added by
//! the API layer from the token that passed the auth gate, never from the request); applying
//! it records the caller:
//!
//! - the last `AUDIT_RECORDS_MAX` accepted writes, each with its time, caller, action and
//!   target (`raftline audit list`);
//! - who submitted each job, as runs of consecutive job ids submitted by one caller (a client
//!   submitting in a loop makes one run), the oldest of `AUDIT_RUNS_MAX` runs dropped first
//!   (`job get` shows it while its run is kept).
//!
//! Refused writes change nothing, so they are not recorded here: the node that refused them
//! says so in its reply. Workers' lease, heartbeat, complete, checkpoint and release are not
//! audited (their job's attempts record the worker).
//!
//! Invariants: records in increasing `seq`, at most `AUDIT_RECORDS_MAX`; runs do not overlap,
//! at most `AUDIT_RUNS_MAX`.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::command::{Command, Response};
use super::job::JobId;
use super::limits;

/// The caller of a write: its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Token id.
    pub token_id: String,
    /// Token name when the write was made.
    pub name: String,
}

/// One accepted write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Increasing number of the record.
    pub seq: u64,
    /// State-machine time of the write.
    pub at_ms: u64,
    /// Who made it.
    pub by: Principal,
    /// The command (`Submit`, `PauseQueue`, ...).
    pub action: String,
    /// What it was applied to (`job 42`, `queue build`, ...).
    pub target: String,
}

/// The audit subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    next_seq: u64,
    records: VecDeque<AuditRecord>,
    /// First job id of a run → (its last job id, who submitted the run).
    runs: BTreeMap<JobId, (JobId, Principal)>,
}

impl Audit {
    /// Records `command`, accepted with `response`, made by `by` at `at_ms`.
    pub(super) fn record(
        &mut self,
        at_ms: u64,
        by: &Principal,
        command: &Command,
        response: &Response,
    ) {
        let target = match response {
            Response::Submitted {
                id,
                duplicate: false,
            } => {
                self.submitted(*id, by);
                format!("job {id} in queue {}", command.target())
            }
            _ => command.target(),
        };
        self.next_seq += 1;
        self.records.push_back(AuditRecord {
            seq: self.next_seq,
            at_ms,
            by: by.clone(),
            action: command.action().to_string(),
            target,
        });
        while self.records.len() > limits::AUDIT_RECORDS_MAX {
            self.records.pop_front();
        }
    }

    fn submitted(&mut self, id: JobId, by: &Principal) {
        if let Some((_, (last, who))) = self.runs.iter_mut().next_back() {
            if *last + 1 == id && who == by {
                *last = id;
                return;
            }
        }
        self.runs.insert(id, (id, by.clone()));
        while self.runs.len() > limits::AUDIT_RUNS_MAX {
            self.runs.pop_first();
        }
    }

    /// Accepted writes, oldest first.
    pub fn records(&self) -> impl DoubleEndedIterator<Item = &AuditRecord> + '_ {
        self.records.iter()
    }

    /// Who submitted job `id` through the API, while its run is kept.
    pub fn submitter(&self, id: JobId) -> Option<&Principal> {
        let (_, (last, who)) = self.runs.range(..=id).next_back()?;
        (id <= *last).then_some(who)
    }

    pub(super) fn check_invariants(&self) {
        assert!(self.records.len() <= limits::AUDIT_RECORDS_MAX);
        assert!(self
            .records
            .iter()
            .zip(self.records.iter().skip(1))
            .all(|(a, b)| a.seq < b.seq));
        assert!(self.runs.len() <= limits::AUDIT_RUNS_MAX);
        let mut end = None;
        for (first, (last, _)) in &self.runs {
            assert!(first <= last, "audit run {first}..={last} is backwards");
            assert!(
                end.is_none_or(|e| e < *first),
                "audit runs overlap at {first}"
            );
            end = Some(*last);
        }
    }
}

impl Command {
    /// The command's name, as the audit shows it.
    pub fn action(&self) -> &'static str {
        match self {
            Command::Submit { .. } => "Submit",
            Command::SubmitDead { .. } => "SubmitDead",
            Command::RegisterNode { .. } => "RegisterNode",
            Command::Lease { .. } => "Lease",
            Command::Heartbeat { .. } => "Heartbeat",
            Command::Complete { .. } => "Complete",
            Command::Checkpoint { .. } => "Checkpoint",
            Command::Release { .. } => "Release",
            Command::Cancel { .. } => "Cancel",
            Command::Requeue { .. } => "Requeue",
            Command::BulkJobs { .. } => "BulkJobs",
            Command::PauseQueue { paused: true, .. } => "PauseQueue",
            Command::PauseQueue { paused: false, .. } => "ResumeQueue",
            Command::PurgeDead { .. } => "PurgeDead",
            Command::Configure(_) => "Configure",
            Command::Tick => "Tick",
            Command::SubmitWorkflow(_) => "SubmitWorkflow",
            Command::Workflow { .. } => "ControlWorkflow",
            Command::SetResource { .. } => "SetResource",
            Command::LockAcquire { .. } => "AcquireLock",
            Command::LockRenew { .. } => "RenewLock",
            Command::LockRelease { .. } => "ReleaseLock",
            Command::SetQueuePolicy { .. } => "SetQueuePolicy",
            Command::CreateSchedule(_) => "CreateSchedule",
            Command::Schedule { .. } => "ControlSchedule",
            Command::CreateTrigger { .. } => "CreateTrigger",
            Command::DeleteTrigger { .. } => "DeleteTrigger",
            Command::Emit { .. } => "Emit",
            Command::CreateTimer { .. } => "CreateTimer",
            Command::CancelTimer { .. } => "CancelTimer",
            Command::Batch(_) => "Batch",
            Command::CreateToken(_) => "CreateToken",
            Command::RevokeToken { .. } => "RevokeToken",
            Command::BootstrapToken { .. } => "BootstrapToken",
            Command::TouchTokens(_) => "TouchTokens",
            Command::CreateWebhook { .. } => "CreateWebhook",
            Command::DeleteWebhook { .. } => "DeleteWebhook",
            Command::TestWebhook { .. } => "TestWebhook",
            Command::WebhookAttempt(_) => "WebhookAttempt",
            Command::NodeHealth { .. } => "NodeHealth",
            Command::PutCursor { .. } => "PutCursor",
            Command::By { command, .. } => command.action(),
            Command::Operation {
                kind: super::command::Operation::ChangeMembership,
                ..
            } => "ChangeMembership",
            Command::Operation {
                kind: super::command::Operation::SaveSnapshot,
                ..
            } => "SaveSnapshot",
        }
    }

    /// What the command applies to, as the audit shows it (a submit's queue).
    pub fn target(&self) -> String {
        match self {
            Command::Submit { spec, .. } | Command::SubmitDead { spec, .. } => spec.queue.clone(),
            Command::Cancel { job_id } | Command::Requeue { job_id, .. } => format!("job {job_id}"),
            Command::BulkJobs { action, ids } => format!("{action:?} of {} jobs", ids.len()),
            Command::PauseQueue { queue, .. } | Command::SetQueuePolicy { queue, .. } => {
                format!("queue {queue}")
            }
            Command::PurgeDead { queue } => format!("queue {}", queue.as_deref().unwrap_or("*")),
            Command::SubmitWorkflow(spec) => format!("workflow named {}", spec.name),
            Command::Workflow { id, op } => format!("workflow {id}: {op:?}"),
            Command::SetResource { name, capacity } => {
                format!("resource {name} capacity {capacity}")
            }
            Command::LockAcquire {
                resource, owner, ..
            } => {
                format!("resource {resource} for {owner}")
            }
            Command::LockRenew {
                resource, token, ..
            }
            | Command::LockRelease { resource, token } => {
                format!("resource {resource} token {token}")
            }
            Command::CreateSchedule(spec) => format!("schedule named {}", spec.name),
            Command::Schedule { id, op } => format!("schedule {id}: {op:?}"),
            Command::CreateTrigger { topic, .. } | Command::Emit { topic, .. } => {
                format!("topic {topic}")
            }
            Command::CreateTimer { topic, .. } => format!("timer for topic {topic}"),
            Command::DeleteTrigger { id } => format!("trigger {id}"),
            Command::CancelTimer { id } => format!("timer {id}"),
            Command::CreateToken(t) => format!("token {} ({}, {})", t.id, t.name, t.role.name()),
            Command::RevokeToken { id } => format!("token {id}"),
            Command::CreateWebhook { url, .. } => format!("webhook to {url}"),
            Command::DeleteWebhook { id } | Command::TestWebhook { id } => format!("webhook {id}"),
            Command::PutCursor { name, .. } => format!("cursor {name}"),
            Command::By { command, .. } => command.target(),
            Command::Operation { target, .. } => target.clone(),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::job::JobSpec;

    fn who(id: &str) -> Principal {
        Principal {
            token_id: id.into(),
            name: format!("name-{id}"),
        }
    }

    fn submit() -> Command {
        Command::Submit {
            spec: JobSpec::shell("q", &["true"]),
            delay_ms: 0,
            run_at_ms: None,
        }
    }

    #[test]
    fn submitters_are_kept_as_runs() {
        let mut audit = Audit::default();
        let ok = |id| Response::Submitted {
            id,
            duplicate: false,
        };
        for id in 1..=5 {
            audit.record(10, &who("a"), &submit(), &ok(id));
        }
        audit.record(11, &who("b"), &submit(), &ok(6));
        audit.record(12, &who("a"), &submit(), &ok(8));
        assert_eq!(audit.runs.len(), 3);
        assert_eq!(audit.submitter(3), Some(&who("a")));
        assert_eq!(audit.submitter(6), Some(&who("b")));
        assert_eq!(audit.submitter(7), None);
        assert_eq!(audit.submitter(8), Some(&who("a")));
        let last = audit.records().next_back().unwrap();
        assert_eq!((last.seq, last.action.as_str()), (7, "Submit"));
        assert_eq!(last.target, "job 8 in queue q");
        audit.check_invariants();
    }
}
