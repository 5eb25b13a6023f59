//! Workflows: DAGs of steps, each a job template, run as a rolling frontier.
//!
//! A step becomes `ready` in the same apply that finishes its last dependency, and its job is
//! created in that apply too when the workflow has a free slot (`max_parallel`); otherwise it
//! waits in the workflow's ready set, in step order, and takes the next slot that frees. There
//! is no polling and there are no waves: everything below runs inside [`Machine::apply`],
//! driven by a step job reaching a terminal state ([`Machine::step_job_finished`], called from
//! the one place a job finishes).
//!
//! ## Conditions
//!
//! A dependency holds when the step it names ended as the condition asks: `success` — it
//! succeeded (or an operator skipped it); `failure` — it failed (its job went to dead
//! letters); `always` — it ended in any way. A step whose every dependency holds becomes
//! ready; a step with one dependency that ended and does not hold becomes `skipped`, and the
//! same test then runs on its own dependents (skip propagation).
//!
//! ## Failure
//!
//! A step fails when its job is dead-lettered, and is cancelled when its job is cancelled.
//! `fail_fast`: the first failed or cancelled step cancels every step that has not started,
//! except handlers (steps with a `failure` or `always` dependency), which are judged by their
//! conditions as usual; running steps finish. `continue`: only the dependents that need the
//! failed step are skipped; independent branches go on. Either way the workflow fails once
//! every step has ended and one of them failed or was cancelled; skipped steps do not fail it.
//!
//! ## Rollback
//!
//! When a workflow fails, the `compensate` job of every step that succeeded runs, in reverse
//! dependency order: a step's compensation starts once nothing downstream of it is still to be
//! compensated. Compensations share the workflow's `max_parallel` slots. A compensation that
//! fails is recorded and the rollback goes on (best effort); the workflow ends `failed` after
//! the last one. Cancelling a workflow does not compensate (it is an operator's decision).
//!
//! ## Operations
//!
//! Cancel (running step jobs are cancelled), pause and resume (no new step jobs while paused),
//! retry a failed or cancelled step (it and every step downstream of it that did not succeed
//! run again, as do the steps `fail_fast` cancelled; refused once a rollback started), skip a
//! step that has not started or failed (dependents treat it as succeeded).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{exhausted, precondition, Ctx, Rejection, Response};
use super::effect::Effect;
use super::job::{JobId, JobSpec, JobState};
use super::limits;

mod run;
mod spec;
#[cfg(test)]
mod tests;

pub(super) use spec::Resolved;

/// The workflows subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflows {
    /// Next workflow id to assign.
    next_id: WorkflowId,
    /// Every workflow held, by id.
    by_id: BTreeMap<WorkflowId, Workflow>,
    /// Terminal workflows by purge time.
    purge: BTreeSet<(u64, WorkflowId)>,
}

impl Workflows {
    /// No workflows; ids start at 1.
    pub fn new() -> Workflows {
        Workflows {
            next_id: 1,
            ..Workflows::default()
        }
    }
}

/// Cluster-assigned workflow id, in submission order.
pub type WorkflowId = u64;

/// When a dependency holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// The dependency succeeded (or an operator skipped it).
    Success,
    /// The dependency failed.
    Failure,
    /// The dependency ended, however.
    Always,
}

impl Condition {
    /// Lower-case name used in files, the API and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Condition::Success => "success",
            Condition::Failure => "failure",
            Condition::Always => "always",
        }
    }

    /// Parses a name from [`Condition::name`].
    pub fn parse(name: &str) -> Option<Condition> {
        [Condition::Success, Condition::Failure, Condition::Always]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// One dependency of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The step depended on.
    pub step: String,
    /// When it holds.
    pub condition: Condition,
}

/// What a step failure does to the rest of the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailurePolicy {
    /// Cancel every step that has not started (handlers excepted).
    FailFast,
    /// Let independent branches finish.
    Continue,
}

