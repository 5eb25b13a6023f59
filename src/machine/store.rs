//! The store boundary: the one interface through which a subsystem reads and writes its
//! records, so where a record lives can change without touching the transitions.
//!
//! Live jobs (scheduled, ready, leased) live in memory: a persistent map of shared records,
//! so a snapshot's copy of the state costs O(1) and applies go on while it is encoded. With a
//! cold tier attached (every node has one; tests choose), a job that reached a terminal state
//! leaves memory for the cold tier at the end of the apply that finished it ([`super::cold`]:
//! immutable records keyed by log index) and comes back only on `requeue`; a purge removes it
//! there. Reads go through [`JobRecords::get`], which hands out a `Cow`: borrowed for a live
//! job, owned for one read back from the cold tier, at the index being applied. Without a cold
//! tier every job stays in memory, as in earlier builds; the model test runs the same streams
//! both ways and gets the same fingerprints.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cold::{Cold, PurgeNote};
use super::job::{Job, JobId};

/// Every job record, by id.
///
/// A persistent map (`imbl::OrdMap`, a B-tree whose nodes are shared between copies) of
/// shared records: cloning the whole set, as a snapshot does, is O(1) and does not copy a job;
/// a change after such a clone copies only the path to the record and the one record
/// (`Arc::make_mut`). Encoded like a `BTreeMap<JobId, Job>` (same bytes), so snapshots of
/// earlier builds read unchanged; the cold tier travels beside it (see `raft/snapshot_file.rs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobRecords {
    /// Jobs held in memory, by id.
    all: imbl::OrdMap<JobId, Arc<Job>>,
    /// Where finished jobs go, if anywhere.
    #[serde(skip)]
    cold: Option<Cold>,
    /// The log index being applied: cold reads see what was written at or before it.
    #[serde(skip)]
    at: u64,
    /// The first entry of the cold purge set as of `at` (kept in step by every write).
    #[serde(skip)]
    cold_purge_first: Option<(u64, JobId)>,
}

impl PartialEq for JobRecords {
    fn eq(&self, other: &Self) -> bool {
        self.all == other.all
    }
}

impl Eq for JobRecords {}

/// The job out of its shared cell: moved when no copy holds it, cloned otherwise.
fn unshare(job: Arc<Job>) -> Job {
    Arc::try_unwrap(job).unwrap_or_else(|shared| (*shared).clone())
}

