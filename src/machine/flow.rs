//! Commands that span subsystems: the machine reads what each subsystem owns and calls each
//! one's transitions in turn, draining their effects as it goes. This is the only code that
//! sees more than one subsystem's state; every subsystem module sees its own alone.

use super::command::{exhausted, Ctx, Grant, Response, WorkerRef};
use super::effect::Effect;
use super::events::{Started, Timer};
use super::job::{validate_queue_name, Job, JobId, JobSpec, JobState};
use super::resources::{ResourceView, Resources};
use super::schedule::{RunOutcome, ScheduleId, ScheduleOp, ScheduleSpec, Target};
use super::workflow::{Settled, StepRef, WorkflowId, WorkflowOp, WorkflowSpec};
use super::{limits, Machine};

/// Jobs, queues, nodes and resources.
impl Machine {
    /// The context every transition reads.
    pub(super) fn ctx(&self) -> Ctx {
        Ctx {
            now_ms: self.now_ms,
            settings: self.settings,
        }
    }

    pub(super) fn submit(
        &mut self,
        spec: &JobSpec,
        delay_ms: u64,
        run_at_ms: Option<u64>,
    ) -> Response {
        let ctx = self.ctx();
        let checked = super::jobs::Jobs::check_submit(ctx, spec, delay_ms, run_at_ms)
            .and_then(|()| self.resources.check_needs("", spec));
        if let Err(r) = checked {
            return r;
        }
        if let Some(id) = self.jobs.duplicate(spec) {
            return Response::Submitted {
                id,
                duplicate: true,
            };
        }
        if let Err(r) = self.jobs.check_room(spec) {
            return r;
        }
        if self.jobs.stats(&spec.queue).total() == 0
            && self.queue_names().len() >= limits::QUEUES_MAX
        {
            return exhausted(format!(
                "{} queues exist, the limit (QUEUES_MAX)",
                limits::QUEUES_MAX
            ));
        }
        let id = self.jobs.submit(ctx, spec, delay_ms, run_at_ms);
        Response::Submitted {
            id,
            duplicate: false,
        }
    }

    pub(super) fn register_node(&mut self, node_id: u64, incarnation: u64) -> Response {
        let ctx = self.ctx();
        if let Err(r) = self.nodes.register(ctx, node_id, incarnation) {
            return r;
        }
        let stale = self.jobs.leases_of_other_runs(node_id, incarnation);
        for id in &stale {
            let why = format!("node {node_id} restarted");
            self.with_jobs(|jobs, ctx, fx| jobs.lose_lease(ctx, fx, *id, &why));
        }
        Response::NodeRegistered {
            released: stale.len() as u32,
        }
    }

    pub(super) fn lease(
        &mut self,
        worker: &WorkerRef,
        queues: &[String],
        capabilities: &[String],
        max: u32,
        ttl_ms: Option<u64>,
    ) -> Response {
        let checked = super::jobs::Jobs::check_worker(&worker.id)
            .and_then(|()| {
                worker
                    .node
                    .map_or(Ok(()), |run| self.nodes.check_current(run))
            })
            .and_then(|()| {
                super::jobs::Jobs::check_lease_request(queues, capabilities, max, ttl_ms)
            });
        if let Err(r) = checked {
            return r;
        }
        let queues: Vec<String> = if queues.is_empty() {
            self.jobs.index().ready.keys().cloned().collect()
        } else {
            queues.to_vec()
        };
        let mut grants: Vec<Grant> = Vec::new();
        let mut bytes = 0;
        while grants.len() < max as usize && bytes < limits::LEASE_RESPONSE_BYTES_MAX {
            let Some(id) = self.best_ready(&queues, capabilities, worker.node.is_some()) else {
                break;
            };
            let grant = self.with_jobs(|jobs, ctx, fx| jobs.grant(ctx, fx, id, worker, ttl_ms));
            bytes += grant.spec.size_bytes() + grant.checkpoint.as_ref().map_or(0, Vec::len);
            grants.push(grant);
        }
        Response::Leased(grants)
    }