impl FailurePolicy {
    /// Name used in files, the API and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            FailurePolicy::FailFast => "fail_fast",
            FailurePolicy::Continue => "continue",
        }
    }

    /// Parses a name from [`FailurePolicy::name`].
    pub fn parse(name: &str) -> Option<FailurePolicy> {
        [FailurePolicy::FailFast, FailurePolicy::Continue]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// A step as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    /// Unique within the workflow, `[A-Za-z0-9_.-]{1,128}`.
    pub name: String,
    /// The job run for the step.
    pub job: JobSpec,
    /// Steps that must end first, with their conditions.
    pub depends_on: Vec<Dependency>,
    /// The job that undoes the step, run when the workflow fails after the step succeeded.
    pub compensate: Option<JobSpec>,
}

/// A workflow as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    /// Free-form name, `[A-Za-z0-9_.-]{1,128}`.
    pub name: String,
    /// What a step failure does.
    pub failure_policy: FailurePolicy,
    /// Most step jobs (and compensations) unfinished at once.
    pub max_parallel: u32,
    /// The steps, in file order (the order ready steps take free slots).
    pub steps: Vec<StepSpec>,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StepState {
    /// A dependency has not ended yet.
    Waiting,
    /// Every dependency holds; waiting for a free slot (or for the workflow to resume).
    Ready,
    /// Its job exists and has not finished.
    Running,
    /// Its job succeeded.
    Succeeded,
    /// Its job was dead-lettered.
    Failed,
    /// A condition can no longer hold, or an operator skipped it.
    Skipped,
    /// Cancelled: its job was cancelled, or it had not started when the workflow was
    /// cancelled or `fail_fast` stopped it.
    Cancelled,
}

impl StepState {
    /// Lower-case name used in the API and CLI.
    pub fn name(self) -> &'static str {
        match self {
            StepState::Waiting => "waiting",
            StepState::Ready => "ready",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Cancelled => "cancelled",
        }
    }

    /// Whether the step has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Succeeded | StepState::Failed | StepState::Skipped | StepState::Cancelled
        )
    }
}

/// Where a workflow is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkflowState {
    /// Steps are running or waiting (possibly paused).
    Running,
    /// Failed; compensations are running.
    Compensating,
    /// Every step ended and none failed or was cancelled.
    Succeeded,
    /// A step failed or was cancelled (and the rollback, if any, is done).
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl WorkflowState {
    /// Lower-case name used in the API and CLI.
    pub fn name(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Compensating => "compensating",
            WorkflowState::Succeeded => "succeeded",
            WorkflowState::Failed => "failed",
            WorkflowState::Cancelled => "cancelled",
        }
    }

    /// Parses a name from [`WorkflowState::name`].
    pub fn parse(name: &str) -> Option<WorkflowState> {
        [
            WorkflowState::Running,
            WorkflowState::Compensating,
            WorkflowState::Succeeded,
            WorkflowState::Failed,
            WorkflowState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether the workflow has ended (until a retry or skip re-opens a failed one).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            WorkflowState::Succeeded | WorkflowState::Failed | WorkflowState::Cancelled
        )
    }
}

/// The compensation of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    /// `Waiting` (downstream compensations first), `Ready` (for a slot), `Running`,
    /// `Succeeded` or `Failed`.
    pub state: StepState,
    /// Its job, once created.
    pub job_id: Option<JobId>,
    /// When it ended.
    pub ended_ms: Option<u64>,
}

/// A step as the workflow keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRun {
    /// Where the step is.
    pub state: StepState,
    /// Its current job (the newest, after a retry).
    pub job_id: Option<JobId>,
    /// Jobs created for it (more than one after retries).
    pub runs: u32,
    /// Attempts over all its jobs.
    pub attempts: u32,
    /// When it last became ready.
    pub ready_ms: Option<u64>,
    /// First lease of its current job.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// Why it failed, was skipped or was cancelled.
    pub error: Option<String>,
    /// Skipped by an operator (dependents treat it as succeeded).
    pub skipped_by_operator: bool,
    /// Its compensation, once the workflow rolls back.
    pub compensation: Option<Compensation>,
}

