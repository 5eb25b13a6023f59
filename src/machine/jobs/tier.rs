//! Where the jobs subsystem's records live: finished jobs move to the cold tier at the end of
//! the apply that finished them and come back into memory when changed again (`requeue`);
//! readers that span both (the dead-letter sets) merge them.

use super::super::job::JobId;
use super::Jobs;

impl Jobs {
    /// Moves the jobs finished during this apply to the cold tier, if there is one.
    pub(in crate::machine) fn retire_finished(&mut self) {
        if self.records.cold().is_none() {
            self.retiring.clear();
            return;
        }
        for id in std::mem::take(&mut self.retiring) {
            let Some(job) = self.records.hot(id).filter(|j| j.state.is_terminal()) else {
                continue;
            };
            self.index.remove(job);
            self.index.add_counts(job);
            let job = self.records.remove(id).expect("a job held");
            self.records.retire(&job);
        }
    }

    /// Brings a finished job back from the cold tier into memory, if it is there.
    pub(super) fn warm(&mut self, id: JobId) {
        if self.records.hot(id).is_some() {
            return;
        }
        if let Some(job) = self.records.take_cold(id) {
            self.index.remove_counts(&job);
            self.index.add(&job);
            self.records.insert(job);
        }
    }

    /// Dead jobs as `(queue, id)` in that order, of `queue` (or all), after `after`, at most
    /// `limit`: those in memory and those in the cold tier, merged.
    pub fn dead(
        &self,
        queue: Option<&str>,
        after: Option<(&str, JobId)>,
        limit: usize,
    ) -> Vec<(String, JobId)> {
        let start = after.map(|(q, id)| (q.to_string(), id));
        let hot = self
            .index
            .dead
            .iter()
            .filter(|(q, _)| queue.is_none_or(|want| want == q.as_str()))
            .flat_map(|(q, ids)| ids.iter().map(move |id| (q.clone(), *id)))
            .filter(|entry| start.as_ref().is_none_or(|s| entry > s))
            .take(limit);
        let mut all: Vec<(String, JobId)> = hot
            .chain(self.records.cold_dead(queue, after, limit))
            .collect();
        all.sort();
        all.truncate(limit);
        all
    }
}
