//! The store boundary: the one interface through which a subsystem reads and writes its
//! records, so where a record lives can change without touching the transitions.
//!
//! Today every record lives in memory, in the snapshot and the Raft log: [`JobRecords`] is a
//! persistent map of shared records, the same on nodes and in tests, golden scripts and the
//! model test, so a snapshot's copy of the state costs O(1) for the jobs and applies go on
//! while it is encoded. The storage issue moves what only grows (finished jobs with their
//! attempts and output tails) to sled: a finished job leaves the hot map for a cold tree when
//! it ends and comes back only on `requeue`, so transitions, which change live jobs only, keep
//! reading and writing through these same calls. What has to change with it is the read side:
//! a cold record is read back as an owned value, so `get` will hand out a `Cow` and the
//! readers above the machine take it; the model test's behaviour fingerprint pins the
//! transitions while that happens.
//!
//! CAVEATS (not implemented): no cold tier yet; schedule run history and workflow step
//! records stay inside their (bounded) parent records.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::job::{Job, JobId};

/// Every job record, by id.
///
/// A persistent map (`imbl::OrdMap`, a B-tree whose nodes are shared between copies) of
/// shared records: cloning the whole set, as a snapshot does, is O(1) and does not copy a job;
/// a change after such a clone copies only the path to the record and the one record
/// (`Arc::make_mut`). Encoded like a `BTreeMap<JobId, Job>` (same bytes), so snapshots of
/// earlier builds read unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecords {
    /// Jobs by id.
    all: imbl::OrdMap<JobId, Arc<Job>>,
}

/// The job out of its shared cell: moved when no copy holds it, cloned otherwise.
fn unshare(job: Arc<Job>) -> Job {
    Arc::try_unwrap(job).unwrap_or_else(|shared| (*shared).clone())
}

impl JobRecords {
    /// A job by id.
    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.all.get(&id).map(|job| &**job)
    }

    /// A job that must exist (a broken invariant otherwise: the node stops rather than
    /// diverge).
    pub fn expect(&self, id: JobId) -> &Job {
        self.get(id)
            .unwrap_or_else(|| panic!("job {id} is not held"))
    }

    /// A job to change in place (the jobs subsystem keeps its indexes in step).
    pub(super) fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.all.get_mut(&id).map(Arc::make_mut)
    }

    /// Adds a new job; returns the one it replaced (a broken invariant if any).
    pub(super) fn insert(&mut self, job: Job) -> Option<Job> {
        self.all.insert(job.id, Arc::new(job)).map(unshare)
    }

    /// Removes a job (purged).
    pub(super) fn remove(&mut self, id: JobId) -> Option<Job> {
        self.all.remove(&id).map(unshare)
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
        self.all.get_max().map(|(id, _)| *id)
    }

    /// Jobs in id order after `after`.
    pub fn after(&self, after: JobId) -> impl Iterator<Item = &Job> + '_ {
        self.all
            .range(after.saturating_add(1)..)
            .map(|(_, job)| &**job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{codec, Command, JobSpec, Machine, Proposal};

    /// The records encode exactly as the `BTreeMap<JobId, Job>` of earlier builds (snapshot
    /// files keep their bytes), and decode back.
    #[test]
    fn records_encode_as_a_plain_map() {
        let mut m = Machine::new();
        for i in 0..100u64 {
            m.apply(&Proposal {
                now_ms: 1_000 + i,
                command: Command::Submit {
                    spec: JobSpec::shell("q", &["true"]),
                    delay_ms: 0,
                    run_at_ms: None,
                },
            });
        }
        let plain: std::collections::BTreeMap<JobId, Job> = (1..=100)
            .map(|id| (id, m.job(id).unwrap().clone()))
            .collect();
        let mut records = JobRecords::default();
        for job in plain.values() {
            assert!(records.insert(job.clone()).is_none());
        }
        let bytes = codec::encode(&records).unwrap();
        assert_eq!(bytes, codec::encode(&plain).unwrap());
        let back: JobRecords = codec::decode(&bytes).unwrap();
        assert_eq!(back, records);
    }
}
