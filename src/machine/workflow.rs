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
use super::job::{validate_name, JobId, JobSpec, JobState};
use super::limits;

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

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Rejection {
    Rejection::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl WorkflowSpec {
    /// Rough encoded size: the sum of its job templates.
    pub fn weight(&self) -> usize {
        self.steps
            .iter()
            .map(|s| {
                s.name.len()
                    + s.job.weight()
                    + s.compensate.as_ref().map_or(0, JobSpec::weight)
                    + s.depends_on.iter().map(|d| d.step.len() + 8).sum::<usize>()
            })
            .sum::<usize>()
            + self.name.len()
    }

    /// Checks the whole definition: names, limits, every job template, dependencies and the
    /// shape (no cycle). Run offline by `raftline dag validate`, by the server before it
    /// proposes, and by apply. The error names the step (`steps[NAME].field`).
    pub fn validate(&self) -> Result<(), Rejection> {
        self.resolve().map(|_| ())
    }

    /// Validates and resolves dependencies to indexes: (deps, dependents).
    pub(super) fn resolve(&self) -> Result<Resolved, Rejection> {
        validate_name("name", &self.name, limits::WORKFLOW_NAME_BYTES_MAX)?;
        if !(1..=limits::WORKFLOW_PARALLEL_MAX).contains(&self.max_parallel) {
            return Err(invalid(
                "max_parallel",
                format!(
                    "is {}, must be 1..={}",
                    self.max_parallel,
                    limits::WORKFLOW_PARALLEL_MAX
                ),
            ));
        }
        if self.steps.is_empty() {
            return Err(invalid("steps", "a workflow needs at least one step"));
        }
        if self.steps.len() > limits::WORKFLOW_STEPS_MAX {
            return Err(invalid(
                "steps",
                format!(
                    "has {} steps, the limit is {}",
                    self.steps.len(),
                    limits::WORKFLOW_STEPS_MAX
                ),
            ));
        }
        let weight = self.weight();
        if weight > limits::WORKFLOW_BYTES_MAX {
            return Err(invalid(
                "steps",
                format!(
                    "the step definitions take about {weight} bytes, the limit is {}",
                    limits::WORKFLOW_BYTES_MAX
                ),
            ));
        }
        let mut by_name: BTreeMap<&str, u32> = BTreeMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            validate_name(
                &format!("steps[{i}].name"),
                &step.name,
                limits::STEP_NAME_BYTES_MAX,
            )?;
            if let Some(first) = by_name.insert(&step.name, i as u32) {
                return Err(invalid(
                    format!("steps[{i}].name"),
                    format!("duplicate step name {:?} (also steps[{first}])", step.name),
                ));
            }
        }
        let edges: usize = self.steps.iter().map(|s| s.depends_on.len()).sum();
        if edges > limits::WORKFLOW_EDGES_MAX {
            return Err(invalid(
                "steps",
                format!(
                    "has {edges} dependencies in all, the limit is {}",
                    limits::WORKFLOW_EDGES_MAX
                ),
            ));
        }
        let mut deps = vec![Vec::new(); self.steps.len()];
        let mut dependents = vec![Vec::new(); self.steps.len()];
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{}].{field}", step.name);
            let template = |prefix: &str, spec: &JobSpec| {
                spec.validate().map_err(|r| match r {
                    Rejection::Invalid { field, message } => {
                        invalid(at(&format!("{prefix}{field}")), message)
                    }
                    other => other,
                })?;
                if spec.idempotency_key.is_some() {
                    return Err(invalid(
                        at(&format!("{prefix}idempotency_key")),
                        "is not allowed in a workflow step",
                    ));
                }
                Ok(())
            };
            template("", &step.job)?;
            if let Some(c) = &step.compensate {
                template("compensate.", c)?;
            }
            let mut seen = BTreeSet::new();
            for (k, dep) in step.depends_on.iter().enumerate() {
                let field = at(&format!("depends_on[{k}]"));
                let Some(&j) = by_name.get(dep.step.as_str()) else {
                    return Err(invalid(field, format!("unknown step {:?}", dep.step)));
                };
                if j as usize == i {
                    return Err(invalid(field, "a step cannot depend on itself"));
                }
                if !seen.insert(j) {
                    return Err(invalid(field, format!("{:?} is listed twice", dep.step)));
                }
                deps[i].push((j, dep.condition));
                dependents[j as usize].push(i as u32);
            }
        }
        if let Some(cycle) = find_cycle(&dependents) {
            let path: Vec<&str> = cycle
                .iter()
                .map(|&i| self.steps[i as usize].name.as_str())
                .collect();
            return Err(invalid(
                format!("steps[{}].depends_on", path[0]),
                format!("cycle: {}", path.join(" -> ")),
            ));
        }
        Ok((deps, dependents))
    }
}

