//! Jobs that arrive already dead: an import from another job system (`raftline import redis`
//! of BullMQ's failed jobs) brings failures that happened before the job came here. Such a
//! job is submitted like any other (the same checks, idempotency key, room and queue limits)
//! and, in the same apply, filed as dead through the same `finish` a job that ran out of
//! attempts goes through: it counts under `dead` in its queue, sits in the dead-letter set
//! (`dlq list`, the dashboard), moves to the cold tier, is purged after the dead retention,
//! emits `job.dead` to webhooks and topics, and `dlq requeue` runs it again with a fresh
//! attempt budget.
//!
//! The failure is kept where a failed attempt's would be: as the job's error, and as the
//! record of its last attempt (worker = the source, token 0: no raftline lease ever fenced
//! it, and any later lease's token is larger, so attempt tokens still increase). The attempts
//! it used elsewhere count as used (`attempts_used` and `attempts_total`), with `max_attempts`
//! raised to them when lower, so the job's numbers add up; a requeue resets them as for any
//! dead job. No `AttemptEnded` is emitted: no attempt ended here, and a queue's breaker
//! should not open on failures that are history.

use serde::{Deserialize, Serialize};

use super::super::command::{in_range, Ctx, Rejection};
use super::super::effect::Effect;
use super::super::job::{validate_name, Attempt, ErrorClass, JobId, JobState, Outcome};
use super::super::limits;
use super::Jobs;

/// How a job failed before it came to raftline (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why it failed, at most `ERROR_BYTES_MAX`.
    pub error: String,
    /// Attempts it used where it ran, at most `MAX_ATTEMPTS_MAX`.
    pub attempts_made: u32,
    /// End of its output or stack trace, at most `OUTPUT_TAIL_BYTES_MAX`.
    pub output_tail: String,
    /// When it failed; the submit's time when unset or later.
    pub failed_at_ms: Option<u64>,
    /// Where it ran (`bullmq`), shown as its last attempt's worker; `import` when empty.
    pub source: String,
}

impl DeadLetter {
    /// Checks the fields' bounds (they depend on nothing else): at the API edge, and again
    /// in apply.
    pub fn check(&self) -> Result<(), Rejection> {
        let bytes = |field: &str, text: &str, max: usize| {
            if text.len() > max {
                return Err(Rejection::invalid(
                    field,
                    format!("is {} bytes, the limit is {max}", text.len()),
                ));
            }
            Ok(())
        };
        bytes("dead.error", &self.error, limits::ERROR_BYTES_MAX)?;
        bytes(
            "dead.output_tail",
            &self.output_tail,
            limits::OUTPUT_TAIL_BYTES_MAX,
        )?;
        in_range(
            "dead.attempts_made",
            self.attempts_made.into(),
            0,
            limits::MAX_ATTEMPTS_MAX.into(),
        )?;
        if let Some(at) = self.failed_at_ms {
            in_range("dead.failed_at_ms", at, 0, limits::WALL_MS_MAX)?;
        }
        if !self.source.is_empty() {
            validate_name("dead.source", &self.source, limits::WORKER_ID_BYTES_MAX)?;
        }
        Ok(())
    }

    /// The worker its attempt record shows.
    fn worker(&self) -> String {
        if self.source.is_empty() {
            "import".into()
        } else {
            self.source.clone()
        }
    }
}