/// A workflow held by the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    /// Cluster-assigned id.
    pub id: WorkflowId,
    /// The definition.
    pub spec: WorkflowSpec,
    /// Where it is.
    pub state: WorkflowState,
    /// No new step jobs while set.
    pub paused: bool,
    /// State-machine time of the submit.
    pub created_ms: u64,
    /// When it reached a terminal state.
    pub finished_ms: Option<u64>,
    /// When a terminal workflow is removed (retention).
    pub purge_at_ms: Option<u64>,
    /// One per step of the spec, same order.
    pub steps: Vec<StepRun>,
    /// Steps (or compensations, during a rollback) waiting for a slot, in step order.
    pub ready: BTreeSet<u32>,
    /// Step jobs and compensation jobs unfinished.
    pub running: u32,
    /// Links of event-triggered work that led to this workflow (0 when submitted directly).
    pub depth: u8,
    /// Dependencies of each step as indexes, with conditions (derived from the spec).
    deps: Vec<Vec<(u32, Condition)>>,
    /// Dependents of each step (derived from the spec).
    dependents: Vec<Vec<u32>>,
}

/// The link from a job to the workflow step it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    /// The workflow.
    pub workflow: WorkflowId,
    /// Index of the step in the workflow's spec.
    pub step: u32,
    /// The job is the step's compensation.
    pub compensation: bool,
}

/// Where a workflow is after [`Workflows::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// Steps are still running or waiting, or it had already ended.
    Open,
    /// It just started its rollback: compensations are ready for slots.
    Compensating,
    /// It just ended.
    Ended,
}

impl Workflows {
    /// A workflow by id.
    pub fn get(&self, id: WorkflowId) -> Option<&Workflow> {
        self.by_id.get(&id)
    }

    /// Workflows in id order after `after`, filtered by state, at most `limit`.
    pub fn list(
        &self,
        state: Option<WorkflowState>,
        after: WorkflowId,
        limit: usize,
    ) -> Vec<&Workflow> {
        self.by_id
            .range(after.saturating_add(1)..)
            .map(|(_, w)| w)
            .filter(|w| state.is_none_or(|s| w.state == s))
            .take(limit)
            .collect()
    }

    /// Earliest purge of a terminal workflow.
    pub fn next_due(&self) -> Option<u64> {
        self.purge.first().map(|(t, _)| *t)
    }

    /// Checks there is room for one more workflow (`WORKFLOWS_MAX`).
    pub(super) fn check_room(&self) -> Result<(), Response> {
        if self.by_id.len() >= limits::WORKFLOWS_MAX {
            return Err(exhausted(format!(
                "the cluster holds {} workflows, the limit (WORKFLOWS_MAX)",
                limits::WORKFLOWS_MAX
            )));
        }
        Ok(())
    }

    /// Adds a checked workflow (its dependencies resolved by [`WorkflowSpec::resolve`]) and
    /// judges its first steps; the machine then dispatches the ready ones.
    pub(super) fn create(
        &mut self,
        ctx: Ctx,
        spec: &WorkflowSpec,
        (deps, dependents): Resolved,
    ) -> WorkflowId {
        let id = self.next_id;
        self.next_id += 1;
        let now = ctx.now_ms;
        let mut workflow = Workflow {
            id,
            spec: spec.clone(),
            state: WorkflowState::Running,
            paused: false,
            created_ms: now,
            finished_ms: None,
            purge_at_ms: None,
            steps: vec![
                StepRun {
                    state: StepState::Waiting,
                    job_id: None,
                    runs: 0,
                    attempts: 0,
                    ready_ms: None,
                    started_ms: None,
                    ended_ms: None,
                    error: None,
                    skipped_by_operator: false,
                    compensation: None,
                };
                spec.steps.len()
            ],
            ready: BTreeSet::new(),
            running: 0,
            depth: 0,
            deps,
            dependents,
        };
        for i in 0..spec.steps.len() as u32 {
            workflow.judge(i, now);
        }
        self.by_id.insert(id, workflow);
        id
    }