    /// The ready job that leases next among `queues`: the smallest key among each unpaused,
    /// open queue's first leasable job. A node's own executor (`shell_only`) runs shell jobs
    /// only; external jobs wait for an external worker.
    pub(super) fn best_ready(
        &self,
        queues: &[String],
        capabilities: &[String],
        shell_only: bool,
    ) -> Option<JobId> {
        let mut best: Option<(u64, u64, JobId)> = None;
        for queue in queues {
            if self.controls.is_paused(queue) || !self.queue_open(queue) {
                continue;
            }
            let candidate = self
                .jobs
                .first_leasable(queue, capabilities, shell_only, |job| self.fits(job));
            if let Some(key) = candidate {
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        best.map(|(_, _, id)| id)
    }

    /// Whether the queue's policy lets one more job be leased now.
    fn queue_open(&self, queue: &str) -> bool {
        let leased = self.jobs.stats(queue).counts[JobState::Leased as usize];
        self.controls.open(self.ctx(), queue, leased, |id| {
            self.jobs
                .get(id)
                .is_some_and(|j| j.state == JobState::Leased)
        })
    }

    /// Queues with ready jobs.
    pub fn ready_queues(&self) -> impl Iterator<Item = &str> + '_ {
        self.jobs.index().ready.keys().map(String::as_str)
    }

    /// Why a lease found nothing to take from `queue` although it has ready jobs and is not
    /// paused: the part of its policy that refused (`concurrency`, `breaker`, `rate`), or
    /// `None` when the queue is open or has nothing ready. For the refusal metrics.
    pub fn lease_refused_by(&self, queue: &str) -> Option<&'static str> {
        if !self.controls.has_policies()
            || self.controls.is_paused(queue)
            || !self.jobs.has_ready(queue)
        {
            return None;
        }
        let leased = self.jobs.stats(queue).counts[JobState::Leased as usize];
        self.controls.closed_by(self.ctx(), queue, leased, |id| {
            self.jobs
                .get(id)
                .is_some_and(|j| j.state == JobState::Leased)
        })
    }

    /// Units of a resource leased jobs hold.
    fn used_by_jobs(&self, name: &str) -> u32 {
        self.jobs
            .index()
            .resource_used
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Whether every resource `job` needs has room for it after the ready jobs ranked ahead of
    /// it that need the same resource (see `resources.rs`).
    fn fits(&self, job: &Job) -> bool {
        job.spec.resources.iter().all(|need| {
            let free = self
                .resources
                .free_units(&need.resource, self.used_by_jobs(&need.resource));
            if free < need.units {
                return false;
            }
            let key = (job.rank, job.seq, job.id);
            let ahead: u32 = self
                .jobs
                .index()
                .resource_waiters
                .get(&need.resource)
                .into_iter()
                .flat_map(|w| w.range(..key))
                .take(limits::RESOURCE_SCAN_MAX)
                .filter_map(|(_, _, id)| self.jobs.get(*id))
                .filter(|j| !self.controls.is_paused(&j.spec.queue))
                .map(|j| Resources::units_of(&j, &need.resource))
                .sum();
            free >= ahead.saturating_add(need.units)
        })
    }

    /// Ready jobs that need a resource, in lease order (with the units they need).
    fn resource_waiters(&self, name: &str) -> impl Iterator<Item = (JobId, u32)> + '_ {
        let name = name.to_string();
        self.jobs
            .index()
            .resource_waiters
            .get(&name)
            .into_iter()
            .flatten()
            .filter_map(|(_, _, id)| self.jobs.get(*id))
            .map(move |j| (j.id, Resources::units_of(&j, &name)))
    }

    pub(super) fn set_resource(&mut self, name: &str, capacity: u32) -> Response {
        let used = self.used_by_jobs(name);
        let needed = self
            .resource_waiters(name)
            .map(|(_, units)| units)
            .max()
            .unwrap_or(0);
        self.resources.set(name, capacity, used, || needed)
    }

    pub(super) fn lock_acquire(&mut self, name: &str, owner: &str, ttl_ms: u64) -> Response {
        let used = self.used_by_jobs(name);
        self.resources
            .acquire(self.ctx(), name, owner, ttl_ms, used)
    }

    /// Every resource, or one, as clients see it.
    pub fn resource_views(&self, only: Option<&str>) -> Vec<ResourceView> {
        self.resources
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .map(|(name, r)| {
                let job_holders: Vec<(JobId, u32)> = self
                    .jobs
                    .index()
                    .worker_leases
                    .values()
                    .flatten()
                    .filter_map(|id| self.jobs.get(*id))
                    .filter_map(|j| {
                        let units = Resources::units_of(&j, name);
                        (units > 0).then_some((j.id, units))
                    })
                    .collect();
                ResourceView {
                    name: name.clone(),
                    capacity: r.capacity,
                    used_by_jobs: self.used_by_jobs(name),
                    job_holders,
                    locks: r.locks.values().cloned().collect(),
                    waiters: self.resource_waiters(name).take(100).collect(),
                }
            })
            .collect()
    }

