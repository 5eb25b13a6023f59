//! Pure checkers over a history: each takes the events and returns a [`Verdict`].
//!
//! The checkers read no clock and do no I/O; the same history always gives the same verdict
//! (every map is a `BTreeMap`). They judge the guarantees in DESIGN.md "Guarantees":
//!
//! - [`check_queue`]: no acknowledged submit is lost, a job completes at most once, a completion
//!   is accepted only under the current lease's fencing token, nothing appears that was never
//!   submitted.
//! - [`check_reads`]: reads are not stale (a real-time order check, see below).
//! - [`check_lock`]: fencing tokens of a lock increase, and the fenced register never accepts a
//!   token lower than one it already accepted.
//! - [`check_cron`]: each expected cron tick runs exactly once.
//! - [`check_divergence`]: replicas that applied the same log prefix have the same state.
//!
//! Real-time order is the order of the events in the history: operation A *precedes* B when A's
//! completion comes before B's invocation. Only then must B observe A's effect; operations
//! that overlap may be ordered either way, so no check here relies on their order.
//!
//! A malformed history (a completion with no invocation, an index that does not increase, an
//! `ok` without the result it should carry) is reported as a `malformed` problem and makes the
//! verdict invalid, because the harness, not the cluster, is then broken; it never panics.
//!
//! CAVEATS (not implemented): no full linearizability search (WGL/Knossos) — [`check_reads`]
//! is sound but incomplete, see its doc; no Elle-style transactional anomalies (there are no
//! multi-key transactions); the queue checker assumes the workload never cancels, requeues,
//! retries or purges jobs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;

use serde::Serialize;

use crate::history::{Event, Kind, Op};

/// At most this many problems are listed per verdict, so a badly broken run stays readable;
/// the figures still count every one, and `problems_omitted` says how many were not listed.
pub const PROBLEMS_MAX: usize = 20;

/// The outcome of one checker.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The checker's name (`queue`, `reads`, `lock`, `cron`, `divergence`).
    pub name: &'static str,
    /// Whether the history satisfies the property.
    pub valid: bool,
    /// Counts, by name (e.g. `acked`, `lost`).
    pub figures: BTreeMap<String, u64>,
    /// One line per problem found (at most [`PROBLEMS_MAX`]), naming the job, value or index.
    pub problems: Vec<String>,
}

impl Verdict {
    /// A valid verdict with each of `figures` at 0 (so a report always shows them).
    fn new(name: &'static str, figures: &[&str]) -> Verdict {
        Verdict {
            name,
            valid: true,
            figures: figures.iter().map(|f| (f.to_string(), 0)).collect(),
            problems: Vec::new(),
        }
    }

    /// Adds `n` to `figure`.
    fn add(&mut self, figure: &str, n: u64) {
        *self.figures.entry(figure.to_string()).or_insert(0) += n;
    }

    /// Sets `figure` to `n`.
    fn set(&mut self, figure: &str, n: usize) {
        self.figures.insert(figure.to_string(), n as u64);
    }

