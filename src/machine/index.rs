//! Secondary indexes over the job table, all derivable from the jobs alone.
//!
//! Every job is added when it enters the table or after a change, and removed before a change
//! or when it leaves; [`Index::build`] recomputes the whole index from the jobs, and the
//! machine's invariant check asserts both agree (assertions in pairs).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::job::{Job, JobId, JobState};

/// Per-queue counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Jobs per state, indexed by `JobState as usize`.
    pub counts: [u64; 6],
    /// Jobs whose SLA deadline passed while unfinished.
    pub deadline_missed: u64,
}

impl QueueStats {
    /// Jobs of the queue in any state.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Unfinished jobs of the queue (scheduled, ready, leased): what `QUEUE_JOBS_MAX` bounds.
    /// Finished jobs wait out their retention in the cold tier and take no room here.
    pub fn live(&self) -> u64 {
        self.counts[..JobState::Succeeded as usize].iter().sum()
    }
}

/// The indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Ready jobs per queue in lease order: (rank, seq, id).
    pub ready: BTreeMap<String, BTreeSet<(u64, u64, JobId)>>,
    /// The shell jobs among them, in the same order: a node's executor, which runs shell
    /// jobs only, finds its next one in O(log n) however many external jobs wait ahead.
    pub ready_shell: BTreeMap<String, BTreeSet<(u64, u64, JobId)>>,
    /// Scheduled jobs by start time.
    pub scheduled: BTreeSet<(u64, JobId)>,
    /// Leased jobs by lease expiry.
    pub lease_expiry: BTreeSet<(u64, JobId)>,
    /// Leased jobs per worker.
    pub worker_leases: BTreeMap<String, BTreeSet<JobId>>,
    /// Unfinished jobs with a deadline not yet missed, by deadline.
    pub deadlines: BTreeSet<(u64, JobId)>,
    /// Finished jobs by purge time.
    pub purge: BTreeSet<(u64, JobId)>,
    /// Dead jobs per queue.
    pub dead: BTreeMap<String, BTreeSet<JobId>>,
    /// Counters per queue (queues with at least one job).
    pub queues: BTreeMap<String, QueueStats>,
    /// Units of each resource held by leased jobs.
    pub resource_used: BTreeMap<String, u32>,
    /// Ready jobs that need each resource, in lease order: (rank, seq, id).
    pub resource_waiters: BTreeMap<String, BTreeSet<(u64, u64, JobId)>>,
    /// Approximate bytes of every job definition held.
    pub bytes: u64,
}

impl Index {
    /// The index of a job table, computed from scratch.
    pub fn build<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Index {
        let mut index = Index::default();
        for job in jobs {
            index.add(job);
        }
        index
    }

    /// Counts a job in its queue's counters only (a finished job in the cold tier, whose
    /// other entries live there).
    pub fn add_counts(&mut self, job: &Job) {
        let stats = self.queues.entry(job.spec.queue.clone()).or_default();
        stats.counts[job.state as usize] += 1;
        stats.deadline_missed += u64::from(job.deadline_missed);
    }

    /// Takes a job counted by [`Index::add_counts`] out of its queue's counters.
    pub fn remove_counts(&mut self, job: &Job) {
        self.remove_counts_of(&job.spec.queue, job.state, job.deadline_missed);
    }

    /// [`Index::remove_counts`] of a job known by its queue, state and missed deadline.
    pub fn remove_counts_of(&mut self, queue: &str, state: JobState, deadline_missed: bool) {
        let stats = self
            .queues
            .get_mut(queue)
            .expect("queue stats of an indexed job");
        stats.counts[state as usize] -= 1;
        stats.deadline_missed -= u64::from(deadline_missed);
        if stats.total() == 0 {
            self.queues.remove(queue);
        }
    }