    pub(super) fn pause_queue(&mut self, queue: &str, paused: bool) -> Response {
        if let Err(r) = validate_queue_name("queue", queue) {
            return Response::Rejected(r);
        }
        if paused {
            let known =
                self.jobs.index().queues.contains_key(queue) || self.controls.is_paused(queue);
            if !known && self.queue_names().len() >= limits::QUEUES_MAX {
                return exhausted(format!("{} queues exist, the limit", limits::QUEUES_MAX));
            }
        }
        self.controls.set_paused(queue, paused);
        Response::Ok
    }

    /// Cancels a job and settles what its end causes.
    pub(super) fn cancel_job(&mut self, id: JobId) -> Response {
        self.with_jobs(|jobs, ctx, fx| jobs.cancel(ctx, fx, id))
    }

    /// Runs `f` on the jobs subsystem with the context and an effect buffer, then drains the
    /// effects.
    pub(super) fn with_jobs<T>(
        &mut self,
        f: impl FnOnce(&mut super::jobs::Jobs, Ctx, &mut Vec<Effect>) -> T,
    ) -> T {
        let ctx = self.ctx();
        let mut fx = Vec::new();
        let result = f(&mut self.jobs, ctx, &mut fx);
        self.drain(fx);
        result
    }

    /// Processes everything due at `now_ms`, at most `TICK_WORK_MAX` items, in a fixed
    /// order of subsystems.
    pub(super) fn tick(&mut self) -> Response {
        let mut work = 0;
        while work < limits::TICK_WORK_MAX {
            if !self.tick_one() {
                break;
            }
            work += 1;
        }
        Response::Ticked { work: work as u32 }
    }

    fn tick_one(&mut self) -> bool {
        let ctx = self.ctx();
        let now = ctx.now_ms;
        if self.with_jobs(|jobs, ctx, fx| jobs.tick_one(ctx, fx)) {
            return true;
        }
        if self.resources.expire_one(now) {
            return true;
        }
        if let Some(timer) = self.events.take_due_timer(now) {
            self.fire_timer(timer);
            return true;
        }
        let jobs = &self.jobs;
        self.controls.tick_one(ctx, |q| jobs.has_ready(q))
            || self.tick_schedules()
            || self.events.expire_key(now)
            || self.workflows.purge_one(now)
            || self.jobs.expire_key(now)
    }
}

/// Workflows.
impl Machine {
    pub(super) fn submit_workflow(&mut self, spec: &WorkflowSpec) -> Response {
        let resolved = match spec.resolve() {
            Ok(resolved) => resolved,
            Err(r) => return Response::Rejected(r),
        };
        for step in &spec.steps {
            let at = format!("steps[{}].", step.name);
            if let Err(r) = self.resources.check_needs(&at, &step.job) {
                return r;
            }
            if let Some(c) = &step.compensate {
                if let Err(r) = self.resources.check_needs(&format!("{at}compensate."), c) {
                    return r;
                }
            }
        }
        if let Err(r) = self.workflows.check_room() {
            return r;
        }
        if self.jobs.len() + spec.steps.len() > limits::JOBS_MAX {
            return exhausted(format!(
                "the cluster holds {} jobs; {} more steps would pass the limit (JOBS_MAX {})",
                self.jobs.len(),
                spec.steps.len(),
                limits::JOBS_MAX
            ));
        }
        let id = self.workflows.create(self.ctx(), spec, resolved);
        self.dispatch(id);
        Response::WorkflowSubmitted { id }
    }

    /// Creates jobs for ready steps (or compensations) while the workflow has free slots.
    fn dispatch(&mut self, id: WorkflowId) {
        while let Some((_, spec, link)) = self.workflows.next_to_dispatch(id) {
            let ctx = self.ctx();
            let job_id = self.jobs.insert(ctx, &spec, ctx.now_ms, Some(link));
            self.workflows.dispatched(link, job_id);
        }
    }

    /// A step's job reached a terminal state: the step ends, and the workflow moves on in the
    /// same apply (dependents ready or skipped, slots refilled, failure policy, rollback).
    pub(super) fn step_job_finished(&mut self, link: StepRef, job_id: JobId) {
        let job = self.jobs.get(job_id).expect("finished job");
        let (state, error) = (job.state, job.error.clone());
        let ctx = self.ctx();
        let Some(unleased) = self
            .workflows
            .step_job_finished(ctx, link, job_id, state, error)
        else {
            return;
        };
        // Each cancel calls back here for its step.
        for job in unleased {
            self.cancel_job(job);
        }
        self.settle(link.workflow);
    }

    /// Refills slots, and ends the workflow (or starts its rollback) once nothing is left.
    fn settle(&mut self, id: WorkflowId) {
        self.dispatch(id);
        let mut fx = Vec::new();
        match self.workflows.settle(self.ctx(), &mut fx, id) {
            Settled::Open => {}
            Settled::Compensating => self.dispatch(id),
            Settled::Ended => self.drain(fx),
        }
    }

