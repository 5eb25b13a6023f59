//! Cron schedules: each tick of a schedule runs exactly once, created by the replicated Tick.
//!
//! A schedule's fire times come from a cron expression (5 fields, or 6 with seconds, parsed
//! by the `croner` crate) evaluated in an IANA time zone (`chrono-tz`), or from `@every 30s`
//! counted from its start. Both are pure functions of the expression, the zone and a time, so
//! every replica computes the same ticks. DST: a local time that does not exist (the hour
//! skipped in spring) fires once at the next valid instant; an ambiguous one (the hour repeated
//! in autumn) fires once, at its first occurrence (croner's rules).
//!
//! ## Exactly once per tick
//!
//! The schedule index holds each active schedule under its next fire time; the leader proposes
//! a Tick only once the earliest one is due. Applying the Tick creates the tick's run (a job
//! whose idempotency key is `schedule:{id}:{tick}`, or a workflow) and moves the schedule to its
//! next fire time in the same apply. A leader change, a restart or a log replay applies the same
//! entries to the same state, so a tick can neither run twice nor be lost: a tick that came due
//! while there was no leader is run by the next Tick, under the catch-up policy.
//!
//! ## Catch-up (ticks that came due while no Tick could run: no leader, cluster down)
//!
//! - `skip`: only the newest due tick runs, and only if it is less than `CATCH_UP_GRACE_MS`
//!   late; the others are recorded as skipped.
//! - `latest`: the newest due tick runs, however late; older ones are skipped.
//! - `all` (with a bound N): every due tick runs, oldest first, at most N per catch-up; older
//!   ones beyond N are skipped.
//!
//! ## Overlap (the previous run has not finished)
//!
//! `allow` starts the new run anyway; `skip` records the tick as skipped; `queue` keeps it
//! (at most `SCHEDULE_QUEUE_MAX`) and starts it once the previous run ends.
//!
//! A paused schedule records nothing; on resume it continues from the next tick after now
//! (ticks missed while paused are not caught up). `trigger` starts a run now, outside the
//! ticks; `backfill` runs every tick of a past range that has not run (at most
//! `BACKFILL_TICKS_MAX`). The newest `SCHEDULE_HISTORY_MAX` runs are kept per schedule.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::str::FromStr;

use chrono::TimeZone;
use serde::{Deserialize, Serialize};

use super::command::{Ctx, Rejection, Response};
use super::job::{validate_name, JobId, JobSpec};
use super::limits;
use super::workflow::{WorkflowId, WorkflowSpec};

/// The schedules subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedules {
    /// Next schedule id.
    next_id: ScheduleId,
    /// Schedules by id.
    by_id: BTreeMap<ScheduleId, Schedule>,
    /// Schedule ids by name.
    names: BTreeMap<String, ScheduleId>,
    /// Active schedules by next tick.
    due: BTreeSet<(u64, ScheduleId)>,
    /// Schedules with ticks waiting for their previous run.
    queued: BTreeSet<ScheduleId>,
}

impl Schedules {
    /// No schedules; ids start at 1.
    pub fn new() -> Schedules {
        Schedules {
            next_id: 1,
            ..Schedules::default()
        }
    }
}

/// Cluster-assigned schedule id.
pub type ScheduleId = u64;

/// What each tick runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A job.
    Job(Box<JobSpec>),
    /// A workflow.
    Workflow(WorkflowSpec),
}

/// What to do with ticks that came due while no Tick could run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatchUp {
    /// Run the newest only if barely late.
    Skip,
    /// Run the newest.
    Latest,
    /// Run all, oldest first, at most this many.
    All(u32),
}

/// What to do with a tick while the previous run is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overlap {
    /// Start it anyway.
    Allow,
    /// Skip it.
    Skip,
    /// Start it when the previous run ends.
    Queue,
}

