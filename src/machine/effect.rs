//! Effects: how one subsystem's transition reaches the subsystems that care, in one direction.
//!
//! A subsystem never calls another. When a transition matters to others (a job was leased,
//! an attempt ended, a job or workflow finished), it pushes an [`Effect`] naming what
//! happened; [`Machine::drain`] hands each effect to its subscribers in a fixed order, within
//! the same apply. Consequences are settled depth-first: everything an effect causes (a step
//! job cancelled by `fail_fast`, the jobs a trigger starts) is applied before the next effect
//! of the same transition, which is the order a direct call would have had, so the design
//! changes no outcome.
//!
//! ```text
//! Command ──► Machine::apply ──► owning subsystem ──► effects ──► Machine::drain
//!                                                                   │
//!   JobLeased     ──► Workflows (step started) ─► Controls (rate token, breaker probe)
//!   AttemptEnded  ──► Controls (breaker window)
//!   JobFinished   ──► Workflows (step ended: frontier, fail_fast, rollback) ─► Events (job.*)
//!   WorkflowEnded ──► Events (workflow.*)
//! ```

use super::job::{JobId, JobState};
use super::workflow::{WorkflowId, WorkflowState};
use super::Machine;

/// Something that happened in one subsystem that others subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A job was leased (its attempt started).
    JobLeased {
        /// The job.
        id: JobId,
    },
    /// An attempt of a job ended: success (`ok`) or a failure of any class but cancel or
    /// hand-back.
    AttemptEnded {
        /// The job.
        id: JobId,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A job reached a terminal state.
    JobFinished {
        /// The job.
        id: JobId,
        /// Its terminal state.
        state: JobState,
    },
    /// A job's deadline passed before it finished.
    DeadlineMissed {
        /// The job.
        id: JobId,
    },
    /// A workflow reached a terminal state.
    WorkflowEnded {
        /// The workflow.
        id: WorkflowId,
        /// Its terminal state.
        state: WorkflowState,
        /// Event-chain depth of the work that started it.
        depth: u8,
    },
}

impl Machine {
    /// Hands every effect to its subscribers, depth-first (see the module doc).
    pub(super) fn drain(&mut self, fx: Vec<Effect>) {
        for effect in fx {
            self.route(effect);
        }
    }

    /// The one place that knows who subscribes to what, and in which order.
    fn route(&mut self, effect: Effect) {
        let ctx = self.ctx();
        match effect {
            Effect::JobLeased { id } => {
                let job = self.jobs.get(id).expect("leased job");
                if let Some(link) = job.step {
                    self.workflows.step_job_leased(ctx, link, id);
                }
                // No allocation on the hot path unless a queue has a policy.
                if self.controls.has_policies() {
                    let queue = self.jobs.get(id).expect("leased job").spec.queue.clone();
                    self.controls.leased(ctx, &queue, id);
                }
            }
            Effect::AttemptEnded { id, ok } => {
                // No allocation on the hot path unless a queue has a policy.
                if !self.controls.has_policies() {
                    return;
                }
                let queue = self.jobs.get(id).expect("job").spec.queue.clone();
                let was = self.controls.policy(&queue).map(|c| c.breaker);
                self.controls.outcome(ctx, &queue, id, ok);
                self.notify_breaker(&queue, was);
            }
            Effect::DeadlineMissed { id } => self.notify_sla(id),
            Effect::JobFinished { id, state } => {
                let job = self.jobs.get(id).expect("finished job");
                let (step, depth) = (job.step, job.depth);
                if let Some(link) = step {
                    self.step_job_finished(link, id);
                }
                // No allocation on the hot path unless a webhook exists.
                if !self.webhooks().is_empty() {
                    self.notify_job(&format!("job.{}", state.name()), id);
                }
                // No allocation on the hot path unless someone subscribed to a topic.
                if self.events.has_topics() {
                    let now = ctx.now_ms;
                    self.transition_event(
                        &format!("job.{}", state.name()),
                        format!("job:{id}:{now}"),
                        depth,
                    );
                }
            }
            Effect::WorkflowEnded { id, state, depth } => {
                self.notify_workflow(&format!("workflow.{}", state.name()), id);
                let now = ctx.now_ms;
                self.transition_event(
                    &format!("workflow.{}", state.name()),
                    format!("workflow:{id}:{now}"),
                    depth,
                );
            }
        }
    }
}