    pub(super) fn workflow_op(&mut self, id: WorkflowId, op: &WorkflowOp) -> Response {
        let step = match self.workflows.check_op(id, op) {
            Ok(step) => step,
            Err(r) => return r,
        };
        let ctx = self.ctx();
        match op {
            WorkflowOp::Pause | WorkflowOp::Resume => {
                self.workflows
                    .set_paused(id, matches!(op, WorkflowOp::Pause));
                self.dispatch(id);
            }
            WorkflowOp::Cancel => {
                let mut fx = Vec::new();
                let jobs = self.workflows.cancel(ctx, &mut fx, id);
                self.drain(fx);
                // Each cancel ends its job, which calls back into `step_job_finished`: the
                // step is marked cancelled and nothing else moves, the workflow being
                // cancelled already.
                for job in jobs {
                    self.cancel_job(job);
                }
            }
            WorkflowOp::Retry { .. } | WorkflowOp::Skip { .. } => {
                let retry = matches!(op, WorkflowOp::Retry { .. });
                let i = step.expect("checked step");
                self.workflows.reopen(ctx, id, i, retry);
                self.settle(id);
            }
        }
        Response::WorkflowChanged {
            state: self.workflows.state(id),
        }
    }
}

/// Events, triggers, timers and schedules.
impl Machine {
    pub(super) fn create_trigger(&mut self, topic: &str, target: &Target) -> Response {
        let checked =
            super::events::Events::check_trigger(topic, target).and_then(|()| match target {
                Target::Job(spec) => self.resources.check_needs("", spec),
                Target::Workflow(_) => Ok(()),
            });
        if let Err(r) = checked {
            return r;
        }
        self.events.create_trigger(self.ctx(), topic, target)
    }

    pub(super) fn emit(&mut self, topic: &str, key: &str, payload: &[u8]) -> Response {
        if let Err(r) = super::events::Events::check_event(topic, key, payload) {
            return r;
        }
        match self.fire_event(topic, key, payload, 0) {
            Some(started) => {
                self.notify_event(topic, key, payload);
                Response::Emitted {
                    started,
                    duplicate: false,
                }
            }
            None => Response::Emitted {
                started: Started::default(),
                duplicate: true,
            },
        }
    }

    /// Starts the subscribers of `topic` unless `(topic, key)` was seen within the window
    /// (`None` then). `depth` is the depth of the work that caused the event.
    pub(super) fn fire_event(
        &mut self,
        topic: &str,
        key: &str,
        payload: &[u8],
        depth: u8,
    ) -> Option<Started> {
        let targets = self.events.claim(self.ctx(), topic, key, payload)?;
        let mut started = Started::default();
        for (trigger, target) in targets {
            match target {
                Target::Job(spec) => match self.submit(&spec, 0, None) {
                    Response::Submitted { id, .. } => {
                        self.jobs.set_depth(id, depth.saturating_add(1));
                        started.jobs.push(id);
                    }
                    other => started.failed.push(format!("trigger {trigger}: {other:?}")),
                },
                Target::Workflow(w) => match self.submit_workflow(&w) {
                    Response::WorkflowSubmitted { id } => {
                        self.workflows.set_depth(id, depth.saturating_add(1));
                        started.workflows.push(id);
                    }
                    other => started.failed.push(format!("trigger {trigger}: {other:?}")),
                },
            }
        }
        Some(started)
    }

    /// A transition of work at `depth`: fires `topic` for its subscribers, if any, unless the
    /// chain is at its bound.
    pub(super) fn transition_event(&mut self, topic: &str, key: String, depth: u8) {
        if depth >= limits::TRIGGER_DEPTH_MAX || !self.events.has_topic(topic) {
            return;
        }
        self.fire_event(topic, &key, key.as_bytes(), depth);
    }

    fn fire_timer(&mut self, t: Timer) {
        if self
            .fire_event(&t.topic, &t.dedup_key, &t.payload, 0)
            .is_some()
        {
            self.notify_event(&t.topic, &t.dedup_key, &t.payload);
        }
    }