/// A cycle in the graph given by `next` (edges i -> next[i]), as its path with the first step
/// repeated at the end; `None` for a DAG. Iterative depth-first search in index order, so the
/// cycle reported is the same on every run.
fn find_cycle(next: &[Vec<u32>]) -> Option<Vec<u32>> {
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let mut color = vec![WHITE; next.len()];
    for root in 0..next.len() {
        if color[root] != WHITE {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut stack: Vec<(u32, usize)> = vec![(root as u32, 0)];
        color[root] = GREY;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            if let Some(&to) = next[node as usize].get(*edge) {
                *edge += 1;
                match color[to as usize] {
                    WHITE => {
                        color[to as usize] = GREY;
                        stack.push((to, 0));
                    }
                    GREY => {
                        let start = stack.iter().position(|(n, _)| *n == to).expect("on stack");
                        let mut path: Vec<u32> = stack[start..].iter().map(|(n, _)| *n).collect();
                        path.push(to);
                        return Some(path);
                    }
                    _ => {}
                }
            } else {
                color[node as usize] = BLACK;
                stack.pop();
            }
        }
    }
    None
}

impl Workflow {
    /// Steps in an order where every step comes after its dependencies.
    fn topo_order(&self) -> Vec<u32> {
        let n = self.steps.len();
        let mut missing: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut order: Vec<u32> = (0..n as u32)
            .filter(|&i| missing[i as usize] == 0)
            .collect();
        let mut at = 0;
        while at < order.len() {
            let s = order[at];
            at += 1;
            for &d in &self.dependents[s as usize] {
                missing[d as usize] -= 1;
                if missing[d as usize] == 0 {
                    order.push(d);
                }
            }
        }
        order
    }

