//! Golden-script tests for the state machine.
//!
//! Long file: test code only, the interpreter of every golden-script verb and dump in one
//! place.
//!
//! Each `testscripts/*.script` file is a list of commands, one per line, applied in order to a
//! fresh [`Machine`]. The output echoes each command as `> line`, then its response (and, for
//! `state`, `job` and `due`, a dump); it must equal the `.golden` file beside the script. Run
//! with `RAFTLINE_GOLDEN_UPDATE=1` to rewrite the golden files, then review the diff. Comment
//! (`#`) and blank lines are copied. The invariants are checked after every command.
//!
//! A trailing `@T` word sets the proposal's `now_ms` for that command and the ones after it
//! (0 at the start). Options are `key=value` words (lists comma-separated) or bare flags:
//!
//! - `submit QUEUE [p=N] [attempts=N] [delay=MS] [run_at=MS] [key=K] [caps=a,b] [perm=3,4]
//!   [ttl=MS] [deadline=MS] [timeout=MS] [backoff=BASE,FACTOR,CAP] [nojitter] [payload=BYTES]
//!   -- ARGV...` — a shell job, or an external one of BYTES bytes with `payload=`; `""` is an
//!   empty queue name or argv item.
//! - `lease WORKER [max=N] [queues=a,b] [caps=a,b] [ttl=MS] [node=ID:INCARNATION]` (max 1)
//! - `heartbeat WORKER`
//! - `complete JOB TOKEN ok` | `complete JOB TOKEN fail [class=NAME] [exit=N] [error=TEXT]`
//!   (class transient unless named)
//! - `checkpoint JOB TOKEN DATA`, `release JOB TOKEN`, `cancel JOB`
//! - `requeue JOB [p=N] [attempts=N] [argv=a,b]`
//! - `pause QUEUE`, `resume QUEUE`, `purge [QUEUE]`, `tick`, `register NODE INCARNATION`
//! - `configure [dead=MS] [finished=MS] [idem=MS] [aging=MS]` (others keep their value)
//! - `state` dumps the whole state, `job ID` one job, `ready QUEUE` a queue's ready jobs in
//!   lease order with their ranks, `due` prints [`Machine::next_due`].
//!
//! Subsystems (their dumps read through public readers only):
//!
//! - `workflow NAME [policy=fail_fast|continue] [parallel=N] [attempts=N] -- STEP...`, a step
//!   being `name[<dep[:success|failure|always],...][+COMPENSATION_QUEUE]` whose job runs
//!   `true` in the queue named after the step; `dag ID cancel|pause|resume`,
//!   `dag ID retry|skip STEP`; `wf ID` dumps a workflow and its steps.
//! - `resource NAME CAPACITY`, `submit ... needs=r0,r1:2`, `lock RESOURCE OWNER [ttl=MS]`,
//!   `renew RESOURCE TOKEN [ttl=MS]`, `unlock RESOURCE TOKEN`; `resources` dumps every
//!   resource with its job holders, locks and waiters.
//! - `schedule NAME [tz=ZONE] [start=MS] [end=MS] [catchup=skip|latest|all:N]
//!   [overlap=allow|skip|queue] [queue=Q] -- EXPRESSION...` (a job running `true` in Q, `cron`
//!   unless named), `sched ID pause|resume|trigger|delete`, `sched ID backfill FROM TO`;
//!   `schedules` dumps them with their run history.
//! - `trigger TOPIC [queue=Q] [external]` (a job in Q, `ev` unless named; `external`: an
//!   external job that gets the event's payload), `untrigger ID`, `emit TOPIC KEY [PAYLOAD]`,
//!   `timer TOPIC KEY [due=MS] [delay=MS] [payload=TEXT]`, `untimer ID`; `events` dumps
//!   triggers, timers and `next_due`.
//! - `policy QUEUE [rate=COUNT/PER_MS] [concurrency=N] [breaker=PCT/WINDOW/COOLDOWN_MS]` (no
//!   option removes the policy); `control QUEUE` dumps the policy and its state.
//! - `cursor NAME VALUE [expect=VERSION]` puts a cursor (`-` for an empty value: delete);
//!   `cursor NAME` dumps it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::*;

