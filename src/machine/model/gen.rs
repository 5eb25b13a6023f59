//! The seeded generator of command streams for the model test.
//!
//! Long file: test code only, one generator per command, kept together so the mix of the
//! stream reads in one place.
//!
//! Mostly valid commands, some invalid ones (bad names, out-of-range values, stale or random
//! fencing tokens, cyclic workflows), aimed at real objects: [`Gen::observe`] learns job ids,
//! lease tokens, lock tokens and workflow, schedule, trigger and timer ids from the responses,
//! so later commands hit them. Time advances a little per command, sometimes by minutes or
//! hours (leases, locks and deadlines expire, schedules catch up), and now and then a proposal
//! carries a clock behind the machine's (a new leader with a slower clock).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::machine::command::{Command, JobChanges, Proposal, Report, Response, Settings};
use crate::machine::controls::{BreakerConfig, QueuePolicy, Rate};
use crate::machine::job::{Backoff, ErrorClass, JobId, JobKind, JobSpec, NodeRun};
use crate::machine::jobs::DeadLetter;
use crate::machine::limits;
use crate::machine::resources::Need;
use crate::machine::schedule::{CatchUp, Overlap, ScheduleOp, ScheduleSpec, Target};
use crate::machine::workflow::{
    Condition, Dependency, FailurePolicy, StepSpec, WorkflowOp, WorkflowSpec,
};
use crate::machine::{Machine, WorkerRef};

/// 2026-01-01T00:00:00Z: the stream's clock starts here.
const EPOCH_MS: u64 = 1_767_225_600_000;
const QUEUES: [&str; 4] = ["q0", "q1", "q2", "q3"];
const WORKERS: [&str; 4] = ["w0", "w1", "w2", "w3"];
const CAPS: [&str; 3] = ["gpu", "ssd", "arm"];
const RESOURCES: [&str; 3] = ["r0", "r1", "r2"];
const OWNERS: [&str; 4] = ["o0", "o1", "o2", "o3"];
const TOPICS: [&str; 3] = ["t0", "t1", "t2"];
/// Topics a trigger may subscribe to: operator topics and transitions (not `job.succeeded`,
/// whose chains would multiply the jobs of every stream).
const TRIGGER_TOPICS: [&str; 5] = ["t0", "t1", "job.dead", "job.cancelled", "workflow.failed"];
const EXPRS: [&str; 6] = [
    "@every 2m",
    "@every 10m",
    "*/5 * * * *",
    "0 * * * *",
    "30 9 * * 1-5",
    "0 */30 * * * *",
];
const BAD_EXPRS: [&str; 3] = ["not a cron", "@every 10ms", "* * *"];
const ZONES: [&str; 4] = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"];
/// Remembered ids per kind: older ones are forgotten (the stream still hits them by chance).
const KEEP: usize = 48;
/// Above this many jobs held, the stream consumes (leases, completes) instead of submitting,
/// so the state, and the per-command cost of the invariant check, stays small.
const JOBS_SOFT_MAX: usize = 40;
/// Most schedules and triggers alive at once (each starts work on its own).
const SCHEDULES_SOFT_MAX: usize = 3;
const TRIGGERS_SOFT_MAX: usize = 3;

/// Pushes onto a bounded memory of ids.
fn remember<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= KEEP {
        list.remove(0);
    }
    list.push(item);
}

/// The generator: a seeded PRNG, the clock, and what the responses said so far.
pub(super) struct Gen {
    rng: ChaCha8Rng,
    /// The stream's clock (proposals may carry less).
    now: u64,
    jobs: Vec<JobId>,
    /// Leases granted: (job, token), current until completed or expired.
    leases: Vec<(JobId, u64)>,
    /// Tokens used up.
    stale: Vec<(JobId, u64)>,
    /// Workflows and their step names.
    workflows: Vec<(u64, Vec<String>)>,
    /// Locks granted: (resource, token).
    locks: Vec<(String, u64)>,
    stale_locks: Vec<(String, u64)>,
    schedules: Vec<u64>,
    triggers: Vec<u64>,
    timers: Vec<u64>,
    /// Node id -> newest incarnation registered.
    nodes: BTreeMap<u64, u64>,
    /// Proposals made.
    made: u64,
}