impl Jobs {
    /// Files job `id`, submitted in this apply and not run, as dead with the failure it
    /// brings (see the module doc).
    pub(in crate::machine) fn bury(
        &mut self,
        ctx: Ctx,
        fx: &mut Vec<Effect>,
        id: JobId,
        dead: &DeadLetter,
    ) {
        let made = dead.attempts_made;
        let at = dead.failed_at_ms.unwrap_or(ctx.now_ms).min(ctx.now_ms);
        self.update(id, |job| {
            assert!(
                job.attempts_total == 0 && job.lease.is_none() && !job.state.is_terminal(),
                "bury of job {id}, which is not freshly submitted"
            );
            job.spec.max_attempts = job.spec.max_attempts.max(made);
            job.attempts_used = made;
            job.attempts_total = made;
            if made > 0 {
                job.attempts.push(Attempt {
                    number: made,
                    token: 0,
                    worker: dead.worker(),
                    node: None,
                    started_ms: at,
                    ended_ms: Some(at),
                    outcome: Some(Outcome {
                        error_class: Some(ErrorClass::Transient),
                        exit_code: None,
                        error: dead.error.clone(),
                        output_tail: dead.output_tail.clone(),
                    }),
                });
            }
        });
        self.finish(ctx, fx, id, JobState::Dead, Some(dead.error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::command::{Command, JobChanges, Proposal, Response};
    use super::super::super::job::{JobKind, JobSpec, JobState};
    use super::super::super::Machine;
    use super::*;

    fn dead_of(made: u32) -> DeadLetter {
        DeadLetter {
            error: "smtp refused".into(),
            attempts_made: made,
            output_tail: "Error: smtp refused\n    at send (mail.js:3)".into(),
            failed_at_ms: Some(500),
            source: "bullmq".into(),
        }
    }

    fn submit_dead(m: &mut Machine, now_ms: u64, key: &str, dead: DeadLetter) -> Response {
        let mut spec = JobSpec::new("mail", JobKind::External { payload: vec![1] });
        spec.max_attempts = 2;
        spec.idempotency_key = Some(key.into());
        m.apply(&Proposal {
            now_ms,
            command: Command::SubmitDead { spec, dead },
        })
    }

    /// A job submitted dead is dead at once with its failure on record (error, the last
    /// attempt's record, attempts used), counted under `dead` and listed as a dead letter;
    /// its idempotency key answers a repeat; a requeue runs it again with a fresh budget;
    /// a field over its bound is refused and writes nothing.
    #[test]
    fn submit_dead_files_a_dead_letter() {
        let mut m = Machine::new();
        let r = submit_dead(&mut m, 1_000, "bullmq:mail:7", dead_of(3));
        assert_eq!(
            r,
            Response::Submitted {
                id: 1,
                duplicate: false
            }
        );
        let job = m.job(1).unwrap().into_owned();
        assert_eq!(job.state, JobState::Dead);
        assert_eq!(job.error.as_deref(), Some("smtp refused"));
        // Three attempts made elsewhere against a budget of two: the budget is raised.
        assert_eq!(
            (job.attempts_used, job.attempts_total, job.spec.max_attempts),
            (3, 3, 3)
        );
        let last = &job.attempts[0];
        assert_eq!((last.number, last.worker.as_str()), (3, "bullmq"));
        assert_eq!((last.started_ms, last.ended_ms), (500, Some(500)));
        let outcome = last.outcome.as_ref().unwrap();
        assert_eq!(outcome.error, "smtp refused");
        assert!(outcome.output_tail.contains("mail.js:3"));
        assert_eq!(job.finished_ms, Some(1_000));
        let stats = m.queue("mail").0;
        assert_eq!(stats.counts[JobState::Dead as usize], 1);
        assert_eq!(stats.live(), 0);
        assert_eq!(
            m.jobs.dead(Some("mail"), None, 10),
            vec![("mail".into(), 1)]
        );
        assert_eq!(m.ready_count(&[]), 0);

        let again = submit_dead(&mut m, 2_000, "bullmq:mail:7", dead_of(3));
        assert_eq!(
            again,
            Response::Submitted {
                id: 1,
                duplicate: true
            }
        );
        assert_eq!(m.job_count(), 1);

        // No attempts made: no attempt record, the error still on the job.
        submit_dead(&mut m, 2_500, "bullmq:mail:8", dead_of(0));
        let job = m.job(2).unwrap();
        assert!(job.attempts.is_empty() && job.error.as_deref() == Some("smtp refused"));
        // A failure time after the submit's is the submit's.
        let mut late = dead_of(1);
        late.failed_at_ms = Some(9_999_999);
        submit_dead(&mut m, 2_600, "bullmq:mail:9", late);
        assert_eq!(m.job(3).unwrap().attempts[0].ended_ms, Some(2_600));

        let requeue = m.apply(&Proposal {
            now_ms: 3_000,
            command: Command::Requeue {
                job_id: 1,
                changes: JobChanges::default(),
            },
        });
        assert_eq!(
            requeue,
            Response::Done {
                state: JobState::Ready
            }
        );
        let job = m.job(1).unwrap();
        assert_eq!(
            (job.state, job.attempts_used, job.error.clone()),
            (JobState::Ready, 0, None)
        );
        assert_eq!(m.queue("mail").0.counts[JobState::Dead as usize], 2);

        let mut long = dead_of(1);
        long.error = "x".repeat(limits::ERROR_BYTES_MAX + 1);
        let r = submit_dead(&mut m, 4_000, "bullmq:mail:10", long);
        assert!(format!("{r:?}").contains("dead.error"), "{r:?}");
        let mut many = dead_of(limits::MAX_ATTEMPTS_MAX + 1);
        many.source = "no spaces".into();
        let r = submit_dead(&mut m, 4_000, "bullmq:mail:11", many);
        assert!(format!("{r:?}").contains("dead.attempts_made"), "{r:?}");
        assert_eq!(m.job_count(), 3);
        m.check_invariants();
    }

    /// A `SubmitDead` log entry round-trips through the log codec.
    #[test]
    fn submit_dead_round_trips_through_the_codec() {
        let p = Proposal {
            now_ms: 7,
            command: Command::SubmitDead {
                spec: JobSpec::new("mail", JobKind::External { payload: vec![1] }),
                dead: dead_of(2),
            },
        };
        let codec = |p: &Proposal| super::super::super::codec::encode(p).unwrap();
        let back: Proposal = super::super::super::codec::decode(&codec(&p)).unwrap();
        assert_eq!(back, p);
    }
}
