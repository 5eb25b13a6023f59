//! What the jobs subsystem checks: requests before they change anything (a submit's times
//! and room, a lease request's fields), and its invariants after every apply in debug builds.

use super::super::command::{exhausted, in_range, invalid, Ctx, Response};
use super::super::index::Index;
use super::super::job::{validate_name, validate_queue_name, Attempt, Job, JobSpec, JobState};
use super::super::limits;
use super::Jobs;

impl Jobs {
    /// Checks what a submit asks for that does not depend on other jobs: the spec, the delay
    /// and absolute times (bounded by `DELAY_MS_MAX` after now).
    pub(in crate::machine) fn check_submit(
        ctx: Ctx,
        spec: &JobSpec,
        delay_ms: u64,
        run_at_ms: Option<u64>,
    ) -> Result<(), Response> {
        spec.validate().map_err(Response::Rejected)?;
        if delay_ms > limits::DELAY_MS_MAX {
            return Err(invalid(
                "delay_ms",
                format!("is {delay_ms}, the limit is {}", limits::DELAY_MS_MAX),
            ));
        }
        // DELAY_MS_MAX bounds absolute times too, measured from state-machine time.
        let horizon = ctx.now_ms.saturating_add(limits::DELAY_MS_MAX);
        for (field, at) in [("run_at_ms", run_at_ms), ("deadline_ms", spec.deadline_ms)] {
            if let Some(at) = at.filter(|at| *at > horizon) {
                return Err(invalid(
                    field,
                    format!("is {at}, more than DELAY_MS_MAX after now (limit {horizon})"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the room a new job needs: `JOBS_MAX`, `JOBS_BYTES_MAX`, `QUEUE_JOBS_MAX`.
    pub(in crate::machine) fn check_room(&self, spec: &JobSpec) -> Result<(), Response> {
        if self.records.len() >= limits::JOBS_MAX {
            return Err(exhausted(format!(
                "the cluster holds {} jobs, the limit (JOBS_MAX)",
                limits::JOBS_MAX
            )));
        }
        if self.index.bytes + spec.weight() as u64 > limits::JOBS_BYTES_MAX {
            return Err(exhausted(format!(
                "the jobs held take about {} bytes, the limit (JOBS_BYTES_MAX {})",
                self.index.bytes,
                limits::JOBS_BYTES_MAX
            )));
        }
        let stats = self.stats(&spec.queue);
        if stats.live() >= limits::QUEUE_JOBS_MAX {
            return Err(exhausted(format!(
                "queue {} holds {} unfinished jobs, the limit (QUEUE_JOBS_MAX)",
                spec.queue,
                limits::QUEUE_JOBS_MAX
            )));
        }
        Ok(())
    }

    /// Checks a lease request's own fields beyond the worker id: batch size, ttl, queue
    /// names and capabilities.
    pub(in crate::machine) fn check_lease_request(
        queues: &[String],
        capabilities: &[String],
        max: u32,
        ttl_ms: Option<u64>,
    ) -> Result<(), Response> {
        in_range("max", max.into(), 1, limits::LEASE_BATCH_MAX.into())
            .map_err(Response::Rejected)?;
        if let Some(ttl) = ttl_ms {
            in_range(
                "ttl_ms",
                ttl,
                limits::LEASE_TTL_MS_MIN,
                limits::LEASE_TTL_MS_MAX,
            )
            .map_err(Response::Rejected)?;
        }
        if queues.len() > limits::LEASE_QUEUES_MAX {
            return Err(invalid(
                "queues",
                format!("names more than {}", limits::LEASE_QUEUES_MAX),
            ));
        }
        for (i, q) in queues.iter().enumerate() {
            validate_queue_name(&format!("queues[{i}]"), q).map_err(Response::Rejected)?;
        }
        if capabilities.len() > limits::CAPABILITIES_MAX {
            return Err(invalid(
                "capabilities",
                format!("names more than {}", limits::CAPABILITIES_MAX),
            ));
        }
        Ok(())
    }

    /// Checks a worker id.
    pub(in crate::machine) fn check_worker(worker: &str) -> Result<(), Response> {
        validate_name("worker", worker, limits::WORKER_ID_BYTES_MAX).map_err(Response::Rejected)
    }

    /// Panics if an invariant of the module doc is broken.
    pub fn check_invariants(&self, now_ms: u64) {
        let mut rebuilt = Index::build(self.records.hot_jobs());
        let mut cold_purge = std::collections::BTreeSet::new();
        let mut cold_dead = Vec::new();
        for job in self.records.after(0) {
            assert!(job.id < self.next_id, "job id {} >= next_job_id", job.id);
            self.check_job(&job, now_ms);
            if self.records.hot(job.id).is_some() {
                continue;
            }
            assert!(job.state.is_terminal(), "job {} is cold and live", job.id);
            rebuilt.add_counts(&job);
            if let Some(t) = job.purge_at_ms {
                cold_purge.insert((t, job.id));
            }
            if job.state == JobState::Dead {
                cold_dead.push((job.spec.queue.clone(), job.id));
            }
        }
        assert_eq!(
            self.index, rebuilt,
            "indexes differ from the ones rebuilt from the jobs"
        );
        assert_eq!(
            self.records.cold_purge_first(),
            cold_purge.first().copied(),
            "first purge entry of the cold tier"
        );
        cold_dead.sort();
        assert_eq!(
            self.records.cold_dead(None, None, usize::MAX),
            cold_dead,
            "dead set of the cold tier"
        );
        self.idempotency.check_invariants("idempotency");
    }

    fn check_job(&self, job: &Job, now_ms: u64) {
        let id = job.id;
        assert!(job.created_ms <= now_ms, "job {id} created in the future");
        assert_eq!(
            job.lease.is_some(),
            job.state == JobState::Leased,
            "job {id} lease"
        );
        assert!(job.attempts_used <= job.attempts_total, "job {id} attempts");
        assert!(
            job.attempts_used <= job.spec.max_attempts,
            "job {id} over max_attempts"
        );
        assert!(
            job.attempts.len() <= limits::ATTEMPTS_KEPT_MAX,
            "job {id} attempts kept"
        );
        assert_eq!(
            job.finished_ms.is_some(),
            job.state.is_terminal(),
            "job {id} finished"
        );
        let open: Vec<&Attempt> = job
            .attempts
            .iter()
            .filter(|a| a.ended_ms.is_none())
            .collect();
        match &job.lease {
            Some(lease) => {
                assert!(
                    lease.token < self.next_token,
                    "job {id} token from the future"
                );
                assert_eq!(
                    open.len(),
                    1,
                    "job {id} leased with {} open attempts",
                    open.len()
                );
                assert_eq!(open[0].token, lease.token, "job {id} open attempt token");
            }
            None => assert!(
                open.is_empty(),
                "job {id} has an open attempt without a lease"
            ),
        }
        let tokens: Vec<u64> = job.attempts.iter().map(|a| a.token).collect();
        assert!(
            tokens.windows(2).all(|w| w[0] < w[1]),
            "job {id} tokens not increasing"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::index::QueueStats;
    use super::*;

    fn room_in(counts: [u64; 6]) -> Result<(), Response> {
        let mut jobs = Jobs::new();
        jobs.index.queues.insert(
            "q".into(),
            QueueStats {
                counts,
                deadline_missed: 0,
            },
        );
        jobs.check_room(&JobSpec::shell("q", &["true"]))
    }

    /// `QUEUE_JOBS_MAX` bounds a queue's unfinished jobs: finished ones waiting out their
    /// retention (7 days by default) take no room, so a busy queue never fills up with them.
    #[test]
    fn queue_room_counts_unfinished_jobs_only() {
        let max = limits::QUEUE_JOBS_MAX;
        assert!(room_in([0, 0, 0, max, max, max]).is_ok());
        assert!(room_in([1, max / 2, max / 2 - 2, max, 0, 0]).is_ok());
        for counts in [
            [max, 0, 0, 0, 0, 0],
            [0, max, 0, 0, 0, 0],
            [1, max / 2, max / 2 - 1, 0, 0, 0],
        ] {
            let refused = room_in(counts).expect_err("a full queue refuses");
            assert!(
                format!("{refused:?}").contains("QUEUE_JOBS_MAX"),
                "{refused:?}"
            );
        }
    }
}
