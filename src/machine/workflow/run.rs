//! One workflow's own state machine: judging steps against their dependencies' conditions,
//! skip propagation, `fail_fast`, rollback order, re-opening after a retry or skip, the
//! critical path, and the workflow's own invariants.

use std::collections::BTreeSet;

use super::super::command::{precondition, Rejection, Response};
use super::super::job::JobId;
use super::{Compensation, Condition, StepRun, StepState, Workflow, WorkflowId, WorkflowState};

impl Workflow {
    /// Steps in an order where every step comes after its dependencies.
    pub(super) fn topo_order(&self) -> Vec<u32> {
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
    pub(super) fn is_handler(&self, i: usize) -> bool {
        self.deps[i]
            .iter()
            .any(|(_, c)| matches!(c, Condition::Failure | Condition::Always))
    }

    /// Whether dependency `dep` holds under `condition`, or cannot hold any more; `None`
    /// while it has not ended.
    pub(super) fn holds(&self, dep: u32, condition: Condition) -> Option<bool> {
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

    pub(super) fn end_step(&mut self, i: usize, state: StepState, now: u64, error: Option<String>) {
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
    pub(super) fn resolve_from(&mut self, changed: Vec<u32>, now: u64) {
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
    pub(super) fn judge(&mut self, d: u32, now: u64) -> bool {
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
    pub(super) fn stop_unstarted(&mut self, now: u64) -> Vec<u32> {
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
    pub(super) fn downstream_settled(&self, i: usize) -> bool {
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
    pub(super) fn release_compensations(&mut self) {
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

impl Workflow {
    /// Starts the rollback of a failed workflow if a step that succeeded has a compensation;
    /// returns whether it did.
    pub(super) fn start_rollback(&mut self) -> bool {
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
    pub(super) fn check_reopen(&self, name: &str, retry: bool) -> Result<u32, Response> {
        let id = self.id;
        let state = self.state;
        let Some(i) = self.step_index(name) else {
            return Err(Response::Rejected(Rejection::invalid(
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
    pub(super) fn reopen(&mut self, i: u32, retry: bool, now: u64) {
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
    pub(super) fn check_invariants(&self, id: WorkflowId, job_open: &impl Fn(JobId) -> bool) {
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
