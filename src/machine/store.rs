//! The store boundary: the one interface through which a subsystem reads and writes its
//! records, so where a record lives can change without touching the transitions.
//!
//! Today every record lives in memory, in the snapshot and the Raft log: [`JobRecords`] is a
//! map, the same on nodes and in tests, golden scripts and the model test. The storage issue
//! moves what only grows (finished jobs with their attempts and output tails) to sled: a
//! finished job leaves the hot map for a cold tree when it ends and comes back only on
//! `requeue`, so transitions, which change live jobs only, keep reading and writing through
//! these same calls. What has to change with it is the read side: a cold record is read back
//! as an owned value, so `get` will hand out a `Cow` and the readers above the machine take
//! it; the model test's behaviour fingerprint pins the transitions while that happens.
//!
//! CAVEATS (not implemented): no cold tier yet; schedule run history and workflow step
//! records stay inside their (bounded) parent records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::job::{Job, JobId};

/// Every job record, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecords {
    /// Jobs by id.
    all: BTreeMap<JobId, Job>,
}

impl JobRecords {
    /// A job by id.
    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.all.get(&id)
    }

    /// A job that must exist (a broken invariant otherwise: the node stops rather than
    /// diverge).
    pub fn expect(&self, id: JobId) -> &Job {
        self.all
            .get(&id)
            .unwrap_or_else(|| panic!("job {id} is not held"))
    }

    /// A job to change in place (the jobs subsystem keeps its indexes in step).
    pub(super) fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.all.get_mut(&id)
    }

    /// Adds a new job; returns the one it replaced (a broken invariant if any).
    pub(super) fn insert(&mut self, job: Job) -> Option<Job> {
        self.all.insert(job.id, job)
    }

    /// Removes a job (purged).
    pub(super) fn remove(&mut self, id: JobId) -> Option<Job> {
        self.all.remove(&id)
    }

    /// Number of jobs held.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether no job is held.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The largest id held.
    pub fn last_id(&self) -> Option<JobId> {
        self.all.last_key_value().map(|(id, _)| *id)
    }

    /// Jobs in id order after `after`.
    pub fn after(&self, after: JobId) -> impl Iterator<Item = &Job> + '_ {
        self.all.range(after.saturating_add(1)..).map(|(_, j)| j)
    }
}