impl Gen {
    /// A generator for `seed`.
    pub(super) fn new(seed: u64) -> Gen {
        Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: EPOCH_MS,
            jobs: Vec::new(),
            leases: Vec::new(),
            stale: Vec::new(),
            workflows: Vec::new(),
            locks: Vec::new(),
            stale_locks: Vec::new(),
            schedules: Vec::new(),
            triggers: Vec::new(),
            timers: Vec::new(),
            nodes: BTreeMap::new(),
            made: 0,
        }
    }

    fn chance(&mut self, one_in: u32) -> bool {
        self.rng.random_range(0..one_in) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn some_of(&mut self, items: &[&str]) -> Vec<String> {
        items
            .iter()
            .filter(|_| self.chance(2))
            .map(|s| s.to_string())
            .collect()
    }

    fn ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.random_range(lo..=hi)
    }

    /// Forgets what no longer exists, so most commands hit live objects (made-up ids and
    /// stale tokens are still drawn on purpose).
    fn prune(&mut self, m: &Machine) {
        let (current, ended): (Vec<_>, Vec<_>) = self.leases.iter().partition(|(id, token)| {
            m.job(*id)
                .and_then(|j| j.lease.as_ref().map(|l| l.token))
                .is_some_and(|t| t == *token)
        });
        self.leases = current;
        for lease in ended {
            remember(&mut self.stale, lease);
        }
        let (held, ended): (Vec<_>, Vec<_>) = self
            .locks
            .drain(..)
            .partition(|(r, token)| m.resource(r).is_some_and(|r| r.locks.contains_key(token)));
        self.locks = held;
        for lock in ended {
            remember(&mut self.stale_locks, lock);
        }
        self.jobs.retain(|id| m.job(*id).is_some());
        self.workflows.retain(|(id, _)| m.workflow(*id).is_some());
        self.schedules.retain(|id| m.schedule(*id).is_some());
        self.triggers.retain(|id| m.triggers().any(|t| t.id == *id));
        self.timers.retain(|id| m.timers().any(|t| t.id == *id));
    }

    /// The next proposal: time moves, then a command is chosen for the machine as it is.
    pub(super) fn next(&mut self, m: &Machine) -> Proposal {
        self.made += 1;
        self.prune(m);
        self.now += match self.rng.random_range(0..3000) {
            0 => self.ms(3_600_000, 2 * 86_400_000),
            1..=20 => self.ms(30_000, 300_000),
            _ => self.ms(0, 500),
        };
        let now_ms = if self.chance(100) {
            self.now.saturating_sub(self.ms(1, 10_000))
        } else {
            self.now
        };
        let command = if self.made == 1 {
            self.configure()
        } else if self.chance(30) {
            let n = self.rng.random_range(2..=6);
            let mut inner: Vec<Command> = (0..n).map(|_| self.command(m)).collect();
            if self.chance(20) {
                inner.push(Command::Batch(vec![Command::Tick]));
            }
            Command::Batch(inner)
        } else {
            self.command(m)
        };
        Proposal { now_ms, command }
    }

    /// One command (never a batch).
    fn command(&mut self, m: &Machine) -> Command {
        let full = m.job_count() > JOBS_SOFT_MAX;
        loop {
            let roll = self.rng.random_range(0..93);
            let producing = matches!(roll, 0..=15 | 40..=43 | 80..=82);
            if full && producing {
                continue;
            }
            return match roll {
                0..=15 => self.submit(),
                16..=29 => self.lease(),
                30..=39 => self.complete(),
                40..=43 => self.submit_workflow(),
                44..=46 => self.workflow_op(),
                47..=48 => Command::Heartbeat {
                    worker: self.pick(&WORKERS).into(),
                },
                49..=50 => self.checkpoint(),
                51..=52 => self.release(),
                53..=55 => self.cancel(),
                56..=57 => self.requeue(),
                58..=59 => Command::PauseQueue {
                    queue: self.pick(&QUEUES).into(),
                    paused: self.chance(2),
                },
                60 => self.purge(),
                61 => self.configure(),
                62 => self.register(),
                63..=64 => self.set_resource(),
                65..=71 => self.lock(),
                72 => self.policy(),
                73..=75 => self.schedule(m),
                76..=79 => self.trigger_or_timer(m),
                80..=82 => self.emit(),
                _ => Command::Tick,
            };
        }
    }

    fn queue(&mut self) -> String {
        match self.rng.random_range(0..60) {
            0 => String::new(),
            1 => "bad queue!".into(),
            _ => self.pick(&QUEUES).into(),
        }
    }

    fn backoff(&mut self) -> Backoff {
        let base_ms = self.ms(0, 2_000);
        Backoff {
            base_ms,
            factor: self.rng.random_range(1..=3),
            cap_ms: base_ms + self.ms(0, 20_000),
            jitter: self.chance(2),
        }
    }

    fn needs(&mut self) -> Vec<Need> {
        if !self.chance(3) {
            return Vec::new();
        }
        let mut needs = Vec::new();
        for r in RESOURCES {
            if self.chance(2) {
                needs.push(Need {
                    resource: r.to_string(),
                    units: self.rng.random_range(1..=2),
                });
            }
        }
        if self.chance(40) {
            needs.push(Need {
                resource: "nope".into(),
                units: 1,
            });
        }
        needs
    }

    /// A job definition with every option drawn; rarely an invalid one.
    fn spec(&mut self) -> JobSpec {
        let kind = if self.chance(4) {
            JobKind::External {
                payload: vec![b'p'; self.rng.random_range(0..16)],
            }
        } else {
            let argv = if self.chance(100) {
                vec![]
            } else {
                vec!["true".to_string()]
            };
            JobKind::Shell {
                argv,
                env: BTreeMap::new(),
                cwd: None,
            }
        };
        let mut spec = JobSpec::new(self.queue(), kind);
        spec.priority = self
            .rng
            .random_range(0..=10)
            .max(u32::from(!self.chance(80)));
        spec.max_attempts = self.rng.random_range(1..=4);
        spec.backoff = self.backoff();
        spec.timeout_ms = self.chance(4).then(|| self.ms(1_000, 60_000));
        spec.lease_ttl_ms = self.ms(1_000, 60_000);
        if self.chance(8) {
            spec.tags = vec!["tag".into()];
        }
        if self.chance(5) {
            spec.required_capabilities = self.some_of(&CAPS);
        }
        if self.chance(5) {
            spec.permanent_exit_codes = vec![2, self.rng.random_range(3..6)];
        }
        if self.chance(6) {
            spec.idempotency_key = Some(format!("k{}", self.rng.random_range(0..20)));
        }
        if self.chance(6) {
            spec.deadline_ms = Some(self.now + self.ms(0, 120_000));
        }
        spec.resources = self.needs();
        spec
    }

    /// A spec for a template (step, schedule, trigger): no idempotency key, mostly.
    fn template(&mut self) -> JobSpec {
        let mut spec = self.spec();
        if !self.chance(30) {
            spec.idempotency_key = None;
        }
        spec
    }

    fn submit(&mut self) -> Command {
        if self.chance(12) {
            return self.submit_dead();
        }
        let spec = self.spec();
        let delay_ms = if self.chance(4) {
            self.ms(0, 60_000)
        } else {
            0
        };
        let run_at_ms = self.chance(10).then(|| {
            let t = self.now + self.ms(0, 90_000);
            t.saturating_sub(30_000)
        });
        Command::Submit {
            spec,
            delay_ms,
            run_at_ms,
        }
    }

    /// A job imported straight into dead letters, now and then with a field over its bound,
    /// a failure time after the submit's or an unknown one.
    fn submit_dead(&mut self) -> Command {
        let spec = self.spec();
        let error = if self.chance(20) {
            "e".repeat(limits::ERROR_BYTES_MAX + 1)
        } else {
            format!("failed elsewhere {}", self.rng.random_range(0..100))
        };
        let output_tail = if self.chance(20) {
            "o".repeat(limits::OUTPUT_TAIL_BYTES_MAX + 1)
        } else {
            "stack trace".into()
        };
        let attempts_made = if self.chance(20) {
            limits::MAX_ATTEMPTS_MAX + 1
        } else {
            self.rng.random_range(0..=5)
        };
        let failed_at_ms = match self.rng.random_range(0..3) {
            0 => None,
            1 => Some(self.now.saturating_sub(self.ms(0, 3_600_000))),
            _ => Some(self.now + self.ms(1, 60_000)),
        };
        Command::SubmitDead {
            spec,
            dead: DeadLetter {
                error,
                attempts_made,
                output_tail,
                failed_at_ms,
                source: if self.chance(2) {
                    "bullmq".into()
                } else {
                    String::new()
                },
            },
        }
    }

    fn lease(&mut self) -> Command {
        let node = self.chance(4).then(|| {
            let node_id = self.rng.random_range(1..=3);
            let known = self.nodes.get(&node_id).copied().unwrap_or(1);
            NodeRun {
                node_id,
                incarnation: if self.chance(5) { known + 7 } else { known },
            }
        });
        let mut queues = if self.chance(2) {
            Vec::new()
        } else {
            self.some_of(&QUEUES)
        };
        if self.chance(80) {
            queues.push("bad queue!".into());
        }
        let capabilities = if self.chance(3) {
            self.some_of(&CAPS)
        } else {
            Vec::new()
        };
        let ttl_ms = match self.rng.random_range(0..40) {
            0 => Some(999),
            1..=19 => Some(self.ms(1_000, 60_000)),
            _ => None,
        };
        Command::Lease {
            worker: WorkerRef {
                id: self.pick(&WORKERS).into(),
                node,
            },
            queues,
            capabilities,
            max: self
                .rng
                .random_range(0..=4)
                .max(u32::from(!self.chance(60))),
            ttl_ms,
        }
    }

    /// A (job, token) pair: mostly a lease granted, else a used-up or made-up one.
    fn lease_ref(&mut self) -> (JobId, u64) {
        let roll = self.rng.random_range(0..10);
        if roll < 7 && !self.leases.is_empty() {
            let i = self.rng.random_range(0..self.leases.len());
            return self.leases[i];
        }
        if roll < 9 && !self.stale.is_empty() {
            let i = self.rng.random_range(0..self.stale.len());
            return self.stale[i];
        }
        (self.job_ref(), self.rng.random_range(0..1_000))
    }

    fn job_ref(&mut self) -> JobId {
        if self.jobs.is_empty() || self.chance(20) {
            return self.rng.random_range(0..500);
        }
        self.jobs[self.rng.random_range(0..self.jobs.len())]
    }

    fn complete(&mut self) -> Command {
        let (job_id, token) = self.lease_ref();
        let classes = [
            ErrorClass::Transient,
            ErrorClass::Permanent,
            ErrorClass::Timeout,
            ErrorClass::Transient,
            ErrorClass::LostLease,
        ];
        let error_class = if self.chance(2) {
            None
        } else {
            Some(classes[self.rng.random_range(0..classes.len())])
        };
        let report = Report {
            error_class,
            exit_code: self.chance(2).then(|| self.rng.random_range(0..5)),
            error: if error_class.is_some() {
                "boom".into()
            } else {
                String::new()
            },
            output_tail: "out".into(),
        };
        Command::Complete {
            job_id,
            token,
            report,
        }
    }

    fn checkpoint(&mut self) -> Command {
        let (job_id, token) = self.lease_ref();
        Command::Checkpoint {
            job_id,
            token,
            data: vec![b'c'; self.rng.random_range(0..32)],
        }
    }

    fn release(&mut self) -> Command {
        let (job_id, token) = self.lease_ref();
        Command::Release { job_id, token }
    }

    fn cancel(&mut self) -> Command {
        let job_id = if self.chance(2) && !self.leases.is_empty() {
            self.leases[self.rng.random_range(0..self.leases.len())].0
        } else {
            self.job_ref()
        };
        Command::Cancel { job_id }
    }

    fn requeue(&mut self) -> Command {
        let changes = JobChanges {
            argv: self.chance(4).then(|| vec!["false".to_string()]),
            env: self
                .chance(6)
                .then(|| vec![("A".to_string(), "1".to_string())]),
            priority: self.chance(3).then(|| self.rng.random_range(0..=11)),
            max_attempts: self.chance(3).then(|| self.rng.random_range(1..=5)),
        };
        Command::Requeue {
            job_id: self.job_ref(),
            changes,
        }
    }

    fn purge(&mut self) -> Command {
        Command::PurgeDead {
            queue: self.chance(2).then(|| self.pick(&QUEUES).to_string()),
        }
    }

    /// Short retentions, so finished jobs leave within a stream.
    fn configure(&mut self) -> Command {
        Command::Configure(Settings {
            dead_retention_ms: self.ms(10_000, 600_000),
            finished_retention_ms: self.ms(10_000, 300_000),
            idempotency_window_ms: self.ms(10_000, 3_600_000),
            priority_aging_ms: self.ms(1_000, 120_000),
        })
    }

    fn register(&mut self) -> Command {
        let node_id = self.rng.random_range(1..=3);
        let next = self.nodes.get(&node_id).map_or(1, |i| i + 1);
        let incarnation = if self.chance(6) { next - 1 } else { next };
        Command::RegisterNode {
            node_id,
            incarnation,
        }
    }

    fn set_resource(&mut self) -> Command {
        let name = if self.chance(40) {
            "bad name!".into()
        } else {
            self.pick(&RESOURCES).to_string()
        };
        let capacity = if self.chance(40) {
            20_000
        } else {
            self.rng.random_range(0..=4).max(u32::from(!self.chance(8)))
        };
        Command::SetResource { name, capacity }
    }

    /// Acquire, renew or release a lock, with the current token or a stale or made-up one.
    fn lock(&mut self) -> Command {
        let ttl_ms = if self.chance(40) {
            10
        } else {
            self.ms(1_000, 60_000)
        };
        let roll = self.rng.random_range(0..10);
        if roll < 4 {
            let resource = if self.chance(30) {
                "nope".into()
            } else {
                self.pick(&RESOURCES).to_string()
            };
            return Command::LockAcquire {
                resource,
                owner: self.pick(&OWNERS).into(),
                ttl_ms,
            };
        }
        let (resource, token) = match self.rng.random_range(0..10) {
            0..=6 if !self.locks.is_empty() => {
                self.locks[self.rng.random_range(0..self.locks.len())].clone()
            }
            0..=8 if !self.stale_locks.is_empty() => {
                self.stale_locks[self.rng.random_range(0..self.stale_locks.len())].clone()
            }
            _ => (
                self.pick(&RESOURCES).to_string(),
                self.rng.random_range(0..20),
            ),
        };
        if roll < 7 {
            Command::LockRenew {
                resource,
                token,
                ttl_ms,
            }
        } else {
            Command::LockRelease { resource, token }
        }
    }

    fn policy(&mut self) -> Command {
        let policy = QueuePolicy {
            rate: self.chance(3).then(|| Rate {
                count: self.rng.random_range(0..=5),
                per_ms: self.ms(1_000, 10_000),
            }),
            concurrency: self.chance(3).then(|| self.rng.random_range(1..=4)),
            breaker: self.chance(3).then(|| BreakerConfig {
                threshold_pct: self.rng.random_range(20..=80),
                window: self.rng.random_range(2..=10),
                cooldown_ms: self.ms(1_000, 60_000),
            }),
        };
        Command::SetQueuePolicy {
            queue: self.queue(),
            policy,
        }
    }

    /// A workflow of up to 5 steps, each depending on earlier ones (a DAG); one in ten is
    /// broken (a cycle, an unknown dependency or a repeated name).
    fn workflow_spec(&mut self) -> WorkflowSpec {
        let n = self.rng.random_range(1..=5);
        let mut steps = Vec::new();
        for i in 0..n {
            let mut depends_on = Vec::new();
            for d in 0..i {
                if self.chance(2) {
                    let conditions = [Condition::Success, Condition::Failure, Condition::Always];
                    depends_on.push(Dependency {
                        step: format!("s{d}"),
                        condition: conditions[self.rng.random_range(0..3)],
                    });
                }
            }
            steps.push(StepSpec {
                name: format!("s{i}"),
                job: self.template(),
                depends_on,
                compensate: self.chance(4).then(|| self.template()),
            });
        }
        match self.rng.random_range(0..30) {
            0 if n > 1 => steps[0].depends_on.push(Dependency {
                step: format!("s{}", n - 1),
                condition: Condition::Success,
            }),
            1 => steps[n - 1].depends_on.push(Dependency {
                step: "zz".into(),
                condition: Condition::Success,
            }),
            2 if n > 1 => steps[1].name = "s0".into(),
            _ => {}
        }
        WorkflowSpec {
            name: format!("wf{}", self.rng.random_range(0..5)),
            failure_policy: if self.chance(2) {
                FailurePolicy::FailFast
            } else {
                FailurePolicy::Continue
            },
            max_parallel: self
                .rng
                .random_range(0..=4)
                .max(u32::from(!self.chance(40))),
            steps,
        }
    }

    fn submit_workflow(&mut self) -> Command {
        Command::SubmitWorkflow(self.workflow_spec())
    }

    fn workflow_op(&mut self) -> Command {
        let (id, steps) = if self.workflows.is_empty() || self.chance(20) {
            (self.rng.random_range(0..50), vec!["s0".to_string()])
        } else {
            self.workflows[self.rng.random_range(0..self.workflows.len())].clone()
        };
        let step = steps[self.rng.random_range(0..steps.len())].clone();
        let op = match self.rng.random_range(0..10) {
            0 => WorkflowOp::Cancel,
            1 => WorkflowOp::Pause,
            2..=3 => WorkflowOp::Resume,
            4..=6 => WorkflowOp::Retry { step },
            _ => WorkflowOp::Skip { step },
        };
        Command::Workflow { id, op }
    }

    fn target(&mut self) -> Target {
        if self.chance(5) {
            let mut w = self.workflow_spec();
            w.steps.truncate(2);
            Target::Workflow(w)
        } else {
            Target::Job(Box::new(self.template()))
        }
    }

    /// Create a schedule (while fewer than a few exist) or operate on one.
    fn schedule(&mut self, m: &Machine) -> Command {
        if m.schedules().count() < SCHEDULES_SOFT_MAX && self.chance(2) {
            let start_ms = self.chance(4).then(|| self.now + self.ms(0, 600_000));
            let end_ms = self.chance(4).then(|| self.now + self.ms(0, 86_400_000));
            let catch_up = match self.rng.random_range(0..30) {
                0..=9 => CatchUp::Skip,
                10..=19 => CatchUp::Latest,
                20 => CatchUp::All(0),
                _ => CatchUp::All(self.rng.random_range(1..=4)),
            };
            let overlap = [
                Overlap::Allow,
                Overlap::Skip,
                Overlap::Queue,
                Overlap::Queue,
            ][self.rng.random_range(0..4)];
            return Command::CreateSchedule(ScheduleSpec {
                name: format!("sch{}", self.rng.random_range(0..6)),
                expr: if self.chance(10) {
                    self.pick(&BAD_EXPRS).into()
                } else {
                    self.pick(&EXPRS).into()
                },
                tz: if self.chance(20) {
                    "Mars/Olympus".into()
                } else {
                    self.pick(&ZONES).into()
                },
                start_ms,
                end_ms,
                target: self.target(),
                catch_up,
                overlap,
            });
        }
        let id = if self.schedules.is_empty() || self.chance(10) {
            self.rng.random_range(0..20)
        } else {
            self.schedules[self.rng.random_range(0..self.schedules.len())]
        };
        let op = match self.rng.random_range(0..10) {
            0..=1 => ScheduleOp::Pause,
            2..=4 => ScheduleOp::Resume,
            5 => ScheduleOp::Trigger,
            6..=7 => ScheduleOp::Delete,
            _ => {
                let to_ms = self.now.saturating_sub(self.ms(0, 3_600_000));
                ScheduleOp::Backfill {
                    from_ms: to_ms.saturating_sub(self.ms(0, 1_200_000)),
                    to_ms,
                }
            }
        };
        Command::Schedule { id, op }
    }

    /// Create or delete a trigger, or create or cancel a timer.
    fn trigger_or_timer(&mut self, m: &Machine) -> Command {
        match self.rng.random_range(0..4) {
            0 if m.triggers().count() < TRIGGERS_SOFT_MAX => Command::CreateTrigger {
                topic: self.pick(&TRIGGER_TOPICS).into(),
                target: self.target(),
            },
            0 | 1 => Command::DeleteTrigger {
                id: self.known(|g| &g.triggers, 20),
            },
            2 => {
                let due_ms = self.chance(2).then(|| {
                    let t = self.now + self.ms(0, 120_000);
                    t.saturating_sub(10_000)
                });
                Command::CreateTimer {
                    due_ms,
                    delay_ms: self.ms(0, 120_000),
                    topic: self.pick(&TOPICS).into(),
                    dedup_key: format!("d{}", self.rng.random_range(0..10)),
                    payload: b"tick".to_vec(),
                }
            }
            _ => Command::CancelTimer {
                id: self.known(|g| &g.timers, 50),
            },
        }
    }

    /// A remembered id, or a made-up one below `made_up`.
    fn known(&mut self, list: impl Fn(&Gen) -> &Vec<u64>, made_up: u64) -> u64 {
        let len = list(self).len();
        if len == 0 || self.chance(8) {
            return self.rng.random_range(0..made_up);
        }
        let i = self.rng.random_range(0..len);
        list(self)[i]
    }

    fn emit(&mut self) -> Command {
        let topic = match self.rng.random_range(0..40) {
            0 => "job.dead".into(),
            1 => "bad topic!".into(),
            _ => self.pick(&TOPICS).to_string(),
        };
        let dedup_key = if self.chance(40) {
            String::new()
        } else {
            format!("e{}", self.rng.random_range(0..10))
        };
        Command::Emit {
            topic,
            dedup_key,
            payload: vec![b'e'; self.rng.random_range(0..8)],
        }
    }

    /// Learns ids and tokens from a command's response.
    pub(super) fn observe(&mut self, command: &Command, response: &Response) {
        match (command, response) {
            (Command::Batch(commands), Response::Batch(responses)) => {
                for (c, r) in commands.iter().zip(responses) {
                    self.observe(c, r);
                }
            }
            (_, Response::Submitted { id, .. }) => remember(&mut self.jobs, *id),
            (_, Response::Leased(grants)) => {
                for g in grants {
                    remember(&mut self.jobs, g.job_id);
                    remember(&mut self.leases, (g.job_id, g.token));
                }
            }
            (Command::Complete { job_id, token, .. }, Response::Completed { .. })
            | (Command::Release { job_id, token }, Response::Done { .. }) => {
                self.leases.retain(|l| *l != (*job_id, *token));
                remember(&mut self.stale, (*job_id, *token));
            }
            (Command::SubmitWorkflow(spec), Response::WorkflowSubmitted { id }) => {
                let names = spec.steps.iter().map(|s| s.name.clone()).collect();
                remember(&mut self.workflows, (*id, names));
            }
            (Command::LockAcquire { resource, .. }, Response::LockGranted { token, .. }) => {
                remember(&mut self.locks, (resource.clone(), *token));
            }
            (Command::LockRelease { resource, token }, Response::Ok) => {
                let lock = (resource.clone(), *token);
                self.locks.retain(|l| *l != lock);
                remember(&mut self.stale_locks, lock);
            }
            (_, Response::ScheduleCreated { id, .. }) => remember(&mut self.schedules, *id),
            (_, Response::TriggerCreated { id }) => remember(&mut self.triggers, *id),
            (_, Response::TimerCreated { id, .. }) => remember(&mut self.timers, *id),
            (_, Response::Emitted { started, .. }) => {
                for id in &started.jobs {
                    remember(&mut self.jobs, *id);
                }
            }
            (
                Command::RegisterNode {
                    node_id,
                    incarnation,
                },
                Response::NodeRegistered { .. },
            ) => {
                self.nodes.insert(*node_id, *incarnation);
            }
            _ => {}
        }
    }
}