    /// Records a violation: counted under `figure`, listed, and the verdict becomes invalid.
    fn violation(&mut self, figure: &str, text: String) {
        self.add(figure, 1);
        self.valid = false;
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(format!("{figure}: {text}"));
        } else {
            self.add("problems_omitted", 1);
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.valid { "valid" } else { "INVALID" };
        write!(f, "{}: {status}", self.name)?;
        for (figure, n) in &self.figures {
            write!(f, " {figure}={n}")?;
        }
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// A checker: a pure function from a history to its verdict.
pub type Checker = fn(&[Event]) -> Verdict;

/// Runs the checkers whose operations occur in `history`, in a fixed order.
pub fn check_all(history: &[Event]) -> Vec<Verdict> {
    let present: BTreeSet<Family> = history.iter().map(|e| family(&e.op)).collect();
    let checkers: [(Family, Checker); 5] = [
        (Family::Queue, check_queue),
        (Family::Reads, check_reads),
        (Family::Lock, check_lock),
        (Family::Cron, check_cron),
        (Family::Divergence, check_divergence),
    ];
    checkers
        .iter()
        .filter(|(f, _)| present.contains(f))
        .map(|(_, check)| check(history))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Shared: operation families and invocation/completion pairing.

/// Which checker an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    /// Submit, lease, complete, final read: [`check_queue`].
    Queue,
    /// Read: [`check_reads`].
    Reads,
    /// Acquire, release, fenced write: [`check_lock`].
    Lock,
    /// Cron run and expect: [`check_cron`].
    Cron,
    /// Digest: [`check_divergence`].
    Divergence,
}

/// The checker `op` belongs to (its malformed events are reported there).
fn family(op: &Op) -> Family {
    match op {
        Op::Submit { .. } | Op::Lease { .. } | Op::Complete { .. } | Op::FinalRead { .. } => {
            Family::Queue
        }
        Op::Read { .. } | Op::CountRead { .. } => Family::Reads,
        Op::Acquire { .. } | Op::Release { .. } | Op::FencedWrite { .. } => Family::Lock,
        Op::CronRun { .. } | Op::CronExpect { .. } => Family::Cron,
        Op::Digest { .. } => Family::Divergence,
    }
}

/// Invocations matched with their completions by process.
struct Pairs {
    /// For each event position, its partner's position (invocation <-> completion).
    partner: Vec<Option<usize>>,
    /// Malformed events: (position, description).
    malformed: Vec<(usize, String)>,
}

impl Pairs {
    /// Pairs each completion with its process's operation in flight. A lone observation
    /// ([`Op::is_observation`]) needs no invocation; any other unmatched event is malformed.
    fn of(history: &[Event]) -> Pairs {
        let mut pairs = Pairs {
            partner: vec![None; history.len()],
            malformed: Vec::new(),
        };
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        for (pos, e) in history.iter().enumerate() {
            pairs.check_index(history, pos);
            if e.kind == Kind::Invoke {
                if let Some(prev) = open.insert(e.process, pos) {
                    let text = format!(
                        "{} invoked at index {} by process {} had not completed when the process \
                         invoked again at index {}",
                        history[prev].op.name(),
                        history[prev].index,
                        e.process,
                        e.index
                    );
                    pairs.malformed.push((prev, text));
                }
                continue;
            }
            pairs.complete(history, pos, &mut open);
        }
        pairs
    }

    /// Matches the completion at `pos` with its process's open invocation.
    fn complete(&mut self, history: &[Event], pos: usize, open: &mut BTreeMap<u64, usize>) {
        let e = &history[pos];
        let same_f =
            |inv: usize| std::mem::discriminant(&history[inv].op) == std::mem::discriminant(&e.op);
        match open.get(&e.process).copied() {
            Some(inv) if same_f(inv) => {
                open.remove(&e.process);
                self.partner[inv] = Some(pos);
                self.partner[pos] = Some(inv);
            }
            _ if e.op.is_observation() => {}
            in_flight => {
                let why = match in_flight {
                    Some(inv) => format!("its operation in flight is index {}", history[inv].index),
                    None => "it has no operation in flight".to_string(),
                };
                let text = format!(
                    "{} completion at index {} by process {}, but {why}",
                    e.op.name(),
                    e.index,
                    e.process
                );
                self.malformed.push((pos, text));
            }
        }
    }

    /// Reports an `index` that does not increase along the history.
    fn check_index(&mut self, history: &[Event], pos: usize) {
        if pos > 0 && history[pos].index <= history[pos - 1].index {
            let text = format!(
                "index {} at position {pos} does not increase (previous {})",
                history[pos].index,
                history[pos - 1].index
            );
            self.malformed.push((pos, text));
        }
    }

    /// The partner of the event at `pos`: a completion's invocation or an invocation's
    /// completion.
    fn partner(&self, pos: usize) -> Option<usize> {
        self.partner.get(pos).copied().flatten()
    }
}

/// A verdict for `family`'s checker with `figures` at 0, the `events` figure, and the
/// history's malformed events of that family; plus the pairing.
fn start(history: &[Event], name: &'static str, of: Family, figures: &[&str]) -> (Verdict, Pairs) {
    let mut verdict = Verdict::new(name, figures);
    verdict.add("malformed", 0);
    let events = history.iter().filter(|e| family(&e.op) == of).count();
    verdict.set("events", events);
    let pairs = Pairs::of(history);
    for (pos, text) in &pairs.malformed {
        if family(&history[*pos].op) == of {
            verdict.violation("malformed", text.clone());
        }
    }
    (verdict, pairs)
}

// ---------------------------------------------------------------------------------------------
// Queue.

/// Checks the job queue's guarantees: acknowledged submits are not lost, each job completes at
/// most once, completions are accepted only under the current lease, nothing is invented.
///
/// Flags (each makes the verdict invalid):
/// - `lost`: a submit `ok` with job J, and J's final read is missing or not `succeeded`/`dead`.
///   Submits that ended `info`/`fail` or never completed count as `indeterminate`, not lost.
/// - `duplicate_completions` (jobs): more than one complete `ok` for a job, or a final read with
///   `attempts_succeeded > 1`.
/// - `stale_token_completions`: a complete `ok` with token t for job J although a lease `ok`
///   granting J a larger token completed before the complete was invoked (so the cluster had
///   already superseded t). A newer grant concurrent with the complete is not counted.
/// - `phantoms`: a grant or final read whose value no submit invoked; a grant or final read of
///   job J whose value differs from the value J's submit `ok` carried; one job id acknowledged
///   for two values; a value whose submit definitely failed that shows up as a job.
/// - `malformed`: see the module doc.
///
/// Also counts `acked`, `indeterminate`, `completed` (jobs with a complete `ok`),
/// `redeliveries` (jobs granted more than once), `final_succeeded`, `final_dead`, and
/// `duplicate_enqueues` (values seen under more than one job id; informational, since a submit
/// retried without an idempotency key may legitimately enqueue twice).
pub fn check_queue(history: &[Event]) -> Verdict {
    let figures = [
        "acked",
        "indeterminate",
        "completed",
        "lost",
        "duplicate_completions",
        "stale_token_completions",
        "phantoms",
        "redeliveries",
        "final_succeeded",
        "final_dead",
        "duplicate_enqueues",
    ];
    let (mut verdict, pairs) = start(history, "queue", Family::Queue, &figures);
    let facts = QueueFacts::gather(history, &pairs, &mut verdict);
    check_lost(&facts, &mut verdict);
    check_duplicates(&facts, &mut verdict);
    check_stale_tokens(history, &facts, &mut verdict);
    check_phantoms(&facts, &mut verdict);
    queue_figures(&facts, &mut verdict);
    verdict
}

/// A grant seen in a lease `ok`.
struct GrantSeen {
    /// Position of the lease `ok` event.
    pos: usize,
    /// Its `index`.
    index: u64,
    /// The lease's fencing token.
    token: u64,
    /// The payload value granted.
    value: u64,
}

/// A complete `ok`.
struct CompleteSeen {
    /// `index` of the completion event.
    index: u64,
    /// Position of its invocation (None if malformed).
    invoke: Option<usize>,
    /// The fencing token the completion carried.
    token: u64,
}

/// A final read `ok`.
struct FinalSeen {
    /// `index` of the event.
    index: u64,
    /// The job's payload value.
    value: u64,
    /// The job's final state name.
    state: String,
    /// Attempts with a successful outcome.
    attempts_succeeded: u32,
}

/// What the queue history says, by job.
#[derive(Default)]
struct QueueFacts {
    /// Every value a submit was invoked with.
    submitted: BTreeSet<u64>,
    /// Values whose submit definitely failed, with the failure's index.
    failed: BTreeMap<u64, u64>,
    /// Acknowledged submits: job -> (value, index of the `ok`).
    acked: BTreeMap<u64, (u64, u64)>,
    /// Grants by job, in history order.
    grants: BTreeMap<u64, Vec<GrantSeen>>,
    /// Accepted completions by job, in history order.
    completes: BTreeMap<u64, Vec<CompleteSeen>>,
    /// The last final read of each job.
    finals: BTreeMap<u64, FinalSeen>,
}

impl QueueFacts {
    /// Collects the queue operations of `history`.
    fn gather(history: &[Event], pairs: &Pairs, verdict: &mut Verdict) -> QueueFacts {
        let mut facts = QueueFacts::default();
        for (pos, e) in history.iter().enumerate() {
            match &e.op {
                Op::Submit { value, job } => {
                    facts.submit(history, pairs, pos, (*value, *job), verdict)
                }
                Op::Lease { grants } if e.kind == Kind::Ok => {
                    for g in grants {
                        let seen = GrantSeen {
                            pos,
                            index: e.index,
                            token: g.token,
                            value: g.value,
                        };
                        facts.grants.entry(g.job).or_default().push(seen);
                    }
                }
                Op::Complete { job, token, .. } if e.kind == Kind::Ok => {
                    let seen = CompleteSeen {
                        index: e.index,
                        invoke: pairs.partner(pos),
                        token: *token,
                    };
                    facts.completes.entry(*job).or_default().push(seen);
                }
                Op::FinalRead {
                    job,
                    value,
                    state,
                    attempts_succeeded,
                } if e.kind == Kind::Ok => {
                    let seen = FinalSeen {
                        index: e.index,
                        value: *value,
                        state: state.clone(),
                        attempts_succeeded: *attempts_succeeded,
                    };
                    facts.finals.insert(*job, seen);
                }
                _ => {}
            }
        }
        facts
    }

    /// Records a submit event: its value, and its outcome when it is an invocation or an `ok`.
    fn submit(
        &mut self,
        history: &[Event],
        pairs: &Pairs,
        pos: usize,
        (value, job): (u64, Option<u64>),
        verdict: &mut Verdict,
    ) {
        let e = &history[pos];
        self.submitted.insert(value);
        match e.kind {
            Kind::Invoke => match pairs.partner(pos).map(|c| &history[c]) {
                Some(c) if c.kind == Kind::Ok => {}
                Some(c) if c.kind == Kind::Fail => {
                    self.failed.insert(value, c.index);
                    verdict.add("indeterminate", 1);
                }
                _ => verdict.add("indeterminate", 1),
            },
            Kind::Ok => self.acked_submit(e.index, value, job, verdict),
            Kind::Fail | Kind::Info => {}
        }
    }

    /// Records a submit `ok` of `value` that got `job`.
    fn acked_submit(&mut self, index: u64, value: u64, job: Option<u64>, verdict: &mut Verdict) {
        let Some(job) = job else {
            let text = format!("submit ok at index {index} (value {value}) carries no job id");
            return verdict.violation("malformed", text);
        };
        verdict.add("acked", 1);
        if let Some((other, other_index)) = self.acked.insert(job, (value, index)) {
            if other != value {
                let text = format!(
                    "job {job} acknowledged for value {other} (index {other_index}) and for \
                     value {value} (index {index})"
                );
                verdict.violation("phantoms", text);
            }
        }
    }
}

/// Flags acknowledged jobs whose final read is missing or not in a terminal state that counts.
fn check_lost(facts: &QueueFacts, verdict: &mut Verdict) {
    for (job, (value, index)) in &facts.acked {
        let found = match facts.finals.get(job) {
            None => "no final read".to_string(),
            Some(f) if f.state == "succeeded" || f.state == "dead" => continue,
            Some(f) => format!("final state {} (index {})", f.state, f.index),
        };
        let text = format!("job {job} (value {value}) acknowledged at index {index}: {found}");
        verdict.violation("lost", text);
    }
}

/// Flags jobs completed more than once (two accepted completions, or two successful attempts).
fn check_duplicates(facts: &QueueFacts, verdict: &mut Verdict) {
    let mut reasons: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (job, completes) in &facts.completes {
        if completes.len() > 1 {
            let at: Vec<String> = completes.iter().map(|c| c.index.to_string()).collect();
            let reason = format!(
                "{} accepted completions (indexes {})",
                completes.len(),
                at.join(", ")
            );
            reasons.entry(*job).or_default().push(reason);
        }
    }
    for (job, f) in &facts.finals {
        if f.attempts_succeeded > 1 {
            let reason = format!(
                "final read at index {} shows {} successful attempts",
                f.index, f.attempts_succeeded
            );
            reasons.entry(*job).or_default().push(reason);
        }
    }
    for (job, reasons) in reasons {
        verdict.violation(
            "duplicate_completions",
            format!("job {job}: {}", reasons.join("; ")),
        );
    }
}

/// Flags completions accepted with a token older than a grant that completed before the
/// completion was invoked.
fn check_stale_tokens(history: &[Event], facts: &QueueFacts, verdict: &mut Verdict) {
    for (job, completes) in &facts.completes {
        let grants = facts.grants.get(job).map(Vec::as_slice).unwrap_or_default();
        for c in completes {
            let Some(invoke) = c.invoke else { continue };
            let newest = grants
                .iter()
                .filter(|g| g.pos < invoke)
                .max_by_key(|g| g.token);
            let Some(g) = newest.filter(|g| g.token > c.token) else {
                continue;
            };
            let text = format!(
                "complete of job {job} with token {} (invoked at index {}, ok at index {}) was \
                 accepted, but the lease ok at index {} had already granted token {}",
                c.token, history[invoke].index, c.index, g.index, g.token
            );
            verdict.violation("stale_token_completions", text);
        }
    }
}

/// Flags grants and final reads of values never submitted or of the wrong job, and values
/// whose submit definitely failed but that exist.
fn check_phantoms(facts: &QueueFacts, verdict: &mut Verdict) {
    let grants = facts
        .grants
        .iter()
        .flat_map(|(job, gs)| gs.iter().map(move |g| (*job, g.value, g.index, "grant")));
    let finals = facts
        .finals
        .iter()
        .map(|(job, f)| (*job, f.value, f.index, "final read"));
    for (job, value, index, what) in grants.chain(finals) {
        let problem = if !facts.submitted.contains(&value) {
            format!(
                "{what} at index {index}: job {job} has value {value}, which was never submitted"
            )
        } else if let Some(failed_at) = facts.failed.get(&value) {
            format!(
                "{what} at index {index}: job {job} has value {value}, whose submit failed at \
                 index {failed_at}"
            )
        } else if let Some((acked_value, acked_at)) =
            facts.acked.get(&job).filter(|(v, _)| *v != value)
        {
            format!(
                "{what} at index {index}: job {job} has value {value}, but its submit ok at \
                 index {acked_at} carried value {acked_value}"
            )
        } else {
            continue;
        };
        verdict.violation("phantoms", problem);
    }
}

/// Sets the informational queue figures.
fn queue_figures(facts: &QueueFacts, verdict: &mut Verdict) {
    verdict.set("completed", facts.completes.len());
    let redelivered = facts.grants.values().filter(|gs| gs.len() > 1).count();
    verdict.set("redeliveries", redelivered);
    let in_state = |state: &str| facts.finals.values().filter(|f| f.state == state).count();
    verdict.set("final_succeeded", in_state("succeeded"));
    verdict.set("final_dead", in_state("dead"));
    let mut jobs_of_value: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let acked = facts.acked.iter().map(|(job, (value, _))| (*job, *value));
    let granted = facts
        .grants
        .iter()
        .flat_map(|(job, gs)| gs.iter().map(move |g| (*job, g.value)));
    let finals = facts.finals.iter().map(|(job, f)| (*job, f.value));
    for (job, value) in acked.chain(granted).chain(finals) {
        jobs_of_value.entry(value).or_default().insert(job);
    }
    let doubled = jobs_of_value.values().filter(|jobs| jobs.len() > 1).count();
    verdict.set("duplicate_enqueues", doubled);
}

// ---------------------------------------------------------------------------------------------
// Reads.

/// How far a job has visibly progressed. In this model a job only moves forward through
/// these stages (scheduled/ready/leased move among themselves, but stay `Exists`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// The job does not exist (yet).
    NotFound,
    /// Scheduled, ready or leased.
    Exists,
    /// Succeeded, dead or cancelled.
    Terminal,
}

impl Stage {
    /// The stage a read's `state` shows; `None` for an unknown state name.
    fn of(state: Option<&str>) -> Option<Stage> {
        match state {
            None => Some(Stage::NotFound),
            Some("scheduled" | "ready" | "leased") => Some(Stage::Exists),
            Some("succeeded" | "dead" | "cancelled") => Some(Stage::Terminal),
            Some(_) => None,
        }
    }
}

/// The earliest completed operation showing a job reached a stage: (position, description).
type Witnesses = BTreeMap<(u64, Stage), (usize, String)>;

/// Checks that linearizable reads of a job are not stale.
///
/// A job's visible stage only moves forward: not found < exists (scheduled, ready, leased) <
/// terminal (succeeded, dead, cancelled). A submit `ok` shows the job exists, a complete `ok`
/// (an accepted successful completion) that it is terminal, and a read `ok` that it reached
/// the stage it saw. A read that was invoked after such an operation completed must see at
/// least that stage; seeing less is flagged as `stale_reads`. A read whose value differs from
/// the job's submitted value is flagged as `wrong_values`.
///
/// Why this real-time check is sound (never flags a linearizable history): if A completed
/// before B was invoked, every linearization orders A before B; A left the job at stage >= s,
/// and since stages never go back, B must see >= s. It is incomplete: it misses anomalies that
/// only a search over the orders of concurrent operations finds (full WGL), which these
/// monotone single-job transitions make rare. It assumes the workload never requeues, retries
/// or purges jobs (those move a job back).
pub fn check_reads(history: &[Event]) -> Verdict {
    let figures = [
        "reads",
        "stale_reads",
        "wrong_values",
        "count_reads",
        "stale_count_reads",
    ];
    let (mut verdict, pairs) = start(history, "reads", Family::Reads, &figures);
    let witnesses = stage_witnesses(history);
    let values = submitted_values(history);
    // acked_before[i]: submits acknowledged at positions before i (jobs are never purged in
    // the workload, so a count read must see at least that many).
    let mut acked_before = Vec::with_capacity(history.len() + 1);
    acked_before.push(0u64);
    for e in history {
        let acked = matches!(e.op, Op::Submit { job: Some(_), .. }) && e.kind == Kind::Ok;
        acked_before.push(acked_before[acked_before.len() - 1] + u64::from(acked));
    }
    for (pos, e) in history.iter().enumerate() {
        if let (
            Op::CountRead {
                queue,
                total: Some(total),
            },
            Kind::Ok,
        ) = (&e.op, e.kind)
        {
            verdict.add("count_reads", 1);
            if let Some(invoke) = pairs.partner(pos) {
                let must = acked_before[invoke];
                if *total < must {
                    let text = format!(
                        "count read of queue {queue} (invoked at index {}, ok at index {}) saw \
                         {total} jobs, but {must} submits were acknowledged before it began",
                        history[invoke].index, e.index
                    );
                    verdict.violation("stale_count_reads", text);
                }
            }
            continue;
        }
        let Op::Read { job, value, state } = &e.op else {
            continue;
        };
        if e.kind != Kind::Ok {
            continue;
        }
        verdict.add("reads", 1);
        let Some(seen) = Stage::of(state.as_deref()) else {
            let state = state.as_deref().unwrap_or_default();
            let text = format!(
                "read of job {job} at index {}: unknown state {state}",
                e.index
            );
            verdict.violation("malformed", text);
            continue;
        };
        if let Some(invoke) = pairs.partner(pos) {
            check_read_stage(history, &witnesses, (pos, invoke), seen, &mut verdict);
        }
        if let (Some(v), Some(submitted)) = (value, values.get(job)) {
            if v != submitted {
                let text = format!(
                    "read of job {job} at index {} saw value {v}, but its submit carried \
                     {submitted}",
                    e.index
                );
                verdict.violation("wrong_values", text);
            }
        }
    }
    verdict
}

/// Flags the read completed at `pos` (invoked at `invoke`) if it saw less than `seen`
/// requires.
fn check_read_stage(
    history: &[Event],
    witnesses: &Witnesses,
    (pos, invoke): (usize, usize),
    seen: Stage,
    verdict: &mut Verdict,
) {
    let Op::Read { job, state, .. } = &history[pos].op else {
        return;
    };
    for stage in [Stage::Terminal, Stage::Exists] {
        let Some((at, what)) = witnesses.get(&(*job, stage)) else {
            continue;
        };
        if *at >= invoke {
            continue;
        }
        if seen < stage {
            let text = format!(
                "read of job {job} (invoked at index {}, ok at index {}) saw {}, but {what} \
                 completed before it was invoked",
                history[invoke].index,
                history[pos].index,
                state.as_deref().unwrap_or("not found")
            );
            verdict.violation("stale_reads", text);
        }
        return;
    }
}

/// For each (job, stage), the earliest completed operation that shows the job reached it.
fn stage_witnesses(history: &[Event]) -> Witnesses {
    let mut witnesses = Witnesses::new();
    for (pos, e) in history.iter().enumerate() {
        if e.kind != Kind::Ok {
            continue;
        }
        let (job, stage, what) = match &e.op {
            Op::Submit { job: Some(job), .. } => (*job, Stage::Exists, "submit ok"),
            Op::Complete { job, .. } => (*job, Stage::Terminal, "complete ok"),
            Op::Read { job, state, .. } => match Stage::of(state.as_deref()) {
                Some(stage @ (Stage::Exists | Stage::Terminal)) => (*job, stage, "read ok"),
                _ => continue,
            },
            _ => continue,
        };
        let what = format!("{what} at index {}", e.index);
        witnesses.entry((job, stage)).or_insert((pos, what));
    }
    witnesses
}

/// Each acknowledged job's submitted value.
fn submitted_values(history: &[Event]) -> BTreeMap<u64, u64> {
    let acks = history.iter().filter(|e| e.kind == Kind::Ok);
    acks.filter_map(|e| match e.op {
        Op::Submit {
            value,
            job: Some(job),
        } => Some((job, value)),
        _ => None,
    })
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Lock.

/// The largest token seen so far on a resource: (token, owner, index of the event).
type Newest<'a> = BTreeMap<&'a str, (u64, &'a str, u64)>;

/// Checks the lock workload's fencing.
///
/// Flags (each makes the verdict invalid):
/// - `token_order_violations`: an acquire `ok` of resource R whose token is not larger than
///   that of a grant of R that completed before this acquire was invoked (grants in real-time
///   order must strictly increase; concurrent grants may complete in either order), or one
///   token of R granted to two owners. A re-grant of the same token to the same owner (a
///   renewal) is allowed.
/// - `fenced_violations`: a fenced write `ok` on R with a token lower than that of a write on
///   R accepted before this write was invoked — the register must refuse it. This is how two
///   holders whose grants overlapped (a lease that expired under its holder) show up when
///   their writes were accepted out of token order.
/// - `malformed`: see the module doc, or an acquire `ok` with no token.
///
/// Also counts `grants`, `writes_accepted`, and `unfenced_overlaps`: pairs of grants of one
/// resource whose holding intervals (acquire `ok` to the release's invocation, or to the end
/// of the history) overlap in real time. That is informational: expected when a lease expires
/// under its holder, and harmless while fencing holds.
pub fn check_lock(history: &[Event]) -> Verdict {
    let figures = [
        "grants",
        "writes_accepted",
        "token_order_violations",
        "fenced_violations",
        "unfenced_overlaps",
    ];
    let (mut verdict, pairs) = start(history, "lock", Family::Lock, &figures);
    check_grant_order(history, &pairs, &mut verdict);
    check_fenced_writes(history, &pairs, &mut verdict);
    count_overlaps(history, &mut verdict);
    verdict
}

/// Flags grants whose tokens do not increase in real-time order, and tokens granted twice.
fn check_grant_order(history: &[Event], pairs: &Pairs, verdict: &mut Verdict) {
    let mut newest = Newest::new();
    let mut before_invoke: BTreeMap<usize, (u64, &str, u64)> = BTreeMap::new();
    let mut owners: BTreeMap<(&str, u64), &str> = BTreeMap::new();
    for (pos, e) in history.iter().enumerate() {
        let Op::Acquire {
            resource,
            owner,
            token,
        } = &e.op
        else {
            continue;
        };
        match (e.kind, token) {
            (Kind::Invoke, _) => {
                if let Some(n) = newest.get(resource.as_str()) {
                    before_invoke.insert(pos, *n);
                }
            }
            (Kind::Ok, None) => {
                let text = format!("acquire ok of {resource} at index {} has no token", e.index);
                verdict.violation("malformed", text);
            }
            (Kind::Ok, Some(t)) => {
                verdict.add("grants", 1);
                let prior = pairs.partner(pos).and_then(|i| before_invoke.get(&i));
                let holder = owners.insert((resource, *t), owner);
                if let Some(text) = grant_problem(e, *t, prior, holder) {
                    verdict.violation("token_order_violations", text);
                }
                let entry = newest.entry(resource).or_insert((*t, owner, e.index));
                if *t > entry.0 {
                    *entry = (*t, owner, e.index);
                }
            }
            _ => {}
        }
    }
}

/// What is wrong with the acquire `ok` `e` granting `token`, given the newest grant completed
/// before it was invoked and the owner that token was granted to before, if any.
fn grant_problem(
    e: &Event,
    token: u64,
    prior: Option<&(u64, &str, u64)>,
    holder: Option<&str>,
) -> Option<String> {
    let Op::Acquire {
        resource, owner, ..
    } = &e.op
    else {
        return None;
    };
    let at = e.index;
    if let Some((t, o, i)) = prior {
        if token < *t || (token == *t && o != owner) {
            return Some(format!(
                "{resource}: token {token} granted to {owner} (ok at index {at}) after token {t} \
                 was granted to {o} (ok at index {i}) before this acquire was invoked"
            ));
        }
    }
    match holder {
        Some(o) if o != owner => Some(format!(
            "{resource}: token {token} granted to {owner} (ok at index {at}) was also granted \
             to {o}"
        )),
        _ => None,
    }
}

/// Flags fenced writes accepted with a token lower than an earlier accepted write's.
fn check_fenced_writes(history: &[Event], pairs: &Pairs, verdict: &mut Verdict) {
    let mut newest: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut before_invoke: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for (pos, e) in history.iter().enumerate() {
        let Op::FencedWrite {
            resource,
            token,
            value,
        } = &e.op
        else {
            continue;
        };
        match e.kind {
            Kind::Invoke => {
                if let Some(n) = newest.get(resource.as_str()) {
                    before_invoke.insert(pos, *n);
                }
            }
            Kind::Ok => {
                verdict.add("writes_accepted", 1);
                let prior = pairs.partner(pos).and_then(|i| before_invoke.get(&i));
                if let Some((t, i)) = prior.filter(|(t, _)| token < t) {
                    let text = format!(
                        "{resource}: write of value {value} with token {token} accepted at index \
                         {}, after a write with token {t} was accepted at index {i}, before this \
                         write was invoked",
                        e.index
                    );
                    verdict.violation("fenced_violations", text);
                }
                let entry = newest.entry(resource).or_insert((*token, e.index));
                if *token > entry.0 {
                    *entry = (*token, e.index);
                }
            }
            Kind::Fail | Kind::Info => {}
        }
    }
}

/// Counts pairs of grants of one resource whose holding intervals overlap.
fn count_overlaps(history: &[Event], verdict: &mut Verdict) {
    // (resource, token) -> [start, end) in positions; the first grant of a token counts.
    let mut held: BTreeMap<(&str, u64), (usize, usize)> = BTreeMap::new();
    for (pos, e) in history.iter().enumerate() {
        match (&e.op, e.kind) {
            (
                Op::Acquire {
                    resource,
                    token: Some(t),
                    ..
                },
                Kind::Ok,
            ) => {
                held.entry((resource, *t)).or_insert((pos, history.len()));
            }
            (Op::Release { resource, token }, Kind::Invoke) => {
                if let Some(interval) = held.get_mut(&(resource.as_str(), *token)) {
                    interval.1 = interval.1.min(pos);
                }
            }
            _ => {}
        }
    }
    let mut by_resource: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for ((resource, _), interval) in held {
        by_resource.entry(resource).or_default().push(interval);
    }
    let overlaps: usize = by_resource.into_values().map(overlapping_pairs).sum();
    verdict.set("unfenced_overlaps", overlaps);
}

/// The number of pairs of half-open intervals that overlap (a sweep over starts).
fn overlapping_pairs(mut intervals: Vec<(usize, usize)>) -> usize {
    intervals.sort_unstable();
    let mut ends = BinaryHeap::new();
    let mut pairs = 0;
    for (start, end) in intervals {
        while ends.peek().is_some_and(|Reverse(e)| *e <= start) {
            ends.pop();
        }
        pairs += ends.len();
        ends.push(Reverse(end));
    }
    pairs
}

// ---------------------------------------------------------------------------------------------
// Cron.

/// Checks that each expected cron tick ran exactly once.
///
/// Per (schedule, tick), from cron run `ok` events and the ticks cron expect `ok` events list:
/// - `missed`: an expected tick with no run;
/// - `duplicates`: a tick with more than one run (each run must be recorded once);
/// - `phantoms`: a run of a tick that was not expected.
///
/// Each makes the verdict invalid. Also counts `expected` (ticks) and `runs`.
pub fn check_cron(history: &[Event]) -> Verdict {
    let figures = ["expected", "runs", "missed", "duplicates", "phantoms"];
    let (mut verdict, _) = start(history, "cron", Family::Cron, &figures);
    let mut expected: BTreeSet<(&str, u64)> = BTreeSet::new();
    let mut runs: BTreeMap<(&str, u64), Vec<String>> = BTreeMap::new();
    for e in history.iter().filter(|e| e.kind == Kind::Ok) {
        match &e.op {
            Op::CronExpect { schedule, ticks_ms } => {
                expected.extend(ticks_ms.iter().map(|t| (schedule.as_str(), *t)));
            }
            Op::CronRun {
                schedule,
                tick_ms,
                node,
                token,
            } => {
                let run = format!("node {node} token {token} (index {})", e.index);
                runs.entry((schedule, *tick_ms)).or_default().push(run);
            }
            _ => {}
        }
    }
    verdict.set("expected", expected.len());
    verdict.set("runs", runs.values().map(Vec::len).sum());
    for ((schedule, tick), list) in &runs {
        if list.len() > 1 {
            let text = format!(
                "schedule {schedule} tick {tick} ran {} times: {}",
                list.len(),
                list.join(", ")
            );
            verdict.violation("duplicates", text);
        }
        if !expected.contains(&(schedule, *tick)) {
            let text = format!(
                "schedule {schedule} tick {tick} was not expected but ran: {}",
                list.join(", ")
            );
            verdict.violation("phantoms", text);
        }
    }
    for (schedule, tick) in &expected {
        if !runs.contains_key(&(schedule, *tick)) {
            verdict.violation(
                "missed",
                format!("schedule {schedule} tick {tick} never ran"),
            );
        }
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Divergence.

/// Checks that replicas agree: digest `ok` events with the same `applied` index must carry the
/// same digest (`mismatches`, invalid), whichever nodes took them, including one node twice.
///
/// Nodes ending at different applied indexes is not a failure (a node may lag or have restarted
/// late); `applied_distinct` counts the distinct last applied indexes of the nodes and
/// `lagging_nodes` those behind the furthest. Also counts `digests` and `nodes`.
pub fn check_divergence(history: &[Event]) -> Verdict {
    let figures = [
        "digests",
        "nodes",
        "mismatches",
        "applied_distinct",
        "lagging_nodes",
    ];
    let (mut verdict, _) = start(history, "divergence", Family::Divergence, &figures);
    let mut at: BTreeMap<u64, BTreeMap<&str, BTreeSet<u64>>> = BTreeMap::new();
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for e in history.iter().filter(|e| e.kind == Kind::Ok) {
        let Op::Digest {
            node,
            applied,
            digest,
        } = &e.op
        else {
            continue;
        };
        verdict.add("digests", 1);
        at.entry(*applied)
            .or_default()
            .entry(digest)
            .or_default()
            .insert(*node);
        let furthest = last.entry(*node).or_insert(*applied);
        *furthest = (*furthest).max(*applied);
    }
    for (applied, digests) in &at {
        if digests.len() > 1 {
            let parts: Vec<String> = digests
                .iter()
                .map(|(d, nodes)| format!("{d} on nodes {nodes:?}"))
                .collect();
            verdict.violation(
                "mismatches",
                format!("applied index {applied}: {}", parts.join(", ")),
            );
        }
    }
    let ends: BTreeSet<u64> = last.values().copied().collect();
    let max = ends.last().copied().unwrap_or(0);
    verdict.set("nodes", last.len());
    verdict.set("applied_distinct", ends.len());
    verdict.set("lagging_nodes", last.values().filter(|a| **a < max).count());
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Grant;

    /// Builds a history: each event gets the next index, 10 ms apart, on node 1.
    #[derive(Default)]
    struct B {
        events: Vec<Event>,
    }

    impl B {
        fn push(mut self, process: u64, kind: Kind, op: Op) -> B {
            let index = self.events.len() as u64;
            let event = Event {
                index,
                time_ms: 10 * index,
                process,
                node: Some(1),
                kind,
                op,
            };
            self.events.push(event);
            self
        }
        fn inv(self, p: u64, op: Op) -> B {
            self.push(p, Kind::Invoke, op)
        }
        fn ok(self, p: u64, op: Op) -> B {
            self.push(p, Kind::Ok, op)
        }
        fn fail(self, p: u64, op: Op) -> B {
            self.push(p, Kind::Fail, op)
        }
        fn info(self, p: u64, op: Op) -> B {
            self.push(p, Kind::Info, op)
        }
        /// An invocation immediately followed by its `ok`.
        fn call(self, p: u64, invoke: Op, ok: Op) -> B {
            self.inv(p, invoke).ok(p, ok)
        }
        fn submit(self, p: u64, value: u64, job: u64) -> B {
            self.call(p, submit(value), submitted(value, job))
        }
        fn lease(self, p: u64, grants: &[(u64, u64, u64)]) -> B {
            self.call(p, lease(), leased(grants))
        }
        fn complete(self, p: u64, job: u64, token: u64, value: u64) -> B {
            self.call(p, complete(job, token, value), complete(job, token, value))
        }
        /// Lone final-read observations: (job, value, state, attempts_succeeded).
        fn finals(self, finals: &[(u64, u64, &str, u32)]) -> B {
            finals.iter().fold(self, |b, (job, value, state, n)| {
                b.ok(99, final_read(*job, *value, state, *n))
            })
        }
        fn done(self) -> Vec<Event> {
            self.events
        }
    }

    fn submit(value: u64) -> Op {
        Op::Submit { value, job: None }
    }
    fn submitted(value: u64, job: u64) -> Op {
        Op::Submit {
            value,
            job: Some(job),
        }
    }
    fn lease() -> Op {
        Op::Lease { grants: vec![] }
    }
    fn leased(grants: &[(u64, u64, u64)]) -> Op {
        let grants = grants
            .iter()
            .map(|&(job, token, value)| Grant { job, token, value })
            .collect();
        Op::Lease { grants }
    }
    fn complete(job: u64, token: u64, value: u64) -> Op {
        Op::Complete { job, token, value }
    }
    fn read(job: u64) -> Op {
        Op::Read {
            job,
            value: None,
            state: None,
        }
    }
    fn read_ok(job: u64, value: Option<u64>, state: Option<&str>) -> Op {
        Op::Read {
            job,
            value,
            state: state.map(str::to_string),
        }
    }
    fn final_read(job: u64, value: u64, state: &str, attempts_succeeded: u32) -> Op {
        Op::FinalRead {
            job,
            value,
            state: state.to_string(),
            attempts_succeeded,
        }
    }
    fn acquire(resource: &str, owner: &str, token: Option<u64>) -> Op {
        Op::Acquire {
            resource: resource.to_string(),
            owner: owner.to_string(),
            token,
        }
    }
    fn release(resource: &str, token: u64) -> Op {
        Op::Release {
            resource: resource.to_string(),
            token,
        }
    }
    fn write(resource: &str, token: u64, value: u64) -> Op {
        Op::FencedWrite {
            resource: resource.to_string(),
            token,
            value,
        }
    }
    fn cron_run(tick_ms: u64, node: u64, token: u64) -> Op {
        Op::CronRun {
            schedule: "s".to_string(),
            tick_ms,
            node,
            token,
        }
    }
    fn cron_expect(ticks_ms: &[u64]) -> Op {
        Op::CronExpect {
            schedule: "s".to_string(),
            ticks_ms: ticks_ms.to_vec(),
        }
    }
    fn digest(node: u64, applied: u64, digest: &str) -> Op {
        Op::Digest {
            node,
            applied,
            digest: digest.to_string(),
        }
    }

    /// The figure `name` of `verdict` (0 if absent).
    fn fig(verdict: &Verdict, name: &str) -> u64 {
        verdict.figures.get(name).copied().unwrap_or(0)
    }

    /// Two acked jobs, one indeterminate submit, a redelivery after lease expiry whose stale
    /// completion is refused: every guarantee holds.
    fn good_queue() -> B {
        B::default()
            .submit(1, 101, 1)
            .submit(1, 102, 2)
            .inv(2, submit(103))
            .info(2, submit(103))
            .lease(3, &[(1, 1, 101), (2, 1, 102)])
            .complete(3, 1, 1, 101)
            .lease(4, &[(2, 2, 102)])
            .complete(4, 2, 2, 102)
            .inv(3, complete(2, 1, 102))
            .fail(3, complete(2, 1, 102))
    }

    /// A good queue history passes, with its figures counted.
    #[test]
    fn queue_good_history_passes() {
        let h = good_queue()
            .finals(&[(1, 101, "succeeded", 1), (2, 102, "succeeded", 1)])
            .done();
        let v = check_queue(&h);
        assert!(v.valid, "{v}");
        assert_eq!(fig(&v, "acked"), 2);
        assert_eq!(fig(&v, "indeterminate"), 1);
        assert_eq!(fig(&v, "completed"), 2);
        assert_eq!(fig(&v, "redeliveries"), 1);
        assert_eq!(fig(&v, "final_succeeded"), 2);
        assert_eq!(fig(&v, "events"), h.len() as u64);
    }

    /// An acknowledged job with no final read, or not in a terminal state, is lost.
    #[test]
    fn queue_lost_write_flagged() {
        let h = good_queue().finals(&[(1, 101, "succeeded", 1)]).done();
        let v = check_queue(&h);
        assert!(!v.valid);
        assert_eq!(fig(&v, "lost"), 1);
        assert!(v.problems[0].contains("job 2 (value 102)"), "{v}");
        let h = good_queue()
            .finals(&[(1, 101, "succeeded", 1), (2, 102, "ready", 0)])
            .done();
        let v = check_queue(&h);
        assert_eq!(fig(&v, "lost"), 1);
        assert!(v.problems[0].contains("final state ready"), "{v}");
    }

    /// Two accepted completions of one job, or a final read with two successful attempts,
    /// are duplicate completions.
    #[test]
    fn queue_double_completion_flagged() {
        let h = good_queue()
            .complete(5, 1, 1, 101)
            .finals(&[(1, 101, "succeeded", 1), (2, 102, "succeeded", 2)])
            .done();
        let v = check_queue(&h);
        assert!(!v.valid);
        assert_eq!(fig(&v, "duplicate_completions"), 2);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("job 1: 2 accepted completions")),
            "{v}"
        );
        assert!(
            v.problems.iter().any(|p| p.contains("job 2: final read")),
            "{v}"
        );
    }

    /// A completion invoked after a newer grant's `ok` but still accepted is a stale-token
    /// completion; the same completion invoked before that `ok` is not.
    #[test]
    fn queue_stale_token_flagged() {
        let base = || B::default().submit(1, 101, 1).lease(3, &[(1, 1, 101)]);
        let finals = [(1, 101, "succeeded", 1)];
        let stale = base()
            .lease(4, &[(1, 2, 101)])
            .complete(3, 1, 1, 101)
            .finals(&finals)
            .done();
        let v = check_queue(&stale);
        assert!(!v.valid);
        assert_eq!(fig(&v, "stale_token_completions"), 1);
        assert!(v.problems[0].contains("job 1 with token 1"), "{v}");
        let concurrent = base()
            .inv(4, lease())
            .inv(3, complete(1, 1, 101))
            .ok(4, leased(&[(1, 2, 101)]))
            .ok(3, complete(1, 1, 101))
            .finals(&finals)
            .done();
        let v = check_queue(&concurrent);
        assert!(v.valid, "{v}");
        assert_eq!(fig(&v, "stale_token_completions"), 0);
    }

    /// A grant of a value never submitted, and a grant of a job with another job's value,
    /// are phantoms.
    #[test]
    fn queue_phantom_flagged() {
        let h = good_queue()
            .lease(5, &[(7, 1, 999), (1, 2, 102)])
            .finals(&[(1, 101, "succeeded", 1), (2, 102, "succeeded", 1)])
            .done();
        let v = check_queue(&h);
        assert!(!v.valid);
        assert_eq!(fig(&v, "phantoms"), 2);
        assert!(v
            .problems
            .iter()
            .any(|p| p.contains("value 999, which was never submitted")));
        assert!(v
            .problems
            .iter()
            .any(|p| p.contains("job 1 has value 102, but its submit ok")));
    }

    /// A completion with no invocation is reported as malformed, not panicked on.
    #[test]
    fn queue_malformed_reported() {
        let h = B::default()
            .ok(1, submitted(1, 1))
            .finals(&[(1, 1, "succeeded", 1)])
            .done();
        let v = check_queue(&h);
        assert!(!v.valid);
        assert_eq!(fig(&v, "malformed"), 1);
    }

    /// A read after an acknowledged submit that does not find the job is stale.
    #[test]
    fn reads_stale_after_submit_flagged() {
        let h = B::default()
            .submit(1, 101, 1)
            .call(2, read(1), read_ok(1, None, None))
            .done();
        let v = check_reads(&h);
        assert!(!v.valid);
        assert_eq!(fig(&v, "stale_reads"), 1);
        assert!(
            v.problems[0].contains("saw not found, but submit ok at index 1"),
            "{v}"
        );
    }

    /// A read after an accepted completion that shows the job leased is stale.
    #[test]
    fn reads_stale_after_complete_flagged() {
        let h = B::default()
            .submit(1, 101, 1)
            .lease(3, &[(1, 1, 101)])
            .complete(3, 1, 1, 101)
            .call(2, read(1), read_ok(1, Some(101), Some("leased")))
            .done();
        let v = check_reads(&h);
        assert!(!v.valid);
        assert_eq!(fig(&v, "stale_reads"), 1);
        assert!(v.problems[0].contains("saw leased, but complete ok"), "{v}");
    }

    /// A read that does not find a job after an earlier read saw it terminal is stale.
    #[test]
    fn reads_backwards_after_read_flagged() {
        let h = B::default()
            .inv(1, submit(101))
            .call(2, read(1), read_ok(1, Some(101), Some("succeeded")))
            .call(2, read(1), read_ok(1, Some(101), Some("ready")))
            .done();
        let v = check_reads(&h);
        assert_eq!(fig(&v, "stale_reads"), 1, "{v}");
    }

    /// A read concurrent with the submit may miss the job; later reads see it: valid.
    #[test]
    fn reads_concurrent_with_submit_pass() {
        let h = B::default()
            .inv(1, submit(101))
            .inv(2, read(1))
            .ok(1, submitted(101, 1))
            .ok(2, read_ok(1, None, None))
            .call(2, read(1), read_ok(1, Some(101), Some("ready")))
            .done();
        let v = check_reads(&h);
        assert!(v.valid, "{v}");
        assert_eq!(fig(&v, "reads"), 2);
    }

    /// Holders in turn, a renewal, and concurrent acquires completing out of token order pass.
    #[test]
    fn lock_clean_history_passes() {
        let h = B::default()
            .call(1, acquire("r", "a", None), acquire("r", "a", Some(1)))
            .call(1, write("r", 1, 10), write("r", 1, 10))
            .call(1, acquire("r", "a", None), acquire("r", "a", Some(1)))
            .call(1, release("r", 1), release("r", 1))
            .inv(2, acquire("r", "b", None))
            .inv(3, acquire("r", "c", None))
            .ok(3, acquire("r", "c", Some(3)))
            .ok(2, acquire("r", "b", Some(2)))
            .call(3, write("r", 3, 30), write("r", 3, 30))
            .inv(2, write("r", 2, 20))
            .fail(2, write("r", 2, 20))
            .done();
        let v = check_lock(&h);
        assert!(v.valid, "{v}");
        assert_eq!(fig(&v, "grants"), 4);
        assert_eq!(fig(&v, "writes_accepted"), 2);
        assert_eq!(fig(&v, "unfenced_overlaps"), 1);
    }

    /// Two holders whose writes were accepted out of token order are a fenced violation.
    #[test]
    fn lock_out_of_order_writes_flagged() {
        let h = B::default()
            .call(1, acquire("r", "a", None), acquire("r", "a", Some(1)))
            .call(2, acquire("r", "b", None), acquire("r", "b", Some(2)))
            .call(2, write("r", 2, 20), write("r", 2, 20))
            .call(1, write("r", 1, 10), write("r", 1, 10))
            .done();
        let v = check_lock(&h);
        assert!(!v.valid);
        assert_eq!(fig(&v, "fenced_violations"), 1);
        assert_eq!(fig(&v, "unfenced_overlaps"), 1);
        assert!(v.problems[0].contains("value 10 with token 1"), "{v}");
    }

    /// A grant whose token is below an earlier completed grant's is a token order violation.
    #[test]
    fn lock_tokens_backwards_flagged() {
        let h = B::default()
            .call(1, acquire("r", "a", None), acquire("r", "a", Some(5)))
            .call(1, release("r", 5), release("r", 5))
            .call(2, acquire("r", "b", None), acquire("r", "b", Some(3)))
            .call(3, acquire("r", "c", None), acquire("r", "c", Some(3)))
            .done();
        let v = check_lock(&h);
        assert!(!v.valid);
        assert_eq!(fig(&v, "token_order_violations"), 2, "{v}");
    }

    /// A good cron history (each expected tick ran once) passes.
    #[test]
    fn cron_good_history_passes() {
        let h = B::default()
            .ok(9, cron_expect(&[0, 60_000]))
            .ok(9, cron_run(0, 1, 1))
            .ok(9, cron_run(60_000, 2, 1))
            .done();
        let v = check_cron(&h);
        assert!(v.valid, "{v}");
        assert_eq!((fig(&v, "expected"), fig(&v, "runs")), (2, 2));
    }

    /// A tick run twice, a tick never run and a tick run but not expected are flagged.
    #[test]
    fn cron_doubled_missed_and_phantom_ticks_flagged() {
        let doubled = B::default()
            .ok(9, cron_expect(&[0]))
            .ok(9, cron_run(0, 1, 1))
            .ok(9, cron_run(0, 2, 1));
        let v = check_cron(&doubled.done());
        assert_eq!((v.valid, fig(&v, "duplicates")), (false, 1), "{v}");
        let missed = B::default()
            .ok(9, cron_expect(&[0, 60_000]))
            .ok(9, cron_run(0, 1, 1));
        let v = check_cron(&missed.done());
        assert_eq!((v.valid, fig(&v, "missed")), (false, 1), "{v}");
        assert!(v.problems[0].contains("tick 60000 never ran"), "{v}");
        let phantom = B::default()
            .ok(9, cron_expect(&[0]))
            .ok(9, cron_run(0, 1, 1))
            .ok(9, cron_run(30_000, 1, 1));
        let v = check_cron(&phantom.done());
        assert_eq!((v.valid, fig(&v, "phantoms")), (false, 1), "{v}");
    }

    /// A count read that misses an acknowledged submit is stale; one concurrent with it is not.
    #[test]
    fn reads_stale_count_flagged() {
        let count = |total| Op::CountRead {
            queue: "q".into(),
            total,
        };
        let mut h = Vec::new();
        let mut push = |process, kind, op| {
            h.push(Event {
                index: h.len() as u64,
                time_ms: h.len() as u64,
                process,
                node: None,
                kind,
                op,
            })
        };
        push(
            1,
            Kind::Invoke,
            Op::Submit {
                value: 1,
                job: None,
            },
        );
        push(2, Kind::Invoke, count(None)); // concurrent with the submit: 0 is fine
        push(
            1,
            Kind::Ok,
            Op::Submit {
                value: 1,
                job: Some(1),
            },
        );
        push(2, Kind::Ok, count(Some(0)));
        push(3, Kind::Invoke, count(None)); // after the ack: must see 1
        push(3, Kind::Ok, count(Some(0)));
        let v = check_reads(&h);
        assert!(!v.valid, "{v}");
        assert_eq!(v.figures["stale_count_reads"], 1, "{v}");
        assert_eq!(v.figures["count_reads"], 2, "{v}");
    }

    /// Different digests at one applied index are flagged; a lagging node is not.
    #[test]
    fn divergence_mismatch_flagged() {
        let agree = B::default()
            .ok(9, digest(1, 10, "aa"))
            .ok(9, digest(2, 10, "aa"))
            .ok(9, digest(3, 8, "cc"));
        let v = check_divergence(&agree.done());
        assert!(v.valid, "{v}");
        assert_eq!(
            (fig(&v, "applied_distinct"), fig(&v, "lagging_nodes")),
            (2, 1)
        );
        let differ = B::default()
            .ok(9, digest(1, 10, "aa"))
            .ok(9, digest(2, 10, "aa"))
            .ok(9, digest(3, 10, "bb"));
        let v = check_divergence(&differ.done());
        assert!(!v.valid);
        assert_eq!(fig(&v, "mismatches"), 1);
        assert!(
            v.problems[0].contains("applied index 10: aa on nodes {1, 2}, bb on nodes {3}"),
            "{v}"
        );
    }

    /// check_all runs only the checkers whose operations occur, and the report reads well.
    #[test]
    fn check_all_runs_relevant_checkers() {
        let h = good_queue()
            .finals(&[(1, 101, "succeeded", 1), (2, 102, "succeeded", 1)])
            .ok(9, digest(1, 10, "aa"))
            .done();
        let verdicts = check_all(&h);
        let names: Vec<&str> = verdicts.iter().map(|v| v.name).collect();
        assert_eq!(names, ["queue", "divergence"]);
        assert!(
            verdicts[0].to_string().starts_with("queue: valid acked=2 "),
            "{}",
            verdicts[0]
        );
    }

    /// Problems are capped at PROBLEMS_MAX while the figures count every one.
    #[test]
    fn verdict_problems_capped() {
        let acked = (0..30).fold(B::default(), |b, i| b.submit(1, i, i));
        let v = check_queue(&acked.done());
        assert_eq!(v.problems.len(), PROBLEMS_MAX);
        assert_eq!(fig(&v, "lost"), 30);
        assert_eq!(fig(&v, "problems_omitted"), 10);
    }
}
