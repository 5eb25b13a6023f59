//! Workflow tests: DAG validation, the rolling frontier, conditions, failure policies,
//! rollback and operations, driven through [`Machine::apply`].

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
        err(spec(FailurePolicy::FailFast, 65, vec![after("a", &[])])).starts_with("max_parallel")
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