/// A schedule as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Unique name, `[A-Za-z0-9_.-]{1,128}`.
    pub name: String,
    /// Cron expression (5 or 6 fields) or `@every DURATION`.
    pub expr: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub tz: String,
    /// No tick before this (ms since the epoch; creation time when `None`).
    pub start_ms: Option<u64>,
    /// No tick after this.
    pub end_ms: Option<u64>,
    /// What a tick runs.
    pub target: Target,
    /// Catch-up policy.
    pub catch_up: CatchUp,
    /// Overlap policy.
    pub overlap: Overlap,
}

/// How a tick went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// A job was started.
    Job(JobId),
    /// A workflow was started.
    Workflow(WorkflowId),
    /// Not run, and why.
    Skipped(String),
    /// Waiting for the previous run to end (overlap `queue`).
    Queued,
    /// Starting it was refused (a limit), and why.
    Failed(String),
}

/// One tick's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The tick (scheduled fire time), or the trigger time of a manual run.
    pub tick_ms: u64,
    /// When it was recorded.
    pub at_ms: u64,
    /// Started by `trigger` or `backfill` rather than by its tick.
    pub manual: bool,
    /// What happened.
    pub outcome: RunOutcome,
}

/// A schedule held by the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Cluster-assigned id.
    pub id: ScheduleId,
    /// The definition.
    pub spec: ScheduleSpec,
    /// State-machine time of creation.
    pub created_ms: u64,
    /// Paused by an operator.
    pub paused: bool,
    /// The next tick, while there is one and the schedule is not paused.
    pub next_fire_ms: Option<u64>,
    /// Ticks waiting for the previous run (overlap `queue`).
    pub queued: VecDeque<u64>,
    /// The newest runs, oldest first.
    pub history: VecDeque<RunRecord>,
    /// Runs started over the schedule's life.
    pub runs_started: u64,
}

/// An operation on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleOp {
    /// Stop ticking.
    Pause,
    /// Tick again from now.
    Resume,
    /// Start a run now.
    Trigger,
    /// Remove the schedule (its runs stay).
    Delete,
    /// Run every tick in `[from_ms, to_ms]` that has not run.
    Backfill {
        /// First instant of the range.
        from_ms: u64,
        /// Last instant of the range.
        to_ms: u64,
    },
}

/// A parsed schedule expression.
enum Expr {
    Cron(Box<croner::Cron>, chrono_tz::Tz),
    Every(u64),
}

fn parse_expr(expr: &str, tz: &str) -> Result<Expr, Rejection> {
    let zone = chrono_tz::Tz::from_str(tz).map_err(|_| {
        Rejection::invalid(
            "tz",
            format!("{tz:?} is not an IANA time zone (e.g. Europe/Berlin, UTC)"),
        )
    })?;
    if let Some(every) = expr.trim().strip_prefix("@every") {
        let ms = parse_every(every.trim()).ok_or_else(|| {
            Rejection::invalid(
                "cron",
                format!("{expr:?}: @every needs a duration like 30s"),
            )
        })?;
        if ms < limits::SCHEDULE_INTERVAL_MS_MIN {
            return Err(Rejection::invalid(
                "cron",
                format!(
                    "{expr:?} fires every {ms} ms; the shortest interval is {} ms",
                    limits::SCHEDULE_INTERVAL_MS_MIN
                ),
            ));
        }
        if ms > limits::SCHEDULE_INTERVAL_MS_MAX {
            return Err(Rejection::invalid(
                "cron",
                format!(
                    "{expr:?} fires every {ms} ms; the longest interval is {} ms (366 days)",
                    limits::SCHEDULE_INTERVAL_MS_MAX
                ),
            ));
        }
        return Ok(Expr::Every(ms));
    }
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(Rejection::invalid(
            "cron",
            format!("{expr:?} has {fields} fields; give 5 (min hour day month weekday) or 6 (with seconds first), or @every 30s"),
        ));
    }
    let cron = croner::Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| Rejection::invalid("cron", format!("{expr:?}: {e}")))?;
    Ok(Expr::Cron(Box::new(cron), zone))
}