    /// The critical path at state-machine time `now_ms`: the chain of dependent steps with the
    /// longest total run time (a step's run time is first lease to end, or to now while it
    /// runs; zero if it never started), and that total.
    pub fn critical_path(&self, now_ms: u64) -> (Vec<u32>, u64) {
        let run_time = |s: &StepRun| match (s.started_ms, s.ended_ms) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            (Some(start), None) => now_ms.saturating_sub(start),
            _ => 0,
        };
        let n = self.steps.len();
        let mut best = vec![0u64; n];
        let mut via: Vec<Option<u32>> = vec![None; n];
        for s in self.topo_order() {
            let s = s as usize;
            let before = self.deps[s]
                .iter()
                .map(|&(d, _)| (best[d as usize], d))
                .max_by_key(|&(len, d)| (len, std::cmp::Reverse(d)));
            let (len, from) = before.map_or((0, None), |(len, d)| (len, Some(d)));
            best[s] = len + run_time(&self.steps[s]);
            via[s] = from;
        }
        let Some(end) = (0..n).max_by_key(|&s| (best[s], std::cmp::Reverse(s))) else {
            return (Vec::new(), 0);
        };
        let mut path = vec![end as u32];
        while let Some(prev) = via[*path.last().expect("non-empty") as usize] {
            path.push(prev);
        }
        path.reverse();
        (path, best[end])
    }

    /// Index of a step by name.
    pub fn step_index(&self, name: &str) -> Option<u32> {
        self.spec
            .steps
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u32)
    }

    /// Dependencies of step `i`: (step index, condition).
    pub fn deps_of(&self, i: u32) -> &[(u32, Condition)] {
        &self.deps[i as usize]
    }

    /// Whether a step has a `failure` or `always` dependency (it handles failures, so
    /// `fail_fast` leaves it to its conditions).
    fn is_handler(&self, i: usize) -> bool {
        self.deps[i]
            .iter()
            .any(|(_, c)| matches!(c, Condition::Failure | Condition::Always))
    }

    /// Whether dependency `dep` holds under `condition`, or cannot hold any more; `None`
    /// while it has not ended.
    fn holds(&self, dep: u32, condition: Condition) -> Option<bool> {
        let step = &self.steps[dep as usize];
        if !step.state.is_terminal() {
            return None;
        }
        Some(match condition {
            Condition::Success => {
                step.state == StepState::Succeeded
                    || (step.state == StepState::Skipped && step.skipped_by_operator)
            }
            Condition::Failure => step.state == StepState::Failed,
            Condition::Always => true,
        })
    }

    fn end_step(&mut self, i: usize, state: StepState, now: u64, error: Option<String>) {
        let step = &mut self.steps[i];
        if step.state == StepState::Ready {
            self.ready.remove(&(i as u32));
        }
        step.state = state;
        step.ended_ms = Some(now);
        step.error = error;
    }

    /// Re-judges the waiting dependents of the steps in `changed` (which just ended), and
    /// theirs in turn: ready when every dependency holds, skipped when one cannot.
    fn resolve_from(&mut self, changed: Vec<u32>, now: u64) {
        let mut work = changed;
        while let Some(s) = work.pop() {
            let dependents = self.dependents[s as usize].clone();
            for d in dependents {
                if self.judge(d, now) {
                    work.push(d);
                }
            }
        }
    }

    /// Judges one waiting step: returns true when it became skipped (an ending to propagate).
    fn judge(&mut self, d: u32, now: u64) -> bool {
        if self.steps[d as usize].state != StepState::Waiting {
            return false;
        }
        let mut all = true;
        for &(dep, condition) in &self.deps[d as usize] {
            match self.holds(dep, condition) {
                Some(false) => {
                    let why = format!(
                        "dependency {} ended {}, the condition is {}",
                        self.spec.steps[dep as usize].name,
                        self.steps[dep as usize].state.name(),
                        condition.name()
                    );
                    self.end_step(d as usize, StepState::Skipped, now, Some(why));
                    return true;
                }
                None => all = false,
                Some(true) => {}
            }
        }
        if all {
            let step = &mut self.steps[d as usize];
            step.state = StepState::Ready;
            step.ready_ms = Some(now);
            self.ready.insert(d);
        }
        false
    }

    /// `fail_fast`: cancels every step that has not started, handlers excepted. Returns the
    /// steps cancelled (endings to propagate).
    fn stop_unstarted(&mut self, now: u64) -> Vec<u32> {
        let mut stopped = Vec::new();
        for i in 0..self.steps.len() {
            let state = self.steps[i].state;
            if matches!(state, StepState::Waiting | StepState::Ready) && !self.is_handler(i) {
                self.end_step(
                    i,
                    StepState::Cancelled,
                    now,
                    Some("not started: another step failed (fail_fast)".into()),
                );
                stopped.push(i as u32);
            }
        }
        stopped
    }

    /// Whether every step's compensation downstream of `i` is done.
    fn downstream_settled(&self, i: usize) -> bool {
        let mut seen = BTreeSet::new();
        let mut work: Vec<u32> = self.dependents[i].clone();
        while let Some(d) = work.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some(c) = &self.steps[d as usize].compensation {
                if !c.state.is_terminal() {
                    return false;
                }
            }
            work.extend(self.dependents[d as usize].iter().copied());
        }
        true
    }

    /// Compensations that may start now (nothing downstream left to undo) move to the
    /// ready set.
    fn release_compensations(&mut self) {
        for i in 0..self.steps.len() {
            let waiting = self.steps[i]
                .compensation
                .as_ref()
                .is_some_and(|c| c.state == StepState::Waiting);
            if waiting && self.downstream_settled(i) {
                self.steps[i].compensation.as_mut().expect("checked").state = StepState::Ready;
                self.ready.insert(i as u32);
            }
        }
    }
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

/// Dependencies of each step as indexes with conditions, and dependents of each step.
pub(super) type Resolved = (Vec<Vec<(u32, Condition)>>, Vec<Vec<u32>>);

impl Workflow {
    /// Starts the rollback of a failed workflow if a step that succeeded has a compensation;
    /// returns whether it did.
    fn start_rollback(&mut self) -> bool {
        let mut any = false;
        for (i, step) in self.spec.steps.iter().enumerate() {
            if step.compensate.is_some() && self.steps[i].state == StepState::Succeeded {
                self.steps[i].compensation = Some(Compensation {
                    state: StepState::Waiting,
                    job_id: None,
                    ended_ms: None,
                });
                any = true;
            }
        }
        if any {
            self.state = WorkflowState::Compensating;
            self.release_compensations();
        }
        any
    }

