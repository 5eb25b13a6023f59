//! Finding jobs by what they are: queue, state, tag, creation and finish times, and text in
//! the command line or error. A search walks jobs in id order (the dead-letter index when it
//! asks for one queue's dead jobs) and looks at no more than a bound of jobs per page, so a
//! filter that matches few jobs among millions answers in bounded time with a cursor to go on.

use std::borrow::Cow;

use super::job::{Job, JobId, JobKind, JobState};
use super::Machine;

/// What a search keeps. Every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only jobs carrying this tag.
    pub tag: Option<String>,
    /// Created in `[from, to)`, ms; `None` for no bound.
    pub created: (Option<u64>, Option<u64>),
    /// Finished in `[from, to)`, ms; with a bound set, unfinished jobs are left out.
    pub finished: (Option<u64>, Option<u64>),
    /// Text the command line (argv joined by spaces) or the error contains, ASCII lowercase.
    pub text: Option<String>,
}

/// One page of a search.
pub struct Page<'a> {
    /// Matching jobs, in id order.
    pub jobs: Vec<Cow<'a, Job>>,
    /// The last id looked at when the page ended before the jobs did: continue after it.
    pub next_after: Option<JobId>,
}

fn within(value: Option<u64>, (from, to): (Option<u64>, Option<u64>)) -> bool {
    if from.is_none() && to.is_none() {
        return true;
    }
    value.is_some_and(|v| from.is_none_or(|f| v >= f) && to.is_none_or(|t| v < t))
}

impl JobFilter {
    /// Whether `job` passes every condition.
    pub fn matches(&self, job: &Job) -> bool {
        self.queue.as_ref().is_none_or(|q| job.spec.queue == *q)
            && self.state.is_none_or(|s| job.state == s)
            && self.tag.as_ref().is_none_or(|t| job.spec.tags.contains(t))
            && within(Some(job.created_ms), self.created)
            && within(job.finished_ms, self.finished)
            && self.text.as_ref().is_none_or(|t| contains_text(job, t))
    }
}

/// Whether the job's command line or error contains `needle` (already lowercase), ignoring
/// ASCII case.
fn contains_text(job: &Job, needle: &str) -> bool {
    let found = |hay: &str| hay.to_ascii_lowercase().contains(needle);
    let command = match &job.spec.kind {
        JobKind::Shell { argv, .. } => found(&argv.join(" ")),
        JobKind::External { .. } => false,
    };
    command || job.error.as_deref().is_some_and(found)
}

impl Machine {
    /// Up to `limit` jobs after `after` that `filter` keeps, looking at no more than `scan_max`
    /// jobs.
    pub fn search<'a>(
        &'a self,
        filter: &JobFilter,
        after: JobId,
        limit: usize,
        scan_max: usize,
    ) -> Page<'a> {
        let mut jobs: Vec<Cow<'a, Job>> = Vec::new();
        let mut last = None;
        let mut scanned = 0;
        let mut push = |job: Cow<'a, Job>| -> bool {
            last = Some(job.id);
            scanned += 1;
            if filter.matches(&job) {
                jobs.push(job);
            }
            jobs.len() < limit && scanned < scan_max
        };
        let ended_early = match (&filter.queue, filter.state) {
            (Some(q), Some(JobState::Dead)) => {
                let ids = self.jobs.dead(Some(q), Some((q, after)), scan_max);
                let full = ids.len() == scan_max;
                let mut early = false;
                for (_, id) in ids {
                    if let Some(job) = self.jobs.get(id) {
                        if !push(job) {
                            early = true;
                            break;
                        }
                    }
                }
                early || full
            }
            _ => {
                let mut early = false;
                for job in self.jobs.after(after) {
                    if !push(job) {
                        early = true;
                        break;
                    }
                }
                early
            }
        };
        Page {
            jobs,
            next_after: if ended_early { last } else { None },
        }
    }
}

impl Machine {
    /// Applies a bulk retry or cancel: each job in turn, as its own command would.
    pub(super) fn bulk_jobs(
        &mut self,
        action: super::command::BulkAction,
        ids: &[JobId],
    ) -> super::Response {
        use super::Response;
        let mut changed = Vec::new();
        let mut skipped = 0;
        for &id in ids {
            let outcome = match action {
                super::command::BulkAction::Retry => {
                    let ctx = self.ctx();
                    self.jobs.requeue(ctx, id, &super::JobChanges::default())
                }
                super::command::BulkAction::Cancel => self.cancel_job(id),
                super::command::BulkAction::Purge => self.jobs.purge_finished(id),
            };
            match outcome {
                Response::Done { .. } | Response::Completed { .. } => changed.push(id),
                _ => skipped += 1,
            }
        }
        Response::Bulk { changed, skipped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: JobId, argv: &[&str], tags: &[&str], created: u64, finished: Option<u64>) -> Job {
        let mut j = Job::new(
            id,
            crate::machine::JobSpec::shell("q", argv),
            created,
            created,
        );
        j.spec.tags = tags.iter().map(|s| s.to_string()).collect();
        j.finished_ms = finished;
        j
    }

    #[test]
    fn every_condition_must_hold() {
        let j = job(1, &["make", "Release"], &["nightly"], 1_000, Some(5_000));
        let pass = |f: JobFilter| f.matches(&j);
        assert!(pass(JobFilter::default()));
        assert!(pass(JobFilter {
            tag: Some("nightly".into()),
            ..Default::default()
        }));
        assert!(!pass(JobFilter {
            tag: Some("night".into()),
            ..Default::default()
        }));
        assert!(pass(JobFilter {
            text: Some("e rel".into()),
            ..Default::default()
        }));
        assert!(!pass(JobFilter {
            text: Some("debug".into()),
            ..Default::default()
        }));
        assert!(pass(JobFilter {
            created: (Some(1_000), Some(1_001)),
            ..Default::default()
        }));
        assert!(!pass(JobFilter {
            created: (None, Some(1_000)),
            ..Default::default()
        }));
        assert!(pass(JobFilter {
            finished: (Some(4_000), None),
            ..Default::default()
        }));
        let unfinished = job(2, &["x"], &[], 1_000, None);
        assert!(!JobFilter {
            finished: (None, Some(u64::MAX)),
            ..Default::default()
        }
        .matches(&unfinished));
    }
}