fn parse_every(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

impl Expr {
    /// The first fire time strictly after `after_ms`, counting `@every` from `origin_ms`.
    fn next_after(&self, after_ms: u64, origin_ms: u64) -> Option<u64> {
        match self {
            Expr::Every(iv) => {
                if after_ms < origin_ms {
                    return Some(origin_ms);
                }
                let k = (after_ms - origin_ms) / iv + 1;
                origin_ms.checked_add(k.checked_mul(*iv)?)
            }
            Expr::Cron(cron, zone) => {
                // A time past i64 (refused at the edge; kept safe here) has no next fire.
                let at = zone
                    .timestamp_millis_opt(i64::try_from(after_ms).ok()?)
                    .single()?;
                // croner works in whole seconds; step past `after_ms` strictly.
                let next = cron.find_next_occurrence(&at, false).ok()?;
                let ms = next.timestamp_millis();
                (ms >= 0).then_some(ms as u64)
            }
        }
    }
}

impl ScheduleSpec {
    /// Checks the whole definition; `now_ms` bounds the start and end.
    pub fn validate(&self) -> Result<(), Rejection> {
        validate_name("name", &self.name, limits::SCHEDULE_NAME_BYTES_MAX)?;
        let expr = parse_expr(&self.expr, &self.tz)?;
        if let Expr::Cron(..) = expr {
            // Fires at most once a second: croner cannot express more, but check the gap.
            let a = expr.next_after(0, 0);
            let b = a.and_then(|a| expr.next_after(a, 0));
            if a.is_none() {
                return Err(Rejection::invalid(
                    "cron",
                    format!("{:?} never fires (no such date)", self.expr),
                ));
            }
            if let (Some(a), Some(b)) = (a, b) {
                if b - a < limits::SCHEDULE_INTERVAL_MS_MIN {
                    return Err(Rejection::invalid("cron", "fires more than once a second"));
                }
            }
        }
        for (field, at) in [("start_ms", self.start_ms), ("end_ms", self.end_ms)] {
            if let Some(at) = at.filter(|at| *at > limits::WALL_MS_MAX) {
                return Err(Rejection::invalid(
                    field,
                    format!(
                        "is {at}, after the latest time accepted ({}, the year 9999)",
                        limits::WALL_MS_MAX
                    ),
                ));
            }
        }
        if let (Some(s), Some(e)) = (self.start_ms, self.end_ms) {
            if e <= s {
                return Err(Rejection::invalid(
                    "end_ms",
                    format!("is {e}, not after start_ms {s}"),
                ));
            }
        }
        if let CatchUp::All(n) = self.catch_up {
            if !(1..=limits::CATCH_UP_TICKS_MAX).contains(&n) {
                return Err(Rejection::invalid(
                    "catch_up",
                    format!(
                        "all:{n}: the bound must be 1..={}",
                        limits::CATCH_UP_TICKS_MAX
                    ),
                ));
            }
        }
        match &self.target {
            Target::Job(spec) => {
                spec.validate()?;
                if spec.idempotency_key.is_some() {
                    return Err(Rejection::invalid(
                        "idempotency_key",
                        "is set by the schedule (schedule:ID:TICK)",
                    ));
                }
            }
            Target::Workflow(w) => w.validate()?,
        }
        Ok(())
    }

    fn origin(&self, created_ms: u64) -> u64 {
        self.start_ms.unwrap_or(created_ms)
    }

    /// The first tick strictly after `after_ms` within start..=end.
    fn next_tick(&self, after_ms: u64, created_ms: u64) -> Option<u64> {
        self.clock(created_ms)?.next(after_ms)
    }

    /// The schedule's ticks with its expression parsed once, for walking many of them.
    fn clock(&self, created_ms: u64) -> Option<Clock> {
        let expr = parse_expr(&self.expr, &self.tz).ok()?;
        let origin = self.origin(created_ms);
        // `@every` counts from the start (or creation); a cron schedule has ticks before its
        // creation too (backfill), unless a start is set.
        let floor = match expr {
            Expr::Every(_) => origin.saturating_sub(1),
            Expr::Cron(..) => self.start_ms.map_or(0, |s| s.saturating_sub(1)),
        };
        Some(Clock {
            expr,
            origin,
            floor,
            end_ms: self.end_ms,
        })
    }
}

/// A schedule's tick function: expression, origin of `@every`, and bounds.
struct Clock {
    expr: Expr,
    origin: u64,
    floor: u64,
    end_ms: Option<u64>,
}

impl Clock {
    /// The first tick strictly after `after_ms` within the bounds.
    fn next(&self, after_ms: u64) -> Option<u64> {
        let next = self
            .expr
            .next_after(after_ms.max(self.floor), self.origin)?;
        self.end_ms.is_none_or(|end| next <= end).then_some(next)
    }
}

impl Schedule {
    fn record(&mut self, tick_ms: u64, at_ms: u64, manual: bool, outcome: RunOutcome) {
        if matches!(outcome, RunOutcome::Job(_) | RunOutcome::Workflow(_)) {
            self.runs_started += 1;
        }
        self.history.push_back(RunRecord {
            tick_ms,
            at_ms,
            manual,
            outcome,
        });
        while self.history.len() > limits::SCHEDULE_HISTORY_MAX {
            self.history.pop_front();
        }
    }

    /// The newest started run.
    fn last_run(&self) -> Option<&RunOutcome> {
        self.history
            .iter()
            .rev()
            .map(|r| &r.outcome)
            .find(|o| matches!(o, RunOutcome::Job(_) | RunOutcome::Workflow(_)))
    }
}

impl Schedules {
    /// A schedule by id.
    pub fn get(&self, id: ScheduleId) -> Option<&Schedule> {
        self.by_id.get(&id)
    }

    /// A schedule's id by name.
    pub fn id_of(&self, name: &str) -> Option<ScheduleId> {
        self.names.get(name).copied()
    }

    /// Every schedule, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Schedule> {
        self.by_id.values()
    }

    /// The earliest next tick of an active schedule.
    pub fn next_tick(&self) -> Option<u64> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Schedules with ticks waiting for their previous run, in id order.
    pub fn queued(&self) -> impl Iterator<Item = ScheduleId> + '_ {
        self.queued.iter().copied()
    }

    /// The newest started run of a schedule.
    pub fn last_run(&self, id: ScheduleId) -> Option<&RunOutcome> {
        self.by_id[&id].last_run()
    }

    /// What a schedule starts.
    pub(super) fn target(&self, id: ScheduleId) -> Target {
        self.by_id[&id].spec.target.clone()
    }

    /// Adds a schedule checked by the machine (spec and resources): its name must be free.
    pub(super) fn create(&mut self, ctx: Ctx, spec: &ScheduleSpec) -> Response {
        if self.names.contains_key(&spec.name) {
            return Response::Rejected(Rejection::Precondition {
                message: format!("a schedule named {} exists", spec.name),
            });
        }
        if self.by_id.len() >= limits::SCHEDULES_MAX {
            return Response::Rejected(Rejection::Exhausted {
                message: format!(
                    "{} schedules exist, the limit (SCHEDULES_MAX)",
                    limits::SCHEDULES_MAX
                ),
            });
        }
        let now = ctx.now_ms;
        let id = self.next_id;
        self.next_id += 1;
        let next = spec.next_tick(now, now);
        let schedule = Schedule {
            id,
            spec: spec.clone(),
            created_ms: now,
            paused: false,
            next_fire_ms: next,
            queued: VecDeque::new(),
            history: VecDeque::new(),
            runs_started: 0,
        };
        if let Some(t) = next {
            self.due.insert((t, id));
        }
        self.names.insert(spec.name.clone(), id);
        self.by_id.insert(id, schedule);
        Response::ScheduleCreated {
            id,
            next_fire_ms: next,
        }
    }

    /// Records what a run of `tick_ms` became.
    pub(super) fn record(
        &mut self,
        ctx: Ctx,
        id: ScheduleId,
        tick_ms: u64,
        manual: bool,
        outcome: RunOutcome,
    ) {
        self.by_id
            .get_mut(&id)
            .expect("schedule")
            .record(tick_ms, ctx.now_ms, manual, outcome);
    }

    /// A tick came while the previous run has not finished: applies the overlap policy.
    /// Returns whether the run starts anyway (`allow`); `skip` and `queue` are recorded here.
    pub(super) fn overlap(&mut self, ctx: Ctx, id: ScheduleId, tick_ms: u64) -> bool {
        let now = ctx.now_ms;
        let s = self.by_id.get_mut(&id).expect("schedule");
        match s.spec.overlap {
            Overlap::Allow => true,
            Overlap::Skip => {
                s.record(
                    tick_ms,
                    now,
                    false,
                    RunOutcome::Skipped("the previous run has not finished".into()),
                );
                false
            }
            Overlap::Queue => {
                if s.queued.len() >= limits::SCHEDULE_QUEUE_MAX {
                    s.record(
                        tick_ms,
                        now,
                        false,
                        RunOutcome::Skipped(format!(
                            "{} ticks already wait for the previous run",
                            limits::SCHEDULE_QUEUE_MAX
                        )),
                    );
                } else {
                    s.queued.push_back(tick_ms);
                    s.record(tick_ms, now, false, RunOutcome::Queued);
                    self.queued.insert(id);
                }
                false
            }
        }
    }

    /// Takes the oldest queued tick of a schedule.
    pub(super) fn pop_queued(&mut self, id: ScheduleId) -> u64 {
        let s = self.by_id.get_mut(&id).expect("schedule");
        let tick = s.queued.pop_front().expect("queued tick");
        if s.queued.is_empty() {
            self.queued.remove(&id);
        }
        tick
    }

    /// Takes the first schedule due by now: the ticks due, oldest first, that its catch-up
    /// policy runs (the others are recorded as skipped), and its next tick (set, and put
    /// back in the due index by [`Schedules::set_due`] once the runs started).
    #[allow(clippy::type_complexity)]
    pub(super) fn take_due(
        &mut self,
        ctx: Ctx,
    ) -> Option<(ScheduleId, VecDeque<u64>, Option<u64>, usize)> {
        let now = ctx.now_ms;
        let &(first, id) = self.due.first().filter(|(t, _)| *t <= now)?;
        self.due.remove(&(first, id));
        let s = &self.by_id[&id];
        let clock = s.spec.clock(s.created_ms);
        let next_after = |t: u64| clock.as_ref().and_then(|c| c.next(t));
        // The ticks due by now, oldest first, scanning at most CATCH_UP_SCAN_MAX of them; past
        // that the schedule jumps to its first tick after now (the rest are only noted).
        let mut due = VecDeque::new();
        let mut t = Some(first);
        while let Some(tick) = t.filter(|t| *t <= now) {
            if due.len() >= limits::CATCH_UP_SCAN_MAX {
                break;
            }
            due.push_back(tick);
            t = next_after(tick);
        }
        let beyond = t.is_some_and(|t| t <= now);
        let next = if beyond { next_after(now) } else { t };
        let keep = match s.spec.catch_up {
            CatchUp::All(n) => n as usize,
            CatchUp::Latest => 1,
            CatchUp::Skip => {
                let newest = *due.back().expect("one due");
                usize::from(now - newest <= limits::CATCH_UP_GRACE_MS)
            }
        };
        let skip = due.len().saturating_sub(keep);
        let skipped: Vec<u64> = due.drain(..skip).collect();
        let missed = skipped.len() + usize::from(beyond);
        let s = self.by_id.get_mut(&id).expect("schedule");
        if beyond {
            s.record(
                first,
                now,
                false,
                RunOutcome::Skipped(format!(
                    "more than {} ticks came due while no Tick could run; the ones after \
                     those were skipped",
                    limits::CATCH_UP_SCAN_MAX
                )),
            );
        }
        for tick in skipped {
            s.record(
                tick,
                now,
                false,
                RunOutcome::Skipped(format!(
                    "came due while no Tick could run (catch_up {:?})",
                    s.spec.catch_up
                )),
            );
        }
        s.next_fire_ms = next;
        Some((id, due, next, missed))
    }

    /// Puts a schedule taken by [`Schedules::take_due`] back in the due index at its next
    /// tick.
    pub(super) fn set_due(&mut self, id: ScheduleId, next: Option<u64>) {
        if let Some(t) = next {
            self.due.insert((t, id));
        }
    }

    /// Pauses, resumes or deletes a schedule (the operations that start nothing).
    pub(super) fn control(&mut self, ctx: Ctx, id: ScheduleId, op: &ScheduleOp) {
        let s = self.by_id.get_mut(&id).expect("checked");
        match op {
            ScheduleOp::Pause => {
                if let Some(t) = s.next_fire_ms {
                    self.due.remove(&(t, id));
                }
                s.paused = true;
                s.next_fire_ms = None;
            }
            ScheduleOp::Resume => {
                if s.paused {
                    let next = s.spec.next_tick(ctx.now_ms, s.created_ms);
                    s.paused = false;
                    s.next_fire_ms = next;
                    if let Some(t) = next {
                        self.due.insert((t, id));
                    }
                }
            }
            ScheduleOp::Delete => {
                if let Some(t) = s.next_fire_ms {
                    self.due.remove(&(t, id));
                }
                let name = s.spec.name.clone();
                self.names.remove(&name);
                self.queued.remove(&id);
                self.by_id.remove(&id);
            }
            ScheduleOp::Trigger | ScheduleOp::Backfill { .. } => {
                unreachable!("runs are started by the machine")
            }
        }
    }

    /// The ticks of a schedule in `[from_ms, to_ms]` (ordered, in the past, at most
    /// `BACKFILL_TICKS_MAX`).
    pub(super) fn backfill_ticks(
        &self,
        ctx: Ctx,
        id: ScheduleId,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<u64>, Response> {
        let now = ctx.now_ms;
        let s = &self.by_id[&id];
        if to_ms < from_ms || to_ms > now {
            return Err(Response::Rejected(Rejection::invalid(
                "to_ms",
                format!(
                    "the range {from_ms}..={to_ms} must be ordered and in the past (now {now})"
                ),
            )));
        }
        let clock = s.spec.clock(s.created_ms);
        let next_after = |t: u64| clock.as_ref().and_then(|c| c.next(t));
        let mut ticks = Vec::new();
        let mut t = next_after(from_ms.saturating_sub(1));
        while let Some(tick) = t.filter(|t| *t <= to_ms) {
            if ticks.len() >= limits::BACKFILL_TICKS_MAX {
                return Err(Response::Rejected(Rejection::invalid(
                    "to_ms",
                    format!(
                        "the range holds more than {} ticks (BACKFILL_TICKS_MAX)",
                        limits::BACKFILL_TICKS_MAX
                    ),
                )));
            }
            ticks.push(tick);
            t = next_after(tick);
        }
        Ok(ticks)
    }

    /// Panics if the schedule index is off.
    pub fn check_invariants(&self) {
        for (id, s) in &self.by_id {
            if let Some(t) = s.next_fire_ms {
                assert!(!s.paused, "schedule {id} paused with a next tick");
                assert!(self.due.contains(&(t, *id)), "schedule {id} not due");
            }
            assert!(s.history.len() <= limits::SCHEDULE_HISTORY_MAX);
            assert_eq!(
                !s.queued.is_empty(),
                self.queued.contains(id),
                "schedule {id} queue index"
            );
            assert_eq!(self.names.get(&s.spec.name), Some(id));
        }
        assert_eq!(
            self.due.len(),
            self.by_id
                .values()
                .filter(|s| s.next_fire_ms.is_some())
                .count()
        );
        if let Some((&last, _)) = self.by_id.last_key_value() {
            assert!(last < self.next_id, "schedule id {last} >= next");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::{Command, Proposal};
    use crate::machine::Machine;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
            .timestamp_millis() as u64
    }

    fn spec(expr: &str, tz: &str) -> ScheduleSpec {
        ScheduleSpec {
            name: "s".into(),
            expr: expr.into(),
            tz: tz.into(),
            start_ms: None,
            end_ms: None,
            target: Target::Job(Box::new(JobSpec::shell("cron", &["true"]))),
            catch_up: CatchUp::All(100),
            overlap: Overlap::Allow,
        }
    }

    fn ticks(s: &ScheduleSpec, from: u64, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut t = from;
        for _ in 0..n {
            t = s.next_tick(t, 0).expect("a tick");
            out.push(t);
        }
        out
    }

    /// 02:30 daily across both DST changes in Berlin and New York: the skipped hour fires once
    /// at the next valid instant, the repeated hour fires once.
    #[test]
    fn next_fire_across_dst_in_two_zones() {
        let berlin = spec("30 2 * * *", "Europe/Berlin");
        // Spring: 2026-03-29 02:00 CET -> 03:00 CEST. 02:30 does not exist.
        let t = ticks(&berlin, utc(2026, 3, 28, 12, 0, 0), 3);
        assert_eq!(
            t,
            vec![
                utc(2026, 3, 29, 1, 0, 0),  // 03:00 CEST, the next valid instant
                utc(2026, 3, 30, 0, 30, 0), // 02:30 CEST
                utc(2026, 3, 31, 0, 30, 0),
            ]
        );
        // Autumn: 2026-10-25 03:00 CEST -> 02:00 CET. 02:30 happens twice; it fires once.
        let t = ticks(&berlin, utc(2026, 10, 24, 12, 0, 0), 3);
        assert_eq!(
            t,
            vec![
                utc(2026, 10, 25, 0, 30, 0), // 02:30 CEST, the first of the two
                utc(2026, 10, 26, 1, 30, 0), // 02:30 CET
                utc(2026, 10, 27, 1, 30, 0),
            ]
        );
        let ny = spec("0 30 2 * * *", "America/New_York");
        // Spring: 2026-03-08 02:00 EST -> 03:00 EDT.
        let t = ticks(&ny, utc(2026, 3, 7, 12, 0, 0), 2);
        assert_eq!(t, vec![utc(2026, 3, 8, 7, 0, 0), utc(2026, 3, 9, 6, 30, 0)]);
        // Autumn: 2026-11-01 02:00 EDT -> 01:00 EST; 02:30 exists once (EST).
        let t = ticks(&ny, utc(2026, 10, 31, 12, 0, 0), 2);
        assert_eq!(
            t,
            vec![utc(2026, 11, 1, 7, 30, 0), utc(2026, 11, 2, 7, 30, 0)]
        );
        // Seconds and sub-second times: strictly after.
        let every_sec = spec("* * * * * *", "UTC");
        assert_eq!(every_sec.next_tick(1_000_500, 0), Some(1_001_000));
        assert_eq!(every_sec.next_tick(1_001_000, 0), Some(1_002_000));
    }

    /// Bad input is refused with the field named.
    #[test]
    fn bad_schedules_are_refused() {
        let field = |s: ScheduleSpec| match s.validate() {
            Err(Rejection::Invalid { field, message }) => format!("{field}: {message}"),
            other => panic!("{other:?}"),
        };
        assert!(field(spec("61 * * * *", "UTC")).starts_with("cron: "));
        assert!(field(spec("* * *", "UTC")).contains("has 3 fields"));
        assert!(field(spec("@every 10ms", "UTC")).contains("shortest interval"));
        assert!(field(spec("0 * * * *", "Mars/Olympus")).starts_with("tz: "));
        let mut s = spec("0 * * * *", "UTC");
        s.start_ms = Some(10);
        s.end_ms = Some(5);
        assert!(field(s).starts_with("end_ms"));
        let mut s = spec("0 * * * *", "UTC");
        s.catch_up = CatchUp::All(0);
        assert!(field(s).starts_with("catch_up"));
    }

    struct T {
        m: Machine,
        now: u64,
        id: ScheduleId,
    }

    impl T {
        fn new(s: ScheduleSpec) -> T {
            let mut m = Machine::new();
            let now = 1_000_000;
            let r = m.apply(&Proposal {
                now_ms: now,
                command: Command::CreateSchedule(s),
            });
            let Response::ScheduleCreated { id, next_fire_ms } = r else {
                panic!("{r:?}");
            };
            assert_eq!(next_fire_ms, Some(now + 1_000));
            T { m, now, id }
        }

        fn apply(&mut self, command: Command) -> Response {
            self.m.apply(&Proposal {
                now_ms: self.now,
                command,
            })
        }

        /// Ticks until nothing is due at `now`.
        fn tick_at(&mut self, now: u64) {
            self.now = now;
            while self.m.next_due().is_some_and(|d| d <= now) {
                self.apply(Command::Tick);
            }
        }

        fn runs(&self) -> Vec<(u64, &'static str)> {
            self.m.schedules.by_id[&self.id]
                .history
                .iter()
                .map(|r| {
                    let kind = match r.outcome {
                        RunOutcome::Job(_) => "run",
                        RunOutcome::Workflow(_) => "workflow",
                        RunOutcome::Skipped(_) => "skipped",
                        RunOutcome::Queued => "queued",
                        RunOutcome::Failed(_) => "failed",
                    };
                    (r.tick_ms - 1_000_000, kind)
                })
                .collect()
        }
    }

    fn every_second(catch_up: CatchUp, overlap: Overlap) -> T {
        let mut s = spec("@every 1s", "UTC");
        s.catch_up = catch_up;
        s.overlap = overlap;
        T::new(s)
    }

    /// Each catch-up policy, after five ticks came due with no Tick.
    #[test]
    fn catch_up_policies() {
        let mut t = every_second(CatchUp::All(10), Overlap::Allow);
        t.tick_at(1_005_000);
        assert_eq!(
            t.runs(),
            vec![
                (1_000, "run"),
                (2_000, "run"),
                (3_000, "run"),
                (4_000, "run"),
                (5_000, "run")
            ]
        );
        let mut t = every_second(CatchUp::All(2), Overlap::Allow);
        t.tick_at(1_005_000);
        let runs: Vec<_> = t.runs().into_iter().filter(|r| r.1 == "run").collect();
        assert_eq!(runs, vec![(4_000, "run"), (5_000, "run")], "the newest two");
        let mut t = every_second(CatchUp::Latest, Overlap::Allow);
        t.tick_at(1_005_000);
        assert_eq!(t.runs().last(), Some(&(5_000, "run")));
        assert_eq!(t.runs().iter().filter(|r| r.1 == "skipped").count(), 4);
        let mut t = every_second(CatchUp::Skip, Overlap::Allow);
        t.tick_at(1_005_000);
        assert_eq!(
            t.runs().last(),
            Some(&(5_000, "run")),
            "5 s late is within grace"
        );
        let mut t = every_second(CatchUp::Skip, Overlap::Allow);
        t.tick_at(1_000_000 + 1_000 + limits::CATCH_UP_GRACE_MS + 1);
        let late: Vec<_> = t.runs().into_iter().filter(|r| r.1 == "run").collect();
        assert_eq!(late.len(), 1, "only the newest, which is on time: {late:?}");
        // A job keyed by its tick.
        let RunOutcome::Job(job) = t.m.schedules.by_id[&t.id].history.back().unwrap().outcome
        else {
            panic!()
        };
        let key = t.m.job(job).unwrap().spec.idempotency_key.clone().unwrap();
        assert_eq!(key, format!("schedule:{}:{}", t.id, 1_000_000 + 11_000));
    }
}