/// Runs one script and returns its output.
fn run_script(script: &str) -> String {
    let mut m = Machine::new();
    let mut out = String::new();
    let mut now_ms = 0;
    for (n, line) in script.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            writeln!(out, "{line}").unwrap();
            continue;
        }
        writeln!(out, "> {line}").unwrap();
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if let Some(t) = words.last().and_then(|w| w.strip_prefix('@')) {
            now_ms = t
                .parse()
                .unwrap_or_else(|_| panic!("line {}: bad time @{t}", n + 1));
            words.pop();
        }
        match words.as_slice() {
            ["state"] => dump(&m, &mut out),
            ["job", id] => match m.jobs.get(num(id)) {
                Some(job) => dump_job(&job, &mut out),
                None => writeln!(out, "job {id} not found").unwrap(),
            },
            ["due"] => writeln!(out, "next_due: {}", opt(m.next_due())).unwrap(),
            ["ready", queue] => dump_ready(&m, queue, &mut out),
            _ if dump_subsystem(&m, &words, &mut out) => {}
            _ => {
                let command =
                    parse(&words, &m).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
                let response = m.apply(&Proposal { now_ms, command });
                m.check_invariants();
                print_response(&response, &mut out);
            }
        }
    }
    out
}

fn num<T: std::str::FromStr>(word: &str) -> T {
    word.parse()
        .unwrap_or_else(|_| panic!("{word:?} is not a number"))
}

/// `key=value` options (a bare word is a flag); lists are comma-separated.
struct Opts<'a>(BTreeMap<&'a str, &'a str>);

