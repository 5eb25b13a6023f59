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
}

use StepState::*;

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