    /// Sets the event-chain depth of a workflow started by an event.
    pub(super) fn set_depth(&mut self, id: WorkflowId, depth: u8) {
        self.by_id.get_mut(&id).expect("started workflow").depth = depth;
    }

    /// The next ready step (or compensation) to create a job for, if the workflow has a free
    /// slot: (step, the job to create, its link).
    pub(super) fn next_to_dispatch(&self, id: WorkflowId) -> Option<(u32, JobSpec, StepRef)> {
        let w = &self.by_id[&id];
        let active = matches!(
            w.state,
            WorkflowState::Running | WorkflowState::Compensating
        );
        if !active || w.paused || w.running >= w.spec.max_parallel {
            return None;
        }
        let &i = w.ready.first()?;
        let compensation = w.state == WorkflowState::Compensating;
        let step = &w.spec.steps[i as usize];
        let spec = if compensation {
            step.compensate
                .clone()
                .expect("compensation of a step without one")
        } else {
            step.job.clone()
        };
        let link = StepRef {
            workflow: id,
            step: i,
            compensation,
        };
        Some((i, spec, link))
    }

    /// Records the job created for a step (or compensation) by the machine.
    pub(super) fn dispatched(&mut self, link: StepRef, job_id: JobId) {
        let w = self.by_id.get_mut(&link.workflow).expect("workflow");
        let i = link.step;
        w.ready.remove(&i);
        w.running += 1;
        let run = &mut w.steps[i as usize];
        if link.compensation {
            let c = run.compensation.as_mut().expect("compensation");
            c.state = StepState::Running;
            c.job_id = Some(job_id);
        } else {
            run.state = StepState::Running;
            run.job_id = Some(job_id);
            run.runs += 1;
            run.started_ms = None;
            run.ended_ms = None;
            run.error = None;
        }
    }

    /// A step's job was leased: the first lease of its current job is the step's start.
    pub(super) fn step_job_leased(&mut self, ctx: Ctx, link: StepRef, job_id: JobId) {
        let Some(w) = self.by_id.get_mut(&link.workflow) else {
            return;
        };
        let run = &mut w.steps[link.step as usize];
        if !link.compensation && run.job_id == Some(job_id) {
            run.attempts += 1;
            run.started_ms.get_or_insert(ctx.now_ms);
        }
    }

    /// A step's job reached `job_state`: the step ends and its dependents are judged
    /// (ready or skipped); under `fail_fast` a failure stops what has not started. Returns
    /// `None` when the job is no longer the step's (nothing to settle), else the step jobs
    /// not yet leased that `fail_fast` cancels; the machine cancels them, then settles the
    /// workflow.
    pub(super) fn step_job_finished(
        &mut self,
        ctx: Ctx,
        link: StepRef,
        job_id: JobId,
        job_state: JobState,
        error: Option<String>,
    ) -> Option<Vec<JobId>> {
        let now = ctx.now_ms;
        let w = self.by_id.get_mut(&link.workflow)?;
        let i = link.step as usize;
        if link.compensation {
            let c = w.steps[i].compensation.as_mut()?;
            if c.job_id != Some(job_id) || c.state != StepState::Running {
                return None;
            }
            c.state = if job_state == JobState::Succeeded {
                StepState::Succeeded
            } else {
                StepState::Failed
            };
            c.ended_ms = Some(now);
            w.running -= 1;
            if w.state == WorkflowState::Compensating {
                w.release_compensations();
            }
            return Some(Vec::new());
        }
        if w.steps[i].job_id != Some(job_id) || w.steps[i].state != StepState::Running {
            return None;
        }
        let state = match job_state {
            JobState::Succeeded => StepState::Succeeded,
            JobState::Dead => StepState::Failed,
            _ => StepState::Cancelled,
        };
        w.running -= 1;
        w.end_step(i, state, now, error);
        let mut unleased = Vec::new();
        if w.state == WorkflowState::Running {
            let mut ended = vec![i as u32];
            if state != StepState::Succeeded && w.spec.failure_policy == FailurePolicy::FailFast {
                ended.extend(w.stop_unstarted(now));
                // A step whose job waits in its queue has not started either.
                unleased = (0..w.steps.len())
                    .filter(|&s| {
                        w.steps[s].state == StepState::Running
                            && w.steps[s].started_ms.is_none()
                            && !w.is_handler(s)
                    })
                    .filter_map(|s| w.steps[s].job_id)
                    .collect();
            }
            w.resolve_from(ended, now);
        }
        Some(unleased)
    }