    pub(super) fn create_timer(
        &mut self,
        due_ms: Option<u64>,
        delay_ms: u64,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Response {
        let due = due_ms.unwrap_or(self.now_ms.saturating_add(delay_ms));
        self.events
            .create_timer(self.ctx(), due, topic, key, payload)
    }

    pub(super) fn create_schedule(&mut self, spec: &ScheduleSpec) -> Response {
        if let Err(r) = spec.validate() {
            return Response::Rejected(r);
        }
        if let Target::Job(job) = &spec.target {
            if let Err(r) = self.resources.check_needs("", job) {
                return r;
            }
        }
        self.schedules.create(self.ctx(), spec)
    }

    /// Starts one run of schedule `id` for `tick_ms`: a job keyed `schedule:{id}:{tick}` (a
    /// repeat of a key already used within the idempotency window starts nothing), or a
    /// workflow. A `trigger` run is keyed `schedule:{id}:trigger:{time}` instead, so it never
    /// collides with a tick.
    fn start_run(
        &mut self,
        id: ScheduleId,
        tick_ms: u64,
        manual: bool,
        trigger: bool,
    ) -> RunOutcome {
        let response = match self.schedules.target(id) {
            Target::Job(spec) => {
                let mut spec = *spec;
                let trigger = if trigger { "trigger:" } else { "" };
                spec.idempotency_key = Some(format!("schedule:{id}:{trigger}{tick_ms}"));
                self.submit(&spec, 0, None)
            }
            Target::Workflow(w) => self.submit_workflow(&w),
        };
        let outcome = match response {
            Response::Submitted {
                duplicate: true, ..
            } => RunOutcome::Skipped(format!("tick {tick_ms} already ran")),
            Response::Submitted { id, .. } => RunOutcome::Job(id),
            Response::WorkflowSubmitted { id } => RunOutcome::Workflow(id),
            Response::Rejected(r) => RunOutcome::Failed(format!("{r:?}")),
            other => RunOutcome::Failed(format!("{other:?}")),
        };
        self.schedules
            .record(self.ctx(), id, tick_ms, manual, outcome.clone());
        outcome
    }

    /// Whether a schedule's newest run has not ended.
    fn run_unfinished(&self, id: ScheduleId) -> bool {
        match self.schedules.last_run(id) {
            Some(RunOutcome::Job(j)) => self.jobs.get(*j).is_some_and(|j| !j.state.is_terminal()),
            Some(RunOutcome::Workflow(w)) => self
                .workflows
                .get(*w)
                .is_some_and(|w| !w.state.is_terminal()),
            _ => false,
        }
    }

    /// Processes one due schedule: a queued tick whose previous run ended, or every tick due
    /// by now under the catch-up policy (each under the overlap policy). Returns false when
    /// nothing was due.
    fn tick_schedules(&mut self) -> bool {
        let ready_queue = self.schedules.queued().find(|id| !self.run_unfinished(*id));
        if let Some(id) = ready_queue {
            let tick = self.schedules.pop_queued(id);
            self.start_run(id, tick, false, false);
            return true;
        }
        let Some((id, due, next, missed)) = self.schedules.take_due(self.ctx()) else {
            return false;
        };
        self.notify_schedule_missed(id, missed);
        for tick in due {
            let start = !self.run_unfinished(id) || self.schedules.overlap(self.ctx(), id, tick);
            if start {
                self.start_run(id, tick, false, false);
            }
        }
        self.schedules.set_due(id, next);
        true
    }

    /// The earliest time the schedules have work: a tick due, or now for a queued tick whose
    /// previous run ended.
    pub(super) fn schedules_due(&self) -> Option<u64> {
        let queued = self
            .schedules
            .queued()
            .any(|id| !self.run_unfinished(id))
            .then_some(self.now_ms);
        [self.schedules.next_tick(), queued]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn schedule_op(&mut self, id: ScheduleId, op: &ScheduleOp) -> Response {
        if self.schedules.get(id).is_none() {
            return Response::Rejected(super::command::Rejection::Missing {
                what: format!("schedule {id}"),
            });
        }
        let ctx = self.ctx();
        let ticks: Vec<(u64, bool)> = match op {
            ScheduleOp::Pause | ScheduleOp::Resume | ScheduleOp::Delete => {
                self.schedules.control(ctx, id, op);
                Vec::new()
            }
            ScheduleOp::Trigger => vec![(ctx.now_ms, true)],
            ScheduleOp::Backfill { from_ms, to_ms } => {
                match self.schedules.backfill_ticks(ctx, id, *from_ms, *to_ms) {
                    Ok(ticks) => ticks.into_iter().map(|t| (t, false)).collect(),
                    Err(r) => return r,
                }
            }
        };
        let mut started = 0u32;
        for (tick, trigger) in ticks {
            if matches!(
                self.start_run(id, tick, true, trigger),
                RunOutcome::Job(_) | RunOutcome::Workflow(_)
            ) {
                started += 1;
            }
        }
        Response::ScheduleChanged { started }
    }
}