    /// Adds a job held in memory, as it is now.
    pub fn add(&mut self, job: &Job) {
        let queue = &job.spec.queue;
        self.bytes += job.spec.weight() as u64;
        self.add_counts(job);
        match job.state {
            JobState::Scheduled => {
                self.scheduled.insert((job.run_at_ms, job.id));
            }
            JobState::Ready => {
                self.ready
                    .entry(queue.clone())
                    .or_default()
                    .insert((job.rank, job.seq, job.id));
                if job.spec.is_shell() {
                    self.ready_shell
                        .entry(queue.clone())
                        .or_default()
                        .insert((job.rank, job.seq, job.id));
                }
                for need in &job.spec.resources {
                    self.resource_waiters
                        .entry(need.resource.clone())
                        .or_default()
                        .insert((job.rank, job.seq, job.id));
                }
            }
            JobState::Leased => {
                let lease = job.lease.as_ref().expect("leased job without a lease");
                self.lease_expiry.insert((lease.expires_ms, job.id));
                self.worker_leases
                    .entry(lease.worker.clone())
                    .or_default()
                    .insert(job.id);
                for need in &job.spec.resources {
                    *self.resource_used.entry(need.resource.clone()).or_default() += need.units;
                }
            }
            JobState::Succeeded | JobState::Dead | JobState::Cancelled => {
                if let Some(at) = job.purge_at_ms {
                    self.purge.insert((at, job.id));
                }
                if job.state == JobState::Dead {
                    self.dead.entry(queue.clone()).or_default().insert(job.id);
                }
            }
        }
        if let (Some(deadline), false, false) = (
            job.spec.deadline_ms,
            job.deadline_missed,
            job.state.is_terminal(),
        ) {
            self.deadlines.insert((deadline, job.id));
        }
    }

    /// Removes a job as it is now (it must have been added in this form).
    pub fn remove(&mut self, job: &Job) {
        self.bytes -= job.spec.weight() as u64;
        let queue = &job.spec.queue;
        self.remove_counts(job);
        let found = match job.state {
            JobState::Scheduled => self.scheduled.remove(&(job.run_at_ms, job.id)),
            JobState::Ready => {
                let key = (job.rank, job.seq, job.id);
                job.spec
                    .resources
                    .iter()
                    .all(|need| remove_from(&mut self.resource_waiters, &need.resource, &key))
                    && remove_from(&mut self.ready, queue, &key)
                    && (!job.spec.is_shell() || remove_from(&mut self.ready_shell, queue, &key))
            }
            JobState::Leased => {
                let lease = job.lease.as_ref().expect("leased job without a lease");
                for need in &job.spec.resources {
                    let used = self
                        .resource_used
                        .get_mut(&need.resource)
                        .expect("units of a leased job");
                    *used -= need.units;
                    if *used == 0 {
                        self.resource_used.remove(&need.resource);
                    }
                }
                self.lease_expiry.remove(&(lease.expires_ms, job.id))
                    && remove_from(&mut self.worker_leases, &lease.worker, &job.id)
            }
            JobState::Succeeded | JobState::Dead | JobState::Cancelled => {
                let purged = job
                    .purge_at_ms
                    .is_none_or(|at| self.purge.remove(&(at, job.id)));
                purged
                    && (job.state != JobState::Dead || remove_from(&mut self.dead, queue, &job.id))
            }
        };
        assert!(found, "job {} was not indexed as {:?}", job.id, job.state);
        if let (Some(deadline), false, false) = (
            job.spec.deadline_ms,
            job.deadline_missed,
            job.state.is_terminal(),
        ) {
            assert!(
                self.deadlines.remove(&(deadline, job.id)),
                "job {} deadline not indexed",
                job.id
            );
        }
    }

    /// Earliest time something in the index falls due.
    pub fn next_due(&self) -> Option<u64> {
        [
            self.scheduled.first().map(|(t, _)| *t),
            self.lease_expiry.first().map(|(t, _)| *t),
            self.deadlines.first().map(|(t, _)| *t),
            self.purge.first().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Removes `value` from the set under `key`, dropping the set when it empties.
fn remove_from<K: Ord + Clone, V: Ord>(
    map: &mut BTreeMap<K, BTreeSet<V>>,
    key: &K,
    value: &V,
) -> bool {
    let Some(set) = map.get_mut(key) else {
        return false;
    };
    let found = set.remove(value);
    if set.is_empty() {
        map.remove(key);
    }
    found
}