    /// Ends the workflow (or starts its rollback) once nothing is left to run; called by
    /// the machine after it filled the free slots.
    pub(super) fn settle(&mut self, ctx: Ctx, fx: &mut Vec<Effect>, id: WorkflowId) -> Settled {
        let w = self.by_id.get_mut(&id).expect("workflow");
        match w.state {
            WorkflowState::Running => {
                if !w.steps.iter().all(|s| s.state.is_terminal()) {
                    return Settled::Open;
                }
                let failed = w
                    .steps
                    .iter()
                    .any(|s| matches!(s.state, StepState::Failed | StepState::Cancelled));
                if !failed {
                    w.state = WorkflowState::Succeeded;
                } else if w.start_rollback() {
                    return Settled::Compensating;
                } else {
                    w.state = WorkflowState::Failed;
                }
            }
            WorkflowState::Compensating => {
                let done = w
                    .steps
                    .iter()
                    .filter_map(|s| s.compensation.as_ref())
                    .all(|c| c.state.is_terminal());
                if !done {
                    return Settled::Open;
                }
                w.state = WorkflowState::Failed;
            }
            _ => return Settled::Open,
        }
        self.end(ctx, fx, id);
        Settled::Ended
    }

    /// Marks a workflow that just reached a terminal state as finished, due for purge after
    /// the retention, and tells the subscribers.
    fn end(&mut self, ctx: Ctx, fx: &mut Vec<Effect>, id: WorkflowId) {
        let now = ctx.now_ms;
        let w = self.by_id.get_mut(&id).expect("workflow");
        let at = now.saturating_add(ctx.settings.finished_retention_ms);
        w.finished_ms = Some(now);
        w.purge_at_ms = Some(at);
        let (state, depth) = (w.state, w.depth);
        self.purge.insert((at, id));
        fx.push(Effect::WorkflowEnded { id, state, depth });
    }

    /// Checks an operation against the workflow as it is; for retry and skip, returns the
    /// step's index.
    pub(super) fn check_op(
        &self,
        id: WorkflowId,
        op: &WorkflowOp,
    ) -> Result<Option<u32>, Response> {
        let Some(w) = self.by_id.get(&id) else {
            return Err(missing(id));
        };
        let state = w.state;
        match op {
            WorkflowOp::Pause | WorkflowOp::Resume => {
                if state.is_terminal() {
                    return Err(precondition(format!("workflow {id} is {}", state.name())));
                }
                Ok(None)
            }
            WorkflowOp::Cancel => {
                if state.is_terminal() {
                    return Err(precondition(format!(
                        "workflow {id} is already {}",
                        state.name()
                    )));
                }
                Ok(None)
            }
            WorkflowOp::Retry { step } | WorkflowOp::Skip { step } => {
                let retry = matches!(op, WorkflowOp::Retry { .. });
                w.check_reopen(step, retry).map(Some)
            }
        }
    }