    /// Checks a retry (`retry`) or skip of step `name`; returns its index.
    fn check_reopen(&self, name: &str, retry: bool) -> Result<u32, Response> {
        let id = self.id;
        let state = self.state;
        let Some(i) = self.step_index(name) else {
            return Err(Response::Rejected(invalid(
                "step",
                format!("workflow {id} has no step {name:?}"),
            )));
        };
        let run = &self.steps[i as usize];
        let allowed = if retry {
            matches!(run.state, StepState::Failed | StepState::Cancelled)
        } else {
            matches!(
                run.state,
                StepState::Waiting | StepState::Ready | StepState::Failed | StepState::Cancelled
            )
        };
        if !allowed {
            let can = if retry {
                "failed or cancelled"
            } else {
                "waiting, ready, failed or cancelled"
            };
            return Err(precondition(format!(
                "step {name} is {}; only {can} steps can be {}",
                run.state.name(),
                if retry { "retried" } else { "skipped" }
            )));
        }
        let rolled_back = self.steps.iter().any(|s| s.compensation.is_some());
        if !matches!(state, WorkflowState::Running | WorkflowState::Failed) || rolled_back {
            return Err(precondition(format!(
                "workflow {id} is {}{}; only a running or failed workflow that was not \
                 rolled back can be changed",
                state.name(),
                if rolled_back {
                    " and was rolled back"
                } else {
                    ""
                }
            )));
        }
        Ok(i)
    }

    /// The local part of [`Workflows::reopen`].
    fn reopen(&mut self, i: u32, retry: bool, now: u64) {
        self.state = WorkflowState::Running;
        self.finished_ms = None;
        self.purge_at_ms = None;
        // Downstream of i.
        let mut downstream = BTreeSet::new();
        let mut work = self.dependents[i as usize].clone();
        while let Some(d) = work.pop() {
            if downstream.insert(d) {
                work.extend(self.dependents[d as usize].iter().copied());
            }
        }
        for s in 0..self.steps.len() as u32 {
            let run = &self.steps[s as usize];
            let unstarted_cancel = run.state == StepState::Cancelled && run.started_ms.is_none();
            let reset = s != i
                && (downstream.contains(&s) || unstarted_cancel)
                && matches!(
                    run.state,
                    StepState::Skipped | StepState::Cancelled | StepState::Failed
                );
            if reset {
                let run = &mut self.steps[s as usize];
                run.state = StepState::Waiting;
                run.ended_ms = None;
                run.error = None;
                run.skipped_by_operator = false;
            }
        }
        let run = &mut self.steps[i as usize];
        self.ready.remove(&i);
        if retry {
            run.state = StepState::Ready;
            run.ready_ms = Some(now);
            run.error = None;
            run.ended_ms = None;
            self.ready.insert(i);
        } else {
            run.state = StepState::Skipped;
            run.skipped_by_operator = true;
            run.ended_ms = Some(now);
            run.error = Some("skipped by an operator".into());
        }
        for s in 0..self.steps.len() as u32 {
            if self.judge(s, now) {
                self.resolve_from(vec![s], now);
            }
        }
        if !retry {
            self.resolve_from(vec![i], now);
        }
    }