impl<'a> Opts<'a> {
    /// Parses `words`, refusing keys not in `allowed`.
    fn parse(words: &[&'a str], allowed: &[&str]) -> Result<Self, String> {
        let mut opts = BTreeMap::new();
        for word in words {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if !allowed.contains(&key) {
                return Err(format!("unknown option {key:?}"));
            }
            opts.insert(key, value);
        }
        Ok(Opts(opts))
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.0.get(key).map(|v| num(v))
    }

    fn str(&self, key: &str) -> Option<String> {
        self.0.get(key).map(|v| v.to_string())
    }

    fn list(&self, key: &str) -> Option<Vec<String>> {
        let value = self.0.get(key)?;
        Some(
            value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )
    }
}

fn parse(words: &[&str], m: &Machine) -> Result<Command, String> {
    Ok(match words {
        ["submit", rest @ ..] => submit(rest)?,
        ["lease", worker, rest @ ..] => {
            let o = Opts::parse(rest, &["max", "queues", "caps", "ttl", "node"])?;
            let node = o.str("node").map(|v| {
                let (id, incarnation) = v.split_once(':').expect("node=ID:INCARNATION");
                NodeRun {
                    node_id: num(id),
                    incarnation: num(incarnation),
                }
            });
            Command::Lease {
                worker: WorkerRef {
                    id: worker.to_string(),
                    node,
                },
                queues: o.list("queues").unwrap_or_default(),
                capabilities: o.list("caps").unwrap_or_default(),
                max: o.num("max").unwrap_or(1),
                ttl_ms: o.num("ttl"),
            }
        }
        ["heartbeat", worker] => Command::Heartbeat {
            worker: worker.to_string(),
        },
        ["complete", job, token, result, rest @ ..] => Command::Complete {
            job_id: num(job),
            token: num(token),
            report: report(result, rest)?,
        },
        ["checkpoint", job, token, data] => Command::Checkpoint {
            job_id: num(job),
            token: num(token),
            data: data.as_bytes().to_vec(),
        },
        ["release", job, token] => Command::Release {
            job_id: num(job),
            token: num(token),
        },
        ["cancel", job] => Command::Cancel { job_id: num(job) },
        ["requeue", job, rest @ ..] => {
            let o = Opts::parse(rest, &["p", "attempts", "argv"])?;
            let changes = JobChanges {
                argv: o.list("argv"),
                env: None,
                priority: o.num("p"),
                max_attempts: o.num("attempts"),
            };
            Command::Requeue {
                job_id: num(job),
                changes,
            }
        }
        [verb @ ("pause" | "resume"), queue] => Command::PauseQueue {
            queue: queue.to_string(),
            paused: *verb == "pause",
        },
        ["purge", queue @ ..] if queue.len() <= 1 => Command::PurgeDead {
            queue: queue.first().map(|q| q.to_string()),
        },
        ["configure", rest @ ..] => {
            let o = Opts::parse(rest, &["dead", "finished", "idem", "aging"])?;
            let s = m.settings;
            Command::Configure(Settings {
                dead_retention_ms: o.num("dead").unwrap_or(s.dead_retention_ms),
                finished_retention_ms: o.num("finished").unwrap_or(s.finished_retention_ms),
                idempotency_window_ms: o.num("idem").unwrap_or(s.idempotency_window_ms),
                priority_aging_ms: o.num("aging").unwrap_or(s.priority_aging_ms),
            })
        }
        ["tick"] => Command::Tick,
        ["register", node, incarnation] => Command::RegisterNode {
            node_id: num(node),
            incarnation: num(incarnation),
        },
        _ => return subsystem(words),
    })
}

fn submit(words: &[&str]) -> Result<Command, String> {
    let split = words.iter().position(|w| *w == "--").unwrap_or(words.len());
    let argv: Vec<&str> = words[split..]
        .iter()
        .skip(1)
        .map(|a| a.trim_matches('"'))
        .collect();
    let [queue, rest @ ..] = &words[..split] else {
        return Err("submit needs a queue".into());
    };
    let allowed = [
        "p", "attempts", "delay", "run_at", "key", "caps", "perm", "ttl", "deadline", "timeout",
        "backoff", "nojitter", "payload", "needs",
    ];
    let o = Opts::parse(rest, &allowed)?;
    let queue = queue.trim_matches('"');
    let mut spec = match o.num("payload") {
        Some(bytes) => JobSpec::new(
            queue,
            JobKind::External {
                payload: vec![b'x'; bytes],
            },
        ),
        None => JobSpec::shell(queue, &argv),
    };
    spec.priority = o.num("p").unwrap_or(spec.priority);
    spec.max_attempts = o.num("attempts").unwrap_or(spec.max_attempts);
    spec.idempotency_key = o.str("key");
    spec.required_capabilities = o.list("caps").unwrap_or_default();
    spec.permanent_exit_codes = o
        .list("perm")
        .unwrap_or_default()
        .iter()
        .map(|c| num(c))
        .collect();
    spec.lease_ttl_ms = o.num("ttl").unwrap_or(spec.lease_ttl_ms);
    spec.deadline_ms = o.num("deadline");
    spec.timeout_ms = o.num("timeout");
    if let Some(backoff) = o.list("backoff") {
        let [base, factor, cap] = &backoff[..] else {
            return Err("backoff=BASE,FACTOR,CAP".into());
        };
        (
            spec.backoff.base_ms,
            spec.backoff.factor,
            spec.backoff.cap_ms,
        ) = (num(base), num(factor), num(cap));
    }
    spec.backoff.jitter = o.str("nojitter").is_none();
    spec.resources = needs(&o)?;
    Ok(Command::Submit {
        spec,
        delay_ms: o.num("delay").unwrap_or(0),
        run_at_ms: o.num("run_at"),
    })
}

fn report(result: &str, words: &[&str]) -> Result<Report, String> {
    let o = Opts::parse(words, &["class", "exit", "error"])?;
    let classes = [
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::Timeout,
        ErrorClass::LostLease,
        ErrorClass::Released,
        ErrorClass::Cancelled,
    ];
    let error_class = match (result, o.str("class")) {
        ("ok", None) => None,
        ("fail", None) => Some(ErrorClass::Transient),
        ("fail", Some(name)) => Some(
            classes
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or(format!("unknown class {name}"))?,
        ),
        _ => return Err("complete JOB TOKEN ok | fail [class=..]".into()),
    };
    Ok(Report {
        error_class,
        exit_code: o.num("exit"),
        error: o.str("error").unwrap_or_default(),
        output_tail: String::new(),
    })
}

fn opt(value: Option<u64>) -> String {
    value.map_or("none".into(), |v| v.to_string())
}

fn checkpoint(data: &Option<Vec<u8>>) -> String {
    data.as_ref().map_or("none".into(), |d| {
        format!("{:?}", String::from_utf8_lossy(d))
    })
}

/// Prints a list of items after `head`, one `[item]` per line, aligned under the first.
fn print_items(head: &str, items: Vec<String>, out: &mut String) {
    if items.is_empty() {
        writeln!(out, "{head} []").unwrap();
    }
    for (i, item) in items.iter().enumerate() {
        let lead = if i == 0 {
            head.to_string()
        } else {
            " ".repeat(head.len())
        };
        writeln!(out, "{lead} [{item}]").unwrap();
    }
}

fn print_response(response: &Response, out: &mut String) {
    let text = match response {
        Response::Submitted { id, duplicate } => {
            let dup = if *duplicate { " (duplicate)" } else { "" };
            format!("Submitted job {id}{dup}")
        }
        Response::NodeRegistered { released } => format!("NodeRegistered released={released}"),
        Response::Bulk { changed, skipped } => {
            format!("Bulk changed={changed:?} skipped={skipped}")
        }
        Response::Leased(grants) => {
            let items = grants.iter().map(|g| {
                format!(
                    "job {} token {} attempt {} expires {} checkpoint {}",
                    g.job_id,
                    g.token,
                    g.attempt,
                    g.expires_ms,
                    checkpoint(&g.checkpoint)
                )
            });
            return print_items("Leased", items.collect(), out);
        }
        Response::Heartbeated(leases) => {
            let items = leases
                .iter()
                .map(|(id, token, expires)| format!("job {id} token {token} expires {expires}"));
            return print_items("Heartbeated", items.collect(), out);
        }
        Response::Completed { state } => format!("Completed -> {}", state.name()),
        Response::Done { state } => format!("Done -> {}", state.name()),
        Response::Ok => "Ok".into(),
        Response::Purged { count } => format!("Purged {count}"),
        Response::Ticked { work } => format!("Ticked work={work}"),
        Response::Internal => "Internal".into(),
        Response::WorkflowSubmitted { id } => format!("WorkflowSubmitted {id}"),
        Response::LockGranted { token, expires_ms } => {
            format!("LockGranted token {token} expires {expires_ms}")
        }
        Response::LockBusy { capacity, .. } => format!("LockBusy capacity {capacity}"),
        Response::ScheduleCreated { id, next_fire_ms } => {
            format!("ScheduleCreated {id} next {next_fire_ms:?}")
        }
        Response::ScheduleChanged { started } => format!("ScheduleChanged started {started}"),
        Response::TriggerCreated { id } => format!("TriggerCreated {id}"),
        Response::WebhookCreated { id } => format!("WebhookCreated {id}"),
        Response::WebhookQueued { delivery } => format!("WebhookQueued {delivery}"),
        Response::CursorPut { version } => format!("CursorPut {version}"),
        Response::TimerCreated { id, due_ms } => format!("TimerCreated {id} due {due_ms}"),
        Response::Emitted { started, duplicate } => {
            format!("Emitted {started:?} duplicate {duplicate}")
        }
        Response::WorkflowChanged { state } => format!("WorkflowChanged -> {}", state.name()),
        Response::Batch(responses) => {
            writeln!(out, "Batch of {}:", responses.len()).unwrap();
            for r in responses {
                out.push_str("  ");
                print_response(r, out);
            }
            return;
        }
        Response::Rejected(rejection) => format!("Rejected({})", rejection_text(rejection)),
    };
    writeln!(out, "{text}").unwrap();
}

fn rejection_text(rejection: &Rejection) -> String {
    match rejection {
        Rejection::Invalid { field, message } => format!("Invalid: {field} {message}"),
        Rejection::NotFound { job_id } => format!("NotFound: job {job_id}"),
        Rejection::Precondition { message } => format!("Precondition: {message}"),
        Rejection::Exhausted { message } => format!("Exhausted: {message}"),
        Rejection::Missing { what } => format!("Missing: {what}"),
    }
}

fn dump(m: &Machine, out: &mut String) {
    writeln!(
        out,
        "now={} next_job_id={} next_token={}",
        m.now_ms,
        m.jobs.next_ids().0,
        m.jobs.next_ids().1
    )
    .unwrap();
    if m.settings != Settings::default() {
        let s = &m.settings;
        writeln!(
            out,
            "settings dead={} finished={} idem={} aging={}",
            s.dead_retention_ms,
            s.finished_retention_ms,
            s.idempotency_window_ms,
            s.priority_aging_ms
        )
        .unwrap();
    }
    for job in m.jobs.after(0) {
        dump_job(&job, out);
    }
    for queue in m.jobs.index().ready.keys() {
        dump_ready(m, queue, out);
    }
    if m.controls.paused().next().is_some() {
        let paused: Vec<&str> = m.controls.paused().map(String::as_str).collect();
        writeln!(out, "paused: {}", paused.join(" ")).unwrap();
    }
    for (queue, stats) in &m.jobs.index().queues {
        let counts: Vec<String> = JobState::ALL
            .iter()
            .filter(|s| stats.counts[**s as usize] > 0)
            .map(|s| format!("{}={}", s.name(), stats.counts[*s as usize]))
            .collect();
        let missed = stats.deadline_missed;
        writeln!(
            out,
            "queue {queue}: {} deadline_missed={missed}",
            counts.join(" ")
        )
        .unwrap();
    }
    for (key, id, expires) in m.jobs.idempotency_keys().iter() {
        writeln!(out, "idempotency {key:?} -> job {id} until {expires}").unwrap();
    }
    for (id, n) in m.nodes.iter() {
        writeln!(
            out,
            "node {id} incarnation={} first_registered={} registered={}",
            n.incarnation, n.first_registered_ms, n.registered_ms
        )
        .unwrap();
    }
    writeln!(out, "next_due: {}", opt(m.next_due())).unwrap();
}

fn dump_ready(m: &Machine, queue: &str, out: &mut String) {
    let ids: Vec<String> = m
        .ready_in(queue)
        .map(|id| format!("{id} (rank {})", m.jobs.get(id).expect("ready job").rank))
        .collect();
    writeln!(out, "ready {queue}: {}", ids.join(", ")).unwrap();
}

fn dump_job(job: &Job, out: &mut String) {
    let kind = match &job.spec.kind {
        JobKind::Shell { argv, .. } => format!("argv=[{}]", argv.join(" ")),
        JobKind::External { payload } => format!("payload={}B", payload.len()),
    };
    let lease = job.lease.as_ref().map_or("none".into(), |l| {
        format!("[token {} {} expires {}]", l.token, l.worker, l.expires_ms)
    });
    writeln!(
        out,
        "job {} {} p={} {} run_at={} attempts={}/{}/{} lease={lease} checkpoint={} {kind}",
        job.id,
        job.spec.queue,
        job.spec.priority,
        job.state.name(),
        job.run_at_ms,
        job.attempts_used,
        job.attempts_total,
        job.spec.max_attempts,
        if job.checkpoint.is_some() {
            "yes"
        } else {
            "no"
        },
    )
    .unwrap();
    let mut extra = Vec::new();
    if let Some(t) = job.finished_ms {
        extra.push(format!("finished={t}"));
    }
    if let Some(t) = job.purge_at_ms {
        extra.push(format!("purge_at={t}"));
    }
    if let Some(t) = job.spec.deadline_ms {
        extra.push(format!("deadline={t} missed={}", job.deadline_missed));
    }
    if let Some(e) = &job.error {
        extra.push(format!("error={e:?}"));
    }
    if !extra.is_empty() {
        writeln!(out, "  {}", extra.join(" ")).unwrap();
    }
    for a in &job.attempts {
        let node = a.node.map_or(String::new(), |n| format!(" node {n}"));
        let outcome = a.outcome.as_ref().map_or("open".into(), |o| {
            let class = o.error_class.map_or("ok", ErrorClass::name);
            let exit = o.exit_code.map_or(String::new(), |c| format!(" exit={c}"));
            let error = if o.error.is_empty() {
                String::new()
            } else {
                format!(" {:?}", o.error)
            };
            format!("{class}{exit}{error}")
        });
        writeln!(
            out,
            "  attempt {} token {} {}{node} {}..{} {outcome}",
            a.number,
            a.token,
            a.worker,
            a.started_ms,
            a.ended_ms.map_or(String::new(), |t| t.to_string())
        )
        .unwrap();
    }
}

/// `needs=r0,r1:2`: what a job needs of resources.
fn needs(o: &Opts) -> Result<Vec<resources::Need>, String> {
    o.list("needs")
        .unwrap_or_default()
        .iter()
        .map(|n| resources::Need::parse("needs", n).map_err(|r| format!("{r:?}")))
        .collect()
}

/// A shell job running `true` in `queue`.
fn job_in(queue: &str) -> JobSpec {
    JobSpec::shell(queue, &["true"])
}

/// The verbs of workflows, resources and locks, schedules, events and queue policies.
fn subsystem(words: &[&str]) -> Result<Command, String> {
    Ok(match words {
        ["workflow", name, rest @ ..] => workflow(name, rest)?,
        ["dag", id, op, step @ ..] => Command::Workflow {
            id: num(id),
            op: match (*op, step) {
                ("cancel", []) => WorkflowOp::Cancel,
                ("pause", []) => WorkflowOp::Pause,
                ("resume", []) => WorkflowOp::Resume,
                ("retry", [step]) => WorkflowOp::Retry {
                    step: step.to_string(),
                },
                ("skip", [step]) => WorkflowOp::Skip {
                    step: step.to_string(),
                },
                _ => return Err("dag ID cancel|pause|resume | dag ID retry|skip STEP".into()),
            },
        },
        ["resource", name, capacity] => Command::SetResource {
            name: name.to_string(),
            capacity: num(capacity),
        },
        ["lock", resource, owner, rest @ ..] => Command::LockAcquire {
            resource: resource.to_string(),
            owner: owner.to_string(),
            ttl_ms: Opts::parse(rest, &["ttl"])?.num("ttl").unwrap_or(10_000),
        },
        ["renew", resource, token, rest @ ..] => Command::LockRenew {
            resource: resource.to_string(),
            token: num(token),
            ttl_ms: Opts::parse(rest, &["ttl"])?.num("ttl").unwrap_or(10_000),
        },
        ["unlock", resource, token] => Command::LockRelease {
            resource: resource.to_string(),
            token: num(token),
        },
        ["policy", queue, rest @ ..] => policy(queue, rest)?,
        ["schedule", name, rest @ ..] => schedule(name, rest)?,
        ["sched", id, rest @ ..] => Command::Schedule {
            id: num(id),
            op: match rest {
                ["pause"] => schedule::ScheduleOp::Pause,
                ["resume"] => schedule::ScheduleOp::Resume,
                ["trigger"] => schedule::ScheduleOp::Trigger,
                ["delete"] => schedule::ScheduleOp::Delete,
                ["backfill", from, to] => schedule::ScheduleOp::Backfill {
                    from_ms: num(from),
                    to_ms: num(to),
                },
                _ => return Err("sched ID pause|resume|trigger|delete|backfill FROM TO".into()),
            },
        },
        ["trigger", topic, rest @ ..] => {
            let o = Opts::parse(rest, &["queue", "external"])?;
            let queue = o.str("queue").unwrap_or("ev".into());
            let spec = match o.str("external") {
                Some(_) => JobSpec::new(queue, JobKind::External { payload: vec![] }),
                None => job_in(&queue),
            };
            Command::CreateTrigger {
                topic: topic.to_string(),
                target: schedule::Target::Job(Box::new(spec)),
            }
        }
        ["untrigger", id] => Command::DeleteTrigger { id: num(id) },
        ["emit", topic, key, payload @ ..] if payload.len() <= 1 => Command::Emit {
            topic: topic.to_string(),
            dedup_key: key.trim_matches('"').to_string(),
            payload: payload.first().map_or(vec![], |p| p.as_bytes().to_vec()),
        },
        ["timer", topic, key, rest @ ..] => {
            let o = Opts::parse(rest, &["due", "delay", "payload"])?;
            Command::CreateTimer {
                due_ms: o.num("due"),
                delay_ms: o.num("delay").unwrap_or(0),
                topic: topic.to_string(),
                dedup_key: key.to_string(),
                payload: o.str("payload").unwrap_or_default().into_bytes(),
            }
        }
        ["untimer", id] => Command::CancelTimer { id: num(id) },
        ["cursor", name, value, rest @ ..] => Command::PutCursor {
            name: name.to_string(),
            value: if *value == "-" {
                vec![]
            } else {
                value.as_bytes().to_vec()
            },
            expected_version: Opts::parse(rest, &["expect"])?.num("expect"),
        },
        _ => return Err("unknown command or wrong arguments".into()),
    })
}

/// `workflow NAME [policy=fail_fast|continue] [parallel=N] [attempts=N] -- STEP...`; a step
/// is `name[<dep[:condition],...][+compensation-queue]`, its job runs in the queue named
/// after the step.
fn workflow(name: &str, words: &[&str]) -> Result<Command, String> {
    let split = words.iter().position(|w| *w == "--").unwrap_or(words.len());
    let o = Opts::parse(&words[..split], &["policy", "parallel", "attempts"])?;
    let attempts = o.num("attempts").unwrap_or(limits::MAX_ATTEMPTS_DEFAULT);
    let mut steps = Vec::new();
    for word in words.get(split + 1..).unwrap_or_default() {
        let (word, compensate) = match word.split_once('+') {
            Some((w, queue)) => (w, Some(job_in(queue))),
            None => (*word, None),
        };
        let (name, deps) = word.split_once('<').unwrap_or((word, ""));
        let mut depends_on = Vec::new();
        for dep in deps.split(',').filter(|d| !d.is_empty()) {
            let (step, condition) = dep.split_once(':').unwrap_or((dep, "success"));
            depends_on.push(Dependency {
                step: step.to_string(),
                condition: Condition::parse(condition).ok_or(format!("condition {condition}"))?,
            });
        }
        let mut job = job_in(name);
        job.max_attempts = attempts;
        steps.push(StepSpec {
            name: name.to_string(),
            job,
            depends_on,
            compensate,
        });
    }
    let policy = o.str("policy").unwrap_or("fail_fast".into());
    Ok(Command::SubmitWorkflow(WorkflowSpec {
        name: name.to_string(),
        failure_policy: FailurePolicy::parse(&policy).ok_or(format!("policy {policy}"))?,
        max_parallel: o
            .num("parallel")
            .unwrap_or(limits::WORKFLOW_PARALLEL_DEFAULT),
        steps,
    }))
}

/// `policy QUEUE [rate=COUNT/PER_MS] [concurrency=N] [breaker=PCT/WINDOW/COOLDOWN_MS]`.
fn policy(queue: &str, words: &[&str]) -> Result<Command, String> {
    let o = Opts::parse(words, &["rate", "concurrency", "breaker"])?;
    let parts =
        |key: &str| -> Option<Vec<u64>> { o.str(key).map(|v| v.split('/').map(num).collect()) };
    let rate = match parts("rate").as_deref() {
        Some([count, per_ms]) => Some(controls::Rate {
            count: *count as u32,
            per_ms: *per_ms,
        }),
        None => None,
        _ => return Err("rate=COUNT/PER_MS".into()),
    };
    let breaker = match parts("breaker").as_deref() {
        Some([pct, window, cooldown]) => Some(controls::BreakerConfig {
            threshold_pct: *pct as u32,
            window: *window as u32,
            cooldown_ms: *cooldown,
        }),
        None => None,
        _ => return Err("breaker=PCT/WINDOW/COOLDOWN_MS".into()),
    };
    Ok(Command::SetQueuePolicy {
        queue: queue.to_string(),
        policy: controls::QueuePolicy {
            rate,
            concurrency: o.num("concurrency"),
            breaker,
        },
    })
}

/// `schedule NAME [tz=ZONE] [start=MS] [end=MS] [catchup=skip|latest|all:N]
/// [overlap=allow|skip|queue] [queue=Q] -- EXPRESSION...`: a job running `true` in queue Q
/// (`cron` unless named) per tick.
fn schedule(name: &str, words: &[&str]) -> Result<Command, String> {
    use schedule::{CatchUp, Overlap};
    let split = words.iter().position(|w| *w == "--").unwrap_or(words.len());
    let allowed = ["tz", "start", "end", "catchup", "overlap", "queue"];
    let o = Opts::parse(&words[..split], &allowed)?;
    let catch_up = match o.str("catchup").as_deref() {
        None | Some("skip") => CatchUp::Skip,
        Some("latest") => CatchUp::Latest,
        Some(all) => CatchUp::All(num(all.strip_prefix("all:").ok_or("catchup=all:N")?)),
    };
    let overlap = match o.str("overlap").as_deref() {
        None | Some("allow") => Overlap::Allow,
        Some("skip") => Overlap::Skip,
        Some("queue") => Overlap::Queue,
        Some(other) => return Err(format!("overlap={other}")),
    };
    let queue = o.str("queue").unwrap_or("cron".into());
    Ok(Command::CreateSchedule(schedule::ScheduleSpec {
        name: name.to_string(),
        expr: words.get(split + 1..).unwrap_or_default().join(" "),
        tz: o.str("tz").unwrap_or("UTC".into()),
        start_ms: o.num("start"),
        end_ms: o.num("end"),
        target: schedule::Target::Job(Box::new(job_in(&queue))),
        catch_up,
        overlap,
    }))
}

/// The dumps of workflows, resources, schedules, events and queue controls, all through
/// public readers: `wf ID`, `resources`, `schedules`, `events`, `control QUEUE`. False when
/// `words` is none of them.
fn dump_subsystem(m: &Machine, words: &[&str], out: &mut String) -> bool {
    match words {
        ["wf", id] => match m.workflow(num(id)) {
            Some(w) => dump_workflow(w, out),
            None => writeln!(out, "workflow {id} not found").unwrap(),
        },
        ["resources"] => dump_resources(m, out),
        ["schedules"] => dump_schedules(m, out),
        ["events"] => dump_events(m, out),
        ["control", queue] => dump_control(m, queue, out),
        ["cursor", name] => match m.cursors().get(name) {
            Some(c) => writeln!(
                out,
                "cursor {name} = {:?} version {} updated {}",
                String::from_utf8_lossy(&c.value),
                c.version,
                c.updated_ms
            )
            .unwrap(),
            None => writeln!(out, "cursor {name} absent").unwrap(),
        },
        _ => return false,
    }
    true
}

fn dump_workflow(w: &Workflow, out: &mut String) {
    let ready: Vec<String> = w
        .ready
        .iter()
        .map(|i| w.spec.steps[*i as usize].name.clone())
        .collect();
    writeln!(
        out,
        "workflow {} {} {}{} running={} ready=[{}]{}",
        w.id,
        w.spec.name,
        w.state.name(),
        if w.paused { " (paused)" } else { "" },
        w.running,
        ready.join(" "),
        w.finished_ms
            .map_or(String::new(), |t| format!(" finished={t}")),
    )
    .unwrap();
    for (spec, run) in w.spec.steps.iter().zip(&w.steps) {
        let job = run.job_id.map_or(String::new(), |j| format!(" job {j}"));
        let skipped = if run.skipped_by_operator {
            " (by operator)"
        } else {
            ""
        };
        let error = run
            .error
            .as_ref()
            .map_or(String::new(), |e| format!(" error={e:?}"));
        writeln!(
            out,
            "  step {} {}{skipped}{job} runs={}{error}",
            spec.name,
            run.state.name(),
            run.runs
        )
        .unwrap();
        if let Some(c) = &run.compensation {
            let job = c.job_id.map_or(String::new(), |j| format!(" job {j}"));
            writeln!(out, "    compensation {}{job}", c.state.name()).unwrap();
        }
    }
}

fn dump_resources(m: &Machine, out: &mut String) {
    for r in m.resource_views(None) {
        let units = |v: &[(JobId, u32)]| -> String {
            let items: Vec<String> = v.iter().map(|(j, u)| format!("job {j} x{u}")).collect();
            items.join(", ")
        };
        let locks: Vec<String> = r
            .locks
            .iter()
            .map(|l| format!("token {} {} expires {}", l.token, l.owner, l.expires_ms))
            .collect();
        writeln!(
            out,
            "resource {} capacity={} used_by_jobs={} holders=[{}] locks=[{}] waiters=[{}]",
            r.name,
            r.capacity,
            r.used_by_jobs,
            units(&r.job_holders),
            locks.join(", "),
            units(&r.waiters)
        )
        .unwrap();
    }
}

fn dump_schedules(m: &Machine, out: &mut String) {
    for s in m.schedules() {
        let queued: Vec<String> = s.queued.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "schedule {} {} {:?} tz={}{} next={} queued=[{}] runs_started={}",
            s.id,
            s.spec.name,
            s.spec.expr,
            s.spec.tz,
            if s.paused { " (paused)" } else { "" },
            opt(s.next_fire_ms),
            queued.join(" "),
            s.runs_started
        )
        .unwrap();
        for r in &s.history {
            let manual = if r.manual { " manual" } else { "" };
            writeln!(
                out,
                "  tick {} at {}{manual} {:?}",
                r.tick_ms, r.at_ms, r.outcome
            )
            .unwrap();
        }
    }
}