    /// Pauses or resumes a workflow (checked by [`Workflows::check_op`]).
    pub(super) fn set_paused(&mut self, id: WorkflowId, paused: bool) {
        self.by_id.get_mut(&id).expect("checked").paused = paused;
    }

    /// The state of a workflow.
    pub(super) fn state(&self, id: WorkflowId) -> WorkflowState {
        self.by_id[&id].state
    }

    /// Cancels a workflow: steps not started are cancelled, and the jobs of running steps
    /// and compensations are returned for the machine to cancel (each then ends its step).
    pub(super) fn cancel(&mut self, ctx: Ctx, fx: &mut Vec<Effect>, id: WorkflowId) -> Vec<JobId> {
        let now = ctx.now_ms;
        let w = self.by_id.get_mut(&id).expect("workflow");
        w.state = WorkflowState::Cancelled;
        let mut jobs = Vec::new();
        for i in 0..w.steps.len() {
            match w.steps[i].state {
                StepState::Waiting | StepState::Ready => w.end_step(
                    i,
                    StepState::Cancelled,
                    now,
                    Some("workflow cancelled".into()),
                ),
                StepState::Running => jobs.extend(w.steps[i].job_id),
                _ => {}
            }
            if let Some(c) = w.steps[i].compensation.as_mut() {
                match c.state {
                    StepState::Running => jobs.extend(c.job_id),
                    StepState::Waiting | StepState::Ready => {
                        c.state = StepState::Cancelled;
                        c.ended_ms = Some(now);
                    }
                    _ => {}
                }
            }
        }
        w.ready.clear();
        self.end(ctx, fx, id);
        jobs
    }

    /// Retry (`retry`) or operator skip of step `i`: the step, the steps downstream of it that
    /// did not succeed and the ones `fail_fast` stopped are re-opened, and the workflow runs
    /// again (the machine settles it next).
    pub(super) fn reopen(&mut self, ctx: Ctx, id: WorkflowId, i: u32, retry: bool) {
        let now = ctx.now_ms;
        if let Some(at) = self.by_id[&id].purge_at_ms {
            self.purge.remove(&(at, id));
        }
        self.by_id
            .get_mut(&id)
            .expect("workflow")
            .reopen(i, retry, now);
    }

    /// Removes one terminal workflow whose retention passed (its step jobs have their own);
    /// returns whether it did.
    pub(super) fn purge_one(&mut self, now_ms: u64) -> bool {
        let Some(&(at, id)) = self.purge.first().filter(|(t, _)| *t <= now_ms) else {
            return false;
        };
        self.purge.remove(&(at, id));
        self.by_id.remove(&id);
        true
    }

    /// Panics if a workflow's bookkeeping is wrong. `job_open` tells whether a job exists and
    /// has not ended (a running step's job must).
    pub fn check_invariants(&self, job_open: impl Fn(JobId) -> bool) {
        for (id, w) in &self.by_id {
            w.check_invariants(*id, &job_open);
            if let Some(at) = w.purge_at_ms {
                assert!(self.purge.contains(&(at, *id)), "workflow {id} purge");
            }
        }
        assert!(self.purge.len() <= self.by_id.len());
        if let Some((&last, _)) = self.by_id.last_key_value() {
            assert!(last < self.next_id, "workflow id {last} >= next");
        }
    }
}

/// An operation on a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowOp {
    /// Cancel every step not ended; running step jobs are cancelled.
    Cancel,
    /// Create no new step jobs until resumed.
    Pause,
    /// Undo a pause.
    Resume,
    /// Run a failed or cancelled step again (and re-open what it blocked).
    Retry {
        /// Step name.
        step: String,
    },
    /// Mark a step that has not started, or failed, as skipped; dependents go on.
    Skip {
        /// Step name.
        step: String,
    },
}

fn missing(id: WorkflowId) -> Response {
    Response::Rejected(Rejection::Missing {
        what: format!("workflow {id}"),
    })
}