    /// Panics if this workflow's bookkeeping is wrong.
    fn check_invariants(&self, id: WorkflowId, job_open: &impl Fn(JobId) -> bool) {
        assert_eq!(
            self.steps.len(),
            self.spec.steps.len(),
            "workflow {id} steps"
        );
        let mut running = 0;
        for (i, run) in self.steps.iter().enumerate() {
            let waits_for_slot = match self.state {
                WorkflowState::Running => run.state == StepState::Ready,
                WorkflowState::Compensating => run
                    .compensation
                    .as_ref()
                    .is_some_and(|c| c.state == StepState::Ready),
                _ => false,
            };
            assert_eq!(
                waits_for_slot,
                self.ready.contains(&(i as u32)),
                "workflow {id} step {i} ready set"
            );
            if run.state == StepState::Running {
                running += 1;
                let job = run
                    .job_id
                    .unwrap_or_else(|| panic!("workflow {id} step {i} has no job"));
                assert!(job_open(job), "workflow {id} step {i} job ended or missing");
            }
            if let Some(c) = &run.compensation {
                if c.state == StepState::Running {
                    running += 1;
                }
            }
        }
        assert_eq!(running, self.running, "workflow {id} running count");
        assert!(
            self.running <= self.spec.max_parallel,
            "workflow {id} over max_parallel"
        );
        assert_eq!(
            self.state.is_terminal(),
            self.finished_ms.is_some(),
            "workflow {id} finished"
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::{Command, Proposal, Report, WorkerRef};
    use crate::machine::ErrorClass;
    use crate::machine::Machine;

    /// A step running `true` in a queue named after it (so a test leases exactly its job).
    fn step(name: &str, deps: &[(&str, Condition)]) -> StepSpec {
        let mut job = JobSpec::shell(name, &["true"]);
        job.max_attempts = 1;
        StepSpec {
            name: name.into(),
            job,
            depends_on: deps
                .iter()
                .map(|(s, c)| Dependency {
                    step: s.to_string(),
                    condition: *c,
                })
                .collect(),
            compensate: None,
        }
    }

    fn after(name: &str, deps: &[&str]) -> StepSpec {
        let deps: Vec<(&str, Condition)> = deps.iter().map(|d| (*d, Condition::Success)).collect();
        step(name, &deps)
    }

    fn spec(policy: FailurePolicy, max_parallel: u32, steps: Vec<StepSpec>) -> WorkflowSpec {
        WorkflowSpec {
            name: "plan".into(),
            failure_policy: policy,
            max_parallel,
            steps,
        }
    }

    struct Run {
        m: Machine,
        now: u64,
        id: WorkflowId,
    }

    impl Run {
        fn start(spec: WorkflowSpec) -> Run {
            let mut m = Machine::new();
            let r = m.apply(&Proposal {
                now_ms: 1_000,
                command: Command::SubmitWorkflow(spec),
            });
            let Response::WorkflowSubmitted { id } = r else {
                panic!("submit: {r:?}");
            };
            Run { m, now: 1_000, id }
        }

        fn apply(&mut self, command: Command) -> Response {
            self.now += 10;
            self.m.apply(&Proposal {
                now_ms: self.now,
                command,
            })
        }

        fn w(&self) -> &Workflow {
            self.m.workflow(self.id).expect("workflow")
        }

        fn state(&self, name: &str) -> StepState {
            let i = self.w().step_index(name).expect("step");
            self.w().steps[i as usize].state
        }

        fn states(&self) -> Vec<(String, &'static str)> {
            self.w()
                .spec
                .steps
                .iter()
                .zip(&self.w().steps)
                .map(|(s, r)| (s.name.clone(), r.state.name()))
                .collect()
        }

        /// Leases the job waiting in `queue` and ends it.
        fn finish_queue(&mut self, queue: &str, ok: bool) -> JobId {
            let (job_id, token) = self.lease(queue);
            self.complete(job_id, token, ok);
            job_id
        }

        /// Leases the job waiting in `queue`: (job, token).
        fn lease(&mut self, queue: &str) -> (JobId, u64) {
            let r = self.apply(Command::Lease {
                worker: WorkerRef {
                    id: "w".into(),
                    node: None,
                },
                queues: vec![queue.into()],
                capabilities: vec![],
                max: 1,
                ttl_ms: None,
            });
            let Response::Leased(grants) = r else {
                panic!("lease {queue}: {r:?}");
            };
            let g = grants
                .first()
                .unwrap_or_else(|| panic!("nothing ready in {queue}: {:?}", self.states()));
            (g.job_id, g.token)
        }

        fn complete(&mut self, job_id: JobId, token: u64, ok: bool) {
            let r = self.apply(Command::Complete {
                job_id,
                token,
                report: Report {
                    error_class: (!ok).then_some(ErrorClass::Permanent),
                    exit_code: None,
                    error: if ok { String::new() } else { "boom".into() },
                    output_tail: String::new(),
                },
            });
            assert!(matches!(r, Response::Completed { .. }), "{r:?}");
        }

        fn finish(&mut self, name: &str, ok: bool) -> JobId {
            assert_eq!(
                self.state(name),
                StepState::Running,
                "{name}: {:?}",
                self.states()
            );
            self.finish_queue(name, ok)
        }

        /// Whether the step's job is in its queue, ready to lease.
        fn job_ready(&self, name: &str) -> bool {
            self.m.ready_in(name).next().is_some()
        }
    }

    use StepState::*;

    /// a -> (b, c) -> d: b and c are ready in the apply that ends a, d only after both.
    #[test]
    fn diamond_runs_as_a_rolling_frontier() {
        let mut r = Run::start(spec(
            FailurePolicy::FailFast,
            10,
            vec![
                after("a", &[]),
                after("b", &["a"]),
                after("c", &["a"]),
                after("d", &["b", "c"]),
            ],
        ));
        assert!(r.job_ready("a"));
        assert_eq!(r.state("b"), Waiting);
        r.finish("a", true);
        assert!(r.job_ready("b") && r.job_ready("c"), "{:?}", r.states());
        r.finish("b", true);
        assert_eq!(r.state("d"), Waiting);
        r.finish("c", true);
        assert!(r.job_ready("d"));
        r.finish("d", true);
        assert_eq!(r.w().state, WorkflowState::Succeeded);
        assert!(r.w().finished_ms.is_some());
    }

    /// A fan-out of 100 between a root and a sink, 64 at a time: never more than 64 step jobs
    /// unfinished, a freed slot is refilled in the same apply, the sink runs after all 100.
    #[test]
    fn fan_out_fan_in_of_100_respects_max_parallel() {
        let mut steps = vec![after("root", &[])];
        let names: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        for n in &names {
            steps.push(after(n, &["root"]));
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        steps.push(after("sink", &refs));
        let mut r = Run::start(spec(FailurePolicy::FailFast, 64, steps));
        r.finish("root", true);
        assert_eq!(r.w().running, 64);
        assert_eq!(r.w().ready.len(), 36);
        for n in &names {
            r.finish(n, true);
            assert!(r.w().running <= 64);
            if n != names.last().unwrap() {
                assert_eq!(r.state("sink"), Waiting);
            }
        }
        r.finish("sink", true);
        assert_eq!(r.w().state, WorkflowState::Succeeded);
    }

    /// Each condition, and skips propagating to dependents that need a skipped step.
    #[test]
    fn conditions_and_skip_propagation() {
        let mut r = Run::start(spec(
            FailurePolicy::Continue,
            10,
            vec![
                after("a", &[]),
                step("on_ok", &[("a", Condition::Success)]),
                step("on_fail", &[("a", Condition::Failure)]),
                step("cleanup", &[("a", Condition::Always)]),
                after("after_ok", &["on_ok"]),
                step("report", &[("after_ok", Condition::Always)]),
            ],
        ));
        r.finish("a", false);
        assert_eq!(r.state("a"), Failed);
        assert_eq!(r.state("on_ok"), Skipped);
        assert_eq!(r.state("after_ok"), Skipped, "propagated");
        assert_eq!(r.state("on_fail"), Running);
        assert_eq!(r.state("cleanup"), Running);
        assert!(r.job_ready("report"), "always holds for a skipped step");
        r.finish("on_fail", true);
        r.finish("cleanup", true);
        r.finish("report", true);
        assert_eq!(r.w().state, WorkflowState::Failed, "a failed");

        // The same graph with a success: the failure branch is skipped.
        let mut r = Run::start(r.w().spec.clone());
        r.finish("a", true);
        assert_eq!(r.state("on_fail"), Skipped);
        r.finish("on_ok", true);
        r.finish("cleanup", true);
        r.finish("after_ok", true);
        r.finish("report", true);
        assert_eq!(
            r.w().state,
            WorkflowState::Succeeded,
            "skips do not fail it"
        );
    }

    fn two_branches(policy: FailurePolicy) -> Run {
        Run::start(spec(
            policy,
            1,
            vec![
                after("a", &[]),
                after("b", &[]),
                after("c", &["a"]),
                step("notify", &[("a", Condition::Failure)]),
            ],
        ))
    }

    /// fail_fast cancels what has not started (handlers excepted); continue lets the
    /// independent branch finish.
    #[test]
    fn failure_policies() {
        let mut r = two_branches(FailurePolicy::FailFast);
        assert_eq!(r.state("b"), Ready, "one slot");
        r.finish("a", false);
        assert_eq!(r.state("b"), Cancelled);
        assert_eq!(r.state("c"), Cancelled);
        assert_eq!(r.state("notify"), Running, "a handler still runs");
        r.finish("notify", true);
        assert_eq!(r.w().state, WorkflowState::Failed);

        let mut r = two_branches(FailurePolicy::Continue);
        r.finish("a", false);
        assert_eq!(r.state("c"), Skipped);
        assert_eq!(r.state("b"), Running, "independent branch goes on");
        r.finish("b", true);
        r.finish("notify", true);
        assert_eq!(r.w().state, WorkflowState::Failed);
        assert_eq!(r.state("b"), Succeeded);
    }

    /// fail_fast also cancels a step whose job waits in its queue, not yet leased.
    #[test]
    fn fail_fast_cancels_unleased_step_jobs() {
        let mut r = Run::start(spec(
            FailurePolicy::FailFast,
            10,
            vec![after("a", &[]), after("b", &[])],
        ));
        let b_job = r.w().steps[1].job_id.unwrap();
        r.finish("a", false);
        assert_eq!(r.state("b"), Cancelled);
        assert_eq!(r.m.job(b_job).unwrap().state, JobState::Cancelled);
        assert_eq!(r.w().state, WorkflowState::Failed);
    }

    /// Rollback: compensations of the succeeded steps run in reverse dependency order.
    #[test]
    fn compensation_runs_in_reverse_dependency_order() {
        let mut steps = vec![
            after("db", &[]),
            after("cache", &[]),
            after("app", &["db", "cache"]),
            after("smoke", &["app"]),
        ];
        for s in steps.iter_mut().take(3) {
            s.compensate = Some(JobSpec::shell(format!("undo_{}", s.name), &["true"]));
        }
        let mut r = Run::start(spec(FailurePolicy::FailFast, 10, steps));
        r.finish("db", true);
        r.finish("cache", true);
        r.finish("app", true);
        r.finish("smoke", false);
        assert_eq!(r.w().state, WorkflowState::Compensating);
        assert!(r.job_ready("undo_app"));
        assert!(!r.job_ready("undo_db") && !r.job_ready("undo_cache"));
        r.finish_queue("undo_app", true);
        assert!(r.job_ready("undo_db") && r.job_ready("undo_cache"));
        r.finish_queue("undo_cache", true);
        assert_eq!(r.w().state, WorkflowState::Compensating);
        r.finish_queue("undo_db", false);
        assert_eq!(r.w().state, WorkflowState::Failed);
        let comp = |i: usize| r.w().steps[i].compensation.clone().unwrap().state;
        assert_eq!((comp(0), comp(1), comp(2)), (Failed, Succeeded, Succeeded));
        assert!(
            r.w().steps[3].compensation.is_none(),
            "smoke did not succeed"
        );
        // A rolled-back workflow is not re-opened.
        let again = r.apply(Command::Workflow {
            id: r.id,
            op: WorkflowOp::Retry {
                step: "smoke".into(),
            },
        });
        assert!(matches!(
            again,
            Response::Rejected(Rejection::Precondition { .. })
        ));
    }

    /// The critical path is the chain with the longest run time.
    #[test]
    fn critical_path_follows_the_longest_chain() {
        let mut r = Run::start(spec(
            FailurePolicy::FailFast,
            10,
            vec![
                after("a", &[]),
                after("b", &["a"]),
                after("c", &["a"]),
                after("d", &["b", "c"]),
            ],
        ));
        r.finish("a", true);
        // b and c start together; c ends at once, b after a long while.
        let (b, b_token) = r.lease("b");
        r.finish("c", true);
        r.now += 10_000;
        r.complete(b, b_token, true);
        r.finish("d", true);
        let (path, len) = r.w().critical_path(r.now);
        let names: Vec<&str> = path
            .iter()
            .map(|&i| r.w().spec.steps[i as usize].name.as_str())
            .collect();
        assert_eq!(names, vec!["a", "b", "d"]);
        let run = |n: &str| {
            let s = &r.w().steps[r.w().step_index(n).unwrap() as usize];
            s.ended_ms.unwrap() - s.started_ms.unwrap()
        };
        assert_eq!(len, run("a") + run("b") + run("d"));
        assert!(run("b") > run("c"));
    }

    /// Validation names the step and what is wrong; a cycle is reported as its path.
    #[test]
    fn validation_errors_name_the_step() {
        let err = |s: WorkflowSpec| match s.validate() {
            Err(Rejection::Invalid { field, message }) => format!("{field}: {message}"),
            other => panic!("expected invalid, got {other:?}"),
        };
        let cyc = spec(
            FailurePolicy::FailFast,
            10,
            vec![
                after("start", &[]),
                after("a", &["c", "start"]),
                after("b", &["a"]),
                after("c", &["b"]),
            ],
        );
        assert_eq!(err(cyc), "steps[a].depends_on: cycle: a -> b -> c -> a");
        let unknown = spec(FailurePolicy::FailFast, 10, vec![after("a", &["nope"])]);
        assert_eq!(
            err(unknown),
            "steps[a].depends_on[0]: unknown step \"nope\""
        );
        let dup = spec(
            FailurePolicy::FailFast,
            10,
            vec![after("a", &[]), after("a", &[])],
        );
        assert_eq!(
            err(dup),
            "steps[1].name: duplicate step name \"a\" (also steps[0])"
        );
        let mut bad = after("deploy", &[]);
        bad.job.priority = 42;
        let msg = err(spec(FailurePolicy::FailFast, 10, vec![bad]));
        assert!(msg.starts_with("steps[deploy].priority: "), "{msg}");
        let many = (0..=limits::WORKFLOW_STEPS_MAX)
            .map(|i| after(&format!("s{i}"), &[]))
            .collect();
        assert!(err(spec(FailurePolicy::FailFast, 10, many)).starts_with("steps: has 1001"));
        assert!(
            err(spec(FailurePolicy::FailFast, 65, vec![after("a", &[])]))
                .starts_with("max_parallel")
        );
        // Applying a bad spec changes nothing.
        let mut m = Machine::new();
        let before = m.clone();
        let r = m.apply(&Proposal {
            now_ms: 0,
            command: Command::SubmitWorkflow(spec(
                FailurePolicy::FailFast,
                10,
                vec![after("a", &["a"])],
            )),
        });
        assert!(matches!(r, Response::Rejected(_)));
        assert_eq!(m, before);
    }

    /// Retry re-opens the failed step and what it blocked; skip unblocks dependents.
    #[test]
    fn retry_and_skip() {
        let mut r = Run::start(spec(
            FailurePolicy::FailFast,
            10,
            vec![after("a", &[]), after("b", &["a"]), after("c", &["b"])],
        ));
        let first = r.finish("a", false);
        assert_eq!(r.w().state, WorkflowState::Failed);
        assert_eq!((r.state("b"), r.state("c")), (Cancelled, Cancelled));
        let retried = r.apply(Command::Workflow {
            id: r.id,
            op: WorkflowOp::Retry { step: "a".into() },
        });
        assert_eq!(
            retried,
            Response::WorkflowChanged {
                state: WorkflowState::Running
            }
        );
        assert_eq!((r.state("b"), r.state("c")), (Waiting, Waiting));
        let second = r.finish("a", true);
        assert_ne!(first, second, "a new job for the retry");
        assert_eq!(r.w().steps[0].runs, 2);
        // Skip b: c treats it as succeeded.
        r.apply(Command::Workflow {
            id: r.id,
            op: WorkflowOp::Pause,
        });
        let b_job = r.w().steps[1].job_id.unwrap();
        assert_eq!(r.state("b"), Running);
        r.m.apply(&Proposal {
            now_ms: r.now,
            command: Command::Cancel { job_id: b_job },
        });
        assert_eq!(r.state("b"), Cancelled);
        assert_eq!(r.state("c"), Cancelled, "fail_fast");
        let skipped = r.apply(Command::Workflow {
            id: r.id,
            op: WorkflowOp::Skip { step: "b".into() },
        });
        assert!(matches!(skipped, Response::WorkflowChanged { .. }));
        assert_eq!(r.state("c"), Ready, "paused: waits for a slot");
        r.apply(Command::Workflow {
            id: r.id,
            op: WorkflowOp::Resume,
        });
        r.finish("c", true);
        assert_eq!(r.w().state, WorkflowState::Succeeded);
        let bad = r.apply(Command::Workflow {
            id: r.id,
            op: WorkflowOp::Retry { step: "zz".into() },
        });
        assert!(matches!(bad, Response::Rejected(Rejection::Invalid { .. })));
    }

    /// Cancel ends running step jobs and everything not started; a requeue of a step job
    /// through the job API is refused.
    #[test]
    fn cancel_and_requeue_guard() {
        let mut r = Run::start(spec(
            FailurePolicy::Continue,
            10,
            vec![after("a", &[]), after("b", &["a"])],
        ));
        let a_job = r.w().steps[0].job_id.unwrap();
        let c = r.apply(Command::Workflow {
            id: r.id,
            op: WorkflowOp::Cancel,
        });
        assert_eq!(
            c,
            Response::WorkflowChanged {
                state: WorkflowState::Cancelled
            }
        );
        assert_eq!(r.m.job(a_job).unwrap().state, JobState::Cancelled);
        assert_eq!((r.state("a"), r.state("b")), (Cancelled, Cancelled));
        let rq = r.apply(Command::Requeue {
            job_id: a_job,
            changes: Default::default(),
        });
        assert!(matches!(
            rq,
            Response::Rejected(Rejection::Precondition { .. })
        ));
        // Retention removes the workflow.
        r.now += r.m.settings().finished_retention_ms + 1;
        while r.m.workflow(r.id).is_some() {
            r.apply(Command::Tick);
        }
        let bytes = r.m.encode().unwrap();
        assert_eq!(Machine::decode(&bytes).unwrap(), r.m);
    }
}