impl JobRecords {
    /// A job by id, live or finished.
    pub fn get(&self, id: JobId) -> Option<Cow<'_, Job>> {
        match self.all.get(&id) {
            Some(job) => Some(Cow::Borrowed(&**job)),
            None => self.cold.as_ref()?.job(id, self.at).map(Cow::Owned),
        }
    }

    /// A job that must exist (a broken invariant otherwise: the node stops rather than
    /// diverge).
    pub fn expect(&self, id: JobId) -> Cow<'_, Job> {
        self.get(id)
            .unwrap_or_else(|| panic!("job {id} is not held"))
    }

    /// A job held in memory.
    pub fn hot(&self, id: JobId) -> Option<&Job> {
        self.all.get(&id).map(|job| &**job)
    }

    /// A job held in memory, to change in place (the jobs subsystem keeps its indexes in
    /// step).
    pub(super) fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.all.get_mut(&id).map(Arc::make_mut)
    }

    /// Adds a job to memory; returns the one it replaced (a broken invariant if any).
    pub(super) fn insert(&mut self, job: Job) -> Option<Job> {
        self.all.insert(job.id, Arc::new(job)).map(unshare)
    }

    /// Removes a job from memory.
    pub(super) fn remove(&mut self, id: JobId) -> Option<Job> {
        self.all.remove(&id).map(unshare)
    }

    /// Number of jobs held in memory.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether no job is held in memory.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Jobs held in memory, in id order.
    pub fn hot_jobs(&self) -> impl Iterator<Item = &Job> + '_ {
        self.all.values().map(|job| &**job)
    }

    /// Jobs in id order after `after`, live and finished.
    pub fn after(&self, after: JobId) -> impl Iterator<Item = Cow<'_, Job>> + '_ {
        let mut hot = self
            .all
            .range(after.saturating_add(1)..)
            .map(|(_, job)| &**job)
            .peekable();
        let mut cold = self
            .cold
            .iter()
            .flat_map(move |c| c.jobs_after(after, self.at))
            .peekable();
        std::iter::from_fn(move || match (hot.peek(), cold.peek()) {
            (Some(h), Some(c)) if c.id < h.id => cold.next().map(Cow::Owned),
            (Some(_), _) => hot.next().map(Cow::Borrowed),
            (None, _) => cold.next().map(Cow::Owned),
        })
    }

    /// The cold tier, if one is attached.
    pub fn cold(&self) -> Option<&Cold> {
        self.cold.as_ref()
    }

    /// Attaches a cold tier (already loaded for the state held) and the index applied last.
    pub fn attach(&mut self, cold: Cold, at: u64) {
        self.cold_purge_first = cold.purge_first((0, 0), at);
        self.cold = Some(cold);
        self.at = at;
    }

    /// The log index being applied.
    pub fn at(&self) -> u64 {
        self.at
    }

    /// Sets the log index being applied (it only grows).
    pub fn set_at(&mut self, at: u64) {
        self.at = self.at.max(at);
    }

    /// Writes a finished job, taken out of memory, to the cold tier with its purge time and
    /// dead-letter entry.
    pub(super) fn retire(&mut self, job: &Job) {
        let cold = self.cold.as_ref().expect("retire without a cold tier");
        cold.put_job(job.id, self.at, Some(job));
        if let Some(t) = job.purge_at_ms {
            cold.set_purge(t, job.id, self.at, Some(&PurgeNote::of(job)));
            let entry = (t, job.id);
            if self.cold_purge_first.is_none_or(|first| entry < first) {
                self.cold_purge_first = Some(entry);
            }
        }
        if job.state == super::job::JobState::Dead {
            cold.set_dead(&job.spec.queue, job.id, self.at, true);
        }
    }

    /// Takes a finished job out of the cold tier (removed there as of the index applied).
    pub(super) fn take_cold(&mut self, id: JobId) -> Option<Job> {
        let cold = self.cold.clone()?;
        let job = cold.job(id, self.at)?;
        cold.put_job(id, self.at, None);
        if let Some(t) = job.purge_at_ms {
            self.unpurge(t, id);
        }
        if job.state == super::job::JobState::Dead {
            cold.set_dead(&job.spec.queue, id, self.at, false);
        }
        Some(job)
    }

    /// Removes `(t, id)` from the cold purge set, moving the cached first entry on.
    fn unpurge(&mut self, t: u64, id: JobId) {
        let Some(cold) = self.cold.as_ref() else {
            return;
        };
        cold.set_purge(t, id, self.at, None);
        if self.cold_purge_first == Some((t, id)) {
            self.cold_purge_first = cold.purge_first((t, id.saturating_add(1)), self.at);
        }
    }

    /// Purges job `id`, due at `t`, from the cold tier by its purge note, without reading
    /// the job: the note, or `None` when the entry has none (written by an older build; then
    /// nothing is changed and the caller takes the job the long way).
    pub(super) fn purge_cold(&mut self, t: u64, id: JobId) -> Option<PurgeNote> {
        let cold = self.cold.clone()?;
        let note = cold.purge_note(t, id, self.at)?;
        cold.put_job(id, self.at, None);
        if note.state == super::job::JobState::Dead {
            cold.set_dead(&note.queue, id, self.at, false);
        }
        self.unpurge(t, id);
        Some(note)
    }

    /// The first `(purge time, job)` in the cold tier.
    pub fn cold_purge_first(&self) -> Option<(u64, JobId)> {
        self.cold_purge_first
    }

    /// Dead jobs in the cold tier as `(queue, id)`, of `queue` or all, after `after`.
    pub fn cold_dead(
        &self,
        queue: Option<&str>,
        after: Option<(&str, JobId)>,
        limit: usize,
    ) -> Vec<(String, JobId)> {
        self.cold
            .as_ref()
            .map(|c| c.dead(queue, after, self.at, limit))
            .unwrap_or_default()
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
            .map(|id| (id, m.job(id).unwrap().into_owned()))
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
