//! Work started by time and by events: `raftline schedule ...` (cron), `raftline trigger ...`
//! (jobs or workflows started by events on a topic), `raftline event emit` and
//! `raftline timer ...` (events emitted when due). A schedule and a trigger run the same kind of
//! target: a shell job (`-- CMD`) or a workflow file.

use std::path::PathBuf;

use clap::Subcommand;

use super::connect::client;
use super::parse::{invalid, parse_duration, parse_time};
use super::table::{self, Table};
use super::view;
use super::workflow_file;
use crate::error::Result;
use crate::proto::pb;

/// What a schedule or trigger runs: a shell job (`-- CMD`) or a workflow file.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Queue of the job.
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// Attempts of the job (default 3).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Kill an attempt after this long (e.g. 10m).
    #[arg(long, allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Run this workflow file instead of a command.
    #[arg(long)]
    pub workflow: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// `raftline schedule create` options.
#[derive(Debug, clap::Args)]
pub struct ScheduleCreateArgs {
    /// Unique name.
    #[arg(long)]
    pub name: String,
    /// 5 fields, 6 with seconds first, or `@every 30s`.
    #[arg(long)]
    pub cron: String,
    /// IANA time zone.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// skip (default), latest, or all:N.
    #[arg(long, default_value = "skip")]
    pub catch_up: String,
    /// allow (default), skip or queue.
    #[arg(long, default_value = "allow")]
    pub overlap: String,
    /// No tick before this (ms since the epoch or RFC 3339).
    #[arg(long)]
    pub start: Option<String>,
    /// No tick after this (ms since the epoch or RFC 3339).
    #[arg(long)]
    pub end: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// What it runs.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `raftline schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Create a schedule: `--cron "0 */5 * * * *" --tz Europe/Berlin -- CMD...`.
    Create(Box<ScheduleCreateArgs>),
    /// Every schedule.
    List {
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// A schedule with its run history.
    Get {
        /// Name or id.
        schedule: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop ticking.
    Pause {
        /// Name or id.
        schedule: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Tick again from now.
    Resume {
        /// Name or id.
        schedule: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a run now.
    Trigger {
        /// Name or id.
        schedule: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule (its runs stay).
    Delete {
        /// Name or id.
        schedule: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run every tick of a past range that has not run.
    Backfill {
        /// Name or id.
        schedule: String,
        /// First instant (ms since the epoch or RFC 3339).
        #[arg(long)]
        from: String,
        /// Last instant (ms since the epoch or RFC 3339).
        #[arg(long)]
        to: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline event ...`
#[derive(Debug, Subcommand)]
pub enum EventCmd {
    /// Emit an event: starts the topic's triggers once per dedup key.
    Emit {
        /// Topic.
        topic: String,
        /// Deduplication key.
        #[arg(long)]
        dedup_key: String,
        /// Payload (JSON or any text).
        #[arg(long, default_value = "")]
        payload: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline timer ...`
#[derive(Debug, Subcommand)]
pub enum TimerCmd {
    /// Emit an event at a time (`--at`) or after a delay (`--in 30s`).
    Create {
        /// Topic of the event.
        #[arg(long)]
        topic: String,
        /// Dedup key of the event.
        #[arg(long)]
        dedup_key: String,
        /// When: ms since the epoch or RFC 3339.
        #[arg(long)]
        at: Option<String>,
        /// After this long (e.g. 30s, 2h).
        #[arg(long = "in")]
        after: Option<String>,
        /// Payload of the event.
        #[arg(long, default_value = "")]
        payload: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pending timers.
    List {
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending timer.
    Cancel {
        /// Timer id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline trigger ...`
#[derive(Debug, Subcommand)]
pub enum TriggerCmd {
    /// Start a job (or workflow) on every event of a topic (also job.succeeded, job.dead,
    /// workflow.failed, ...).
    Create {
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// What it runs.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Every trigger.
    List {
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// Remove a trigger.
    Delete {
        /// Trigger id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What a schedule or trigger runs, from its command-line options.
enum RunTarget {
    Job(Box<pb::SubmitRequest>),
    Workflow(pb::SubmitWorkflowRequest),
}

fn target(t: TargetArgs) -> Result<RunTarget> {
    if let Some(file) = t.workflow {
        if !t.argv.is_empty() {
            return Err(invalid(
                "workflow",
                "give a workflow file or a command, not both".into(),
            ));
        }
        let req = workflow_file::load(&file)?;
        workflow_file::check(&req)?;
        return Ok(RunTarget::Workflow(req));
    }
    if t.argv.is_empty() {
        return Err(invalid(
            "command",
            "give -- CMD ARGS... or --workflow FILE".into(),
        ));
    }
    super::parse::nonzero(
        "max_attempts",
        t.max_attempts,
        1,
        crate::machine::limits::MAX_ATTEMPTS_MAX,
    )?;
    let job = pb::SubmitRequest {
        queue: t.queue,
        kind: Some(pb::submit_request::Kind::Shell(pb::ShellCommand {
            argv: t.argv,
            ..Default::default()
        })),
        max_attempts: t.max_attempts.unwrap_or(0),
        timeout_ms: t
            .timeout
            .as_deref()
            .map(|d| parse_duration("timeout", d))
            .transpose()?,
        ..Default::default()
    };
    Ok(RunTarget::Job(Box::new(job)))
}

fn schedule_ref(text: &str) -> pb::ScheduleRef {
    match text.parse::<u64>() {
        Ok(id) => pb::ScheduleRef {
            id,
            ..Default::default()
        },
        Err(_) => pb::ScheduleRef {
            name: text.to_string(),
            ..Default::default()
        },
    }
}

fn print_schedule(s: &pb::ScheduleInfo, json: bool, history: bool) {
    if json {
        println!("{}", view::schedule_json(s));
        return;
    }
    schedule_table(std::slice::from_ref(s)).print();
    if history && !s.history.is_empty() {
        let mut t = Table::new(&["TICK", "RAN", "HOW", "OUTCOME", "STATE"]);
        for r in &s.history {
            let what = match r.outcome.as_str() {
                "job" => format!("job {}", r.job_id),
                "workflow" => format!("workflow {}", r.workflow_id),
                other => format!("{other} {}", r.reason),
            };
            let state = t.state(&r.state);
            t.row(vec![
                table::text(table::time(r.tick_ms)),
                table::text(table::time_opt(Some(r.at_ms))),
                table::text(if r.manual { "manual" } else { "cron" }),
                table::text(what),
                state,
            ]);
        }
        println!();
        t.print();
    }
}

/// Schedules as a table.
fn schedule_table(list: &[pb::ScheduleInfo]) -> Table {
    let mut t = Table::new(&[
        "ID", "NAME", "CRON", "TZ", "STATE", "NEXT", "RUNS", "CATCH-UP", "OVERLAP", "TARGET",
    ]);
    for s in list {
        let state = t.state(if s.paused { "paused" } else { "active" });
        t.row(vec![
            table::num(s.id),
            table::text(&s.name),
            table::text(&s.cron),
            table::text(&s.tz),
            state,
            table::text(table::time_opt(s.next_fire_ms)),
            table::num(s.runs_started),
            table::text(&s.catch_up),
            table::text(&s.overlap),
            table::text(&s.target),
        ]);
    }
    t
}

/// Runs `raftline schedule ...`.
pub async fn schedule(addr: &[String], command: ScheduleCmd) -> Result<()> {
    let client = client(addr)?;
    let control = |schedule: &str, op: &str, from_ms: u64, to_ms: u64| pb::ControlScheduleRequest {
        schedule: Some(schedule_ref(schedule)),
        op: op.to_string(),
        from_ms,
        to_ms,
    };
    let (req, label, json) = match command {
        ScheduleCmd::Create(args) => {
            let ScheduleCreateArgs {
                name,
                cron,
                tz,
                catch_up,
                overlap,
                start,
                end,
                json,
                target: t,
            } = *args;
            let target = match target(t)? {
                RunTarget::Job(j) => pb::create_schedule_request::Target::Job(*j),
                RunTarget::Workflow(w) => pb::create_schedule_request::Target::Workflow(w),
            };
            let req = pb::CreateScheduleRequest {
                name,
                cron,
                tz,
                start_ms: start
                    .as_deref()
                    .map(|t| parse_time("start", t))
                    .transpose()?,
                end_ms: end.as_deref().map(|t| parse_time("end", t)).transpose()?,
                target: Some(target),
                catch_up,
                overlap,
            };
            print_schedule(&client.create_schedule(req).await?, json, false);
            return Ok(());
        }
        ScheduleCmd::List { json } => {
            let list = client.schedules().await?;
            if json {
                view::print_array(list.iter().map(view::schedule_json).collect());
            } else {
                schedule_table(&list).print();
            }
            return Ok(());
        }
        ScheduleCmd::Get { schedule, json } => {
            let r = schedule_ref(&schedule);
            print_schedule(&client.schedule(r.id, &r.name).await?, json, true);
            return Ok(());
        }
        ScheduleCmd::Pause { schedule, json } => {
            (control(&schedule, "pause", 0, 0), "paused", json)
        }
        ScheduleCmd::Resume { schedule, json } => {
            (control(&schedule, "resume", 0, 0), "resumed", json)
        }
        ScheduleCmd::Trigger { schedule, json } => {
            (control(&schedule, "trigger", 0, 0), "triggered", json)
        }
        ScheduleCmd::Delete { schedule, json } => {
            (control(&schedule, "delete", 0, 0), "deleted", json)
        }
        ScheduleCmd::Backfill {
            schedule,
            from,
            to,
            json,
        } => (
            control(
                &schedule,
                "backfill",
                parse_time("from", &from)?,
                parse_time("to", &to)?,
            ),
            "backfilled",
            json,
        ),
    };
    let op = req.op.clone();
    let reply = client.control_schedule(req).await?;
    if json {
        let v = serde_json::json!({
            "id": reply.id, "op": op, "state": label, "started": reply.started,
        });
        println!("{v}");
    } else {
        println!(
            "schedule {}: {label}, {} runs started",
            reply.id, reply.started
        );
    }
    Ok(())
}

/// Runs `raftline event ...`.
pub async fn event(addr: &[String], command: EventCmd) -> Result<()> {
    let EventCmd::Emit {
        topic,
        dedup_key,
        payload,
        json,
    } = command;
    let r = client(addr)?
        .emit(&topic, &dedup_key, payload.into_bytes())
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "duplicate": r.duplicate, "jobs": r.jobs, "workflows": r.workflows,
                "failed": r.failed,
            })
        );
    } else if r.duplicate {
        println!("{topic}: duplicate of an earlier event with key {dedup_key}; nothing started");
    } else {
        println!(
            "{topic}: started jobs {:?} workflows {:?}",
            r.jobs, r.workflows
        );
    }
    Ok(())
}

/// A timer as JSON for the CLI (`created_ms` is null where the reply leaves it out: 0).
fn timer_json(t: &pb::TimerInfo) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "due_ms": t.due_ms, "topic": t.topic, "dedup_key": t.dedup_key,
        "created_ms": (t.created_ms != 0).then_some(t.created_ms),
    })
}

/// A trigger as JSON for the CLI.
fn trigger_json(t: &pb::TriggerInfo) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "topic": t.topic, "target": t.target, "fired": t.fired,
        "created_ms": (t.created_ms != 0).then_some(t.created_ms),
    })
}

/// Runs `raftline timer ...`.
pub async fn timer(addr: &[String], command: TimerCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        TimerCmd::Create {
            topic,
            dedup_key,
            at,
            after,
            payload,
            json,
        } => {
            let (due_ms, delay_ms) = match (at, after) {
                (Some(at), None) => (Some(parse_time("at", &at)?), 0),
                (None, Some(d)) => (None, parse_duration("in", &d)?),
                _ => return Err(invalid("at", "give exactly one of --at or --in".into())),
            };
            let t = client
                .create_timer(pb::CreateTimerRequest {
                    due_ms,
                    delay_ms,
                    topic,
                    dedup_key,
                    payload: payload.into_bytes(),
                })
                .await?;
            if json {
                println!("{}", timer_json(&t));
            } else {
                println!(
                    "timer {}: emits {} at {}",
                    t.id,
                    t.topic,
                    table::time(t.due_ms)
                );
            }
        }
        TimerCmd::List { json } => {
            let timers = client.timers().await?;
            if json {
                view::print_array(timers.iter().map(timer_json).collect());
            } else {
                let mut out = Table::new(&["ID", "DUE", "TOPIC", "KEY", "CREATED"]);
                for t in &timers {
                    out.row(vec![
                        table::num(t.id),
                        table::text(table::time(t.due_ms)),
                        table::text(&t.topic),
                        table::text(&t.dedup_key),
                        table::text(table::time_opt(Some(t.created_ms))),
                    ]);
                }
                out.print();
            }
        }
        TimerCmd::Cancel { id, json } => {
            client.cancel_timer(id).await?;
            if json {
                println!("{}", serde_json::json!({ "id": id, "state": "cancelled" }));
            } else {
                println!("timer {id}: cancelled");
            }
        }
    }
    Ok(())
}

/// Runs `raftline trigger ...`.
pub async fn trigger(addr: &[String], command: TriggerCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        TriggerCmd::Create {
            topic,
            json,
            target: t,
        } => {
            let target = match target(t)? {
                RunTarget::Job(j) => pb::create_trigger_request::Target::Job(*j),
                RunTarget::Workflow(w) => pb::create_trigger_request::Target::Workflow(w),
            };
            let t = client
                .create_trigger(pb::CreateTriggerRequest {
                    topic,
                    target: Some(target),
                })
                .await?;
            if json {
                println!("{}", trigger_json(&t));
            } else {
                println!("trigger {} on {}: {}", t.id, t.topic, t.target);
            }
        }
        TriggerCmd::List { json } => {
            let triggers = client.triggers().await?;
            if json {
                view::print_array(triggers.iter().map(trigger_json).collect());
            } else {
                let mut out = Table::new(&["ID", "TOPIC", "FIRED", "CREATED", "TARGET"]);
                for t in &triggers {
                    out.row(vec![
                        table::num(t.id),
                        table::text(&t.topic),
                        table::num(t.fired),
                        table::text(table::time_opt(Some(t.created_ms))),
                        table::text(&t.target),
                    ]);
                }
                out.print();
            }
        }
        TriggerCmd::Delete { id, json } => {
            client.delete_trigger(id).await?;
            if json {
                println!("{}", serde_json::json!({ "id": id, "state": "deleted" }));
            } else {
                println!("trigger {id}: deleted");
            }
        }
    }
    Ok(())
}