fn dump_events(m: &Machine, out: &mut String) {
    for t in m.triggers() {
        let target = match &t.target {
            schedule::Target::Job(j) => format!("job in {}", j.queue),
            schedule::Target::Workflow(w) => format!("workflow {}", w.name),
        };
        writeln!(
            out,
            "trigger {} {} -> {target} fired={}",
            t.id, t.topic, t.fired
        )
        .unwrap();
    }
    for t in m.timers() {
        writeln!(
            out,
            "timer {} due {} {} key {:?} payload {:?}",
            t.id,
            t.due_ms,
            t.topic,
            t.dedup_key,
            String::from_utf8_lossy(&t.payload)
        )
        .unwrap();
    }
    writeln!(out, "next_due: {}", opt(m.next_due())).unwrap();
}

fn dump_control(m: &Machine, queue: &str, out: &mut String) {
    let Some(c) = m.queue_control(queue) else {
        writeln!(out, "control {queue}: none").unwrap();
        return;
    };
    let outcomes: String = c
        .outcomes
        .iter()
        .map(|ok| if *ok { '+' } else { '-' })
        .collect();
    let transitions: Vec<String> = c
        .transitions
        .iter()
        .map(|(t, s)| format!("{t}:{}", s.name()))
        .collect();
    writeln!(
        out,
        "control {queue}: {:?} tokens_micro={} breaker={:?} outcomes=[{outcomes}] probe={} transitions=[{}]",
        c.policy,
        c.tokens_micro,
        c.breaker,
        opt(c.probe),
        transitions.join(" ")
    )
    .unwrap();
}

/// Every script's output matches its golden file.
#[test]
fn golden_scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/machine/testscripts");
    let update = std::env::var_os("RAFTLINE_GOLDEN_UPDATE").is_some();
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "script"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no scripts in {}", dir.display());
    for script in scripts {
        let output = run_script(&std::fs::read_to_string(&script).unwrap());
        let golden = script.with_extension("golden");
        if update {
            std::fs::write(&golden, &output).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "{} missing: run with RAFTLINE_GOLDEN_UPDATE=1",
                golden.display()
            )
        });
        assert_eq!(
            output,
            expected,
            "{} differs from its golden file (RAFTLINE_GOLDEN_UPDATE=1 rewrites it)",
            script.display()
        );
    }
}
