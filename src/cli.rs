//! The command line: one binary for nodes, the local launcher and the client commands.
//!
//! Exit codes: 0 success; 2 usage or invalid input (bad flag, INVALID_ARGUMENT, bad config);
//! 1 any other failure (cluster unavailable, not found, I/O).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::proto::{self, pb};

/// raftline: a clustered job executor with embedded Raft storage.
#[derive(Debug, Parser)]
#[command(name = "raftline", version, about)]
pub struct Cli {
    /// API addresses of one or more nodes, comma-separated (default: every api_addr in
    /// ./cluster.toml).
    #[arg(long, global = true, value_delimiter = ',')]
    pub addr: Vec<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run one node of the cluster.
    Node {
        /// Cluster config file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// This node's id (a `[[node]]` id in the config).
        #[arg(long)]
        id: u64,
    },
    /// Start every node of the config on this machine, as child processes; Ctrl-C stops them.
    Up {
        /// Cluster config file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
    /// Cluster-wide commands.
    Cluster {
        /// Subcommand.
        #[command(subcommand)]
        command: ClusterCmd,
    },
    /// Submit a shell job: `raftline submit --queue Q [options] -- CMD ARGS...`.
    Submit(Box<SubmitArgs>),
    /// Job commands.
    Job {
        /// Subcommand.
        #[command(subcommand)]
        command: JobCmd,
    },
    /// List jobs.
    Jobs {
        /// Subcommand.
        #[command(subcommand)]
        command: JobsCmd,
    },
    /// Queue commands.
    Queue {
        /// Subcommand.
        #[command(subcommand)]
        command: QueueCmd,
    },
    /// Dead letters.
    Dlq {
        /// Subcommand.
        #[command(subcommand)]
        command: DlqCmd,
    },
    /// Resources: named capacities jobs need and locks hold.
    Resource {
        /// Subcommand.
        #[command(subcommand)]
        command: ResourceCmd,
    },
    /// Lock service over resources, with fencing tokens.
    Lock {
        /// Subcommand.
        #[command(subcommand)]
        command: LockCmd,
    },
    /// Cron schedules (exactly one run per tick).
    Schedule {
        /// Subcommand.
        #[command(subcommand)]
        command: ScheduleCmd,
    },
    /// Events.
    Event {
        /// Subcommand.
        #[command(subcommand)]
        command: EventCmd,
    },
    /// Durable timers that emit an event when due.
    Timer {
        /// Subcommand.
        #[command(subcommand)]
        command: TimerCmd,
    },
    /// Event triggers: jobs started by events on a topic.
    Trigger {
        /// Subcommand.
        #[command(subcommand)]
        command: TriggerCmd,
    },
    /// Workflows: DAGs of steps from a TOML or JSON file (see examples/).
    Dag {
        /// Subcommand.
        #[command(subcommand)]
        command: DagCmd,
    },
    /// Run an external worker: lease jobs over the API and run them. Shell jobs run their own
    /// argv; external jobs run CMD with their payload on stdin.
    Worker {
        /// Queues to serve (comma-separated); every queue when omitted.
        #[arg(long, value_delimiter = ',')]
        queue: Vec<String>,
        /// Capabilities this worker offers (comma-separated).
        #[arg(long, value_delimiter = ',')]
        capabilities: Vec<String>,
        /// Most jobs run at once.
        #[arg(long, default_value_t = 4)]
        concurrency: u32,
        /// Worker id (default: worker-<host>-<pid>).
        #[arg(long)]
        worker_id: Option<String>,
        /// Handler for external jobs: receives the payload on stdin.
        #[arg(last = true, value_name = "CMD")]
        handler: Vec<String>,
    },
}

/// `raftline submit` options.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Queue name, [A-Za-z0-9_.-]{1,128}.
    #[arg(long)]
    pub queue: String,
    /// Priority 1..=10, 10 most urgent (default 5).
    #[arg(long)]
    pub priority: Option<u32>,
    /// Start after this long (e.g. 30s, 5m, 1h, 250ms).
    #[arg(long, allow_hyphen_values = true)]
    pub delay: Option<String>,
    /// Start at this time, in ms since the Unix epoch.
    #[arg(long)]
    pub run_at: Option<u64>,
    /// Attempts before dead letters (default 3).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Kill an attempt after this long (e.g. 10m).
    #[arg(long, allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Lease ttl (default 30s).
    #[arg(long, allow_hyphen_values = true)]
    pub lease_ttl: Option<String>,
    /// A repeat within the window returns the first job's id.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// A tag (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Capabilities a worker must offer (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub requires: Vec<String>,
    /// Exit codes that go straight to dead letters (comma-separated).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub permanent_exit_codes: Vec<i32>,
    /// SLA: flag the job if unfinished this long after submit (e.g. 1h).
    #[arg(long, allow_hyphen_values = true)]
    pub deadline: Option<String>,
    /// Environment variable K=V for the job (repeatable).
    #[arg(long)]
    pub env: Vec<String>,
    /// A resource the job needs while it runs, NAME or NAME:UNITS (repeatable).
    #[arg(long)]
    pub resource: Vec<String>,
    /// Working directory of the job.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Print `{"id": N, "duplicate": bool}`.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// New parameters for a retry or requeue.
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Job id.
    pub id: u64,
    /// New priority.
    #[arg(long)]
    pub priority: Option<u32>,
    /// New attempt budget.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Environment variable K=V to set (repeatable).
    #[arg(long)]
    pub env: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// New command and arguments.
    #[arg(last = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// `raftline dag ...`
#[derive(Debug, Subcommand)]
pub enum DagCmd {
    /// Check a workflow file offline, as the server would: shape, names, limits, jobs.
    Validate {
        /// Workflow file (.toml or .json).
        file: PathBuf,
    },
    /// Start a workflow from a file; prints its id.
    Submit {
        /// Workflow file (.toml or .json).
        file: PathBuf,
        /// Wait until the workflow ends, then print it (exit 1 unless it succeeded).
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A workflow with its steps, timings and critical path.
    Get {
        /// Workflow id.
        id: u64,
        /// Serve from the node's local state (may be behind).
        #[arg(long)]
        stale: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A workflow as a timeline (text), Graphviz DOT or a Mermaid flowchart.
    Show {
        /// Workflow id.
        id: u64,
        /// text | dot | mermaid
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// List workflows.
    List {
        /// Only this state: running | compensating | succeeded | failed | cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Ids above this.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (default 100).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a workflow: steps not ended are cancelled, running step jobs killed.
    Cancel {
        /// Workflow id.
        id: u64,
    },
    /// Start no new steps until resumed (running steps finish).
    Pause {
        /// Workflow id.
        id: u64,
    },
    /// Resume a paused workflow.
    Resume {
        /// Workflow id.
        id: u64,
    },
    /// Run a failed or cancelled step again, re-opening the steps it blocked.
    Retry {
        /// Workflow id.
        id: u64,
        /// Step name.
        step: String,
    },
    /// Skip a step not started (or failed): dependents treat it as succeeded.
    Skip {
        /// Workflow id.
        id: u64,
        /// Step name.
        step: String,
    },
}

/// `raftline cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every node's state, the leader and the term.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline job ...`
#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Show one job: state, attempts, output tails.
    Get {
        /// Job id.
        id: u64,
        /// Read this node's local state without a Raft round (may be behind).
        #[arg(long)]
        stale: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job; a running one is killed.
    Cancel {
        /// Job id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a scheduled, dead or cancelled job again now, optionally with new parameters.
    Retry(RetryArgs),
}

/// `raftline jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// List jobs by id.
    List {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this state (scheduled, ready, leased, succeeded, dead, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// At most this many (default 100, at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only ids above this (for paging).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Read this node's local state.
        #[arg(long)]
        stale: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Stop leasing from a queue (running jobs finish).
    Pause {
        /// Queue.
        queue: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume leasing from a queue.
    Resume {
        /// Queue.
        queue: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A queue's state and counts.
    Get {
        /// Queue.
        queue: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every queue.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a queue's limits; flags not given keep their value, `off` removes one.
    Set {
        /// Queue.
        queue: String,
        /// Rate limit: N/s, N/min, N/h or N/d (e.g. 100/min), or off.
        #[arg(long)]
        rate: Option<String>,
        /// Most jobs of the queue leased at once, or off.
        #[arg(long)]
        concurrency: Option<String>,
        /// Circuit breaker THRESHOLD%/WINDOW/COOLDOWN (e.g. 50%/10/30s), or off.
        #[arg(long)]
        breaker: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

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
        /// Print JSON lines.
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
    },
    /// Tick again from now.
    Resume {
        /// Name or id.
        schedule: String,
    },
    /// Start a run now.
    Trigger {
        /// Name or id.
        schedule: String,
    },
    /// Remove a schedule (its runs stay).
    Delete {
        /// Name or id.
        schedule: String,
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
    },
    /// Pending timers.
    List,
    /// Cancel a pending timer.
    Cancel {
        /// Timer id.
        id: u64,
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
        /// What it runs.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Every trigger.
    List,
    /// Remove a trigger.
    Delete {
        /// Trigger id.
        id: u64,
    },
}

/// `raftline resource ...`
#[derive(Debug, Subcommand)]
pub enum ResourceCmd {
    /// Create a resource or change its capacity (1 = exclusive).
    Set {
        /// Resource name.
        name: String,
        /// Units.
        #[arg(long)]
        capacity: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every resource with its holders (jobs and locks) and waiting jobs.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One resource.
    Get {
        /// Resource name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `raftline lock ...`
#[derive(Debug, Subcommand)]
pub enum LockCmd {
    /// Take one unit of a resource; prints the fencing token and expiry.
    Acquire {
        /// Resource name.
        name: String,
        /// Who holds it.
        #[arg(long)]
        owner: String,
        /// Time to live (e.g. 30s).
        #[arg(long, default_value = "30s")]
        ttl: String,
        /// Wait up to this long for a free unit (e.g. 10s).
        #[arg(long)]
        wait: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Extend a lock.
    Renew {
        /// Resource name.
        name: String,
        /// Fencing token of the grant.
        #[arg(long)]
        token: u64,
        /// New time to live from now.
        #[arg(long, default_value = "30s")]
        ttl: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a lock back.
    Release {
        /// Resource name.
        name: String,
        /// Fencing token of the grant.
        #[arg(long)]
        token: u64,
    },
}

/// `raftline dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// Dead jobs.
    List {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a dead job again with a fresh attempt budget, optionally with new parameters.
    Requeue(RetryArgs),
    /// Remove dead jobs.
    Purge {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Node { config, id } => {
            let config = Config::load(&config).map_err(|e| Error::Config(e.0))?;
            config.node(id).map_err(|e| Error::Config(e.0))?;
            crate::node::run(config, id, shutdown_signal()).await
        }
        Cmd::Up { config } => crate::up::run(&config).await,
        Cmd::Cluster {
            command: ClusterCmd::Status { json },
        } => cluster_status(&cli.addr, json).await,
        Cmd::Submit(args) => submit(&cli.addr, *args).await,
        Cmd::Job { command } => job(&cli.addr, command).await,
        Cmd::Jobs {
            command:
                JobsCmd::List {
                    queue,
                    state,
                    limit,
                    after,
                    stale,
                    json,
                },
        } => {
            let req = pb::ListJobsRequest {
                queue: queue.unwrap_or_default(),
                state: state.unwrap_or_default(),
                after_id: after,
                limit,
                stale,
            };
            print_jobs(&client(&cli.addr)?.list_jobs(req).await?, json);
            Ok(())
        }
        Cmd::Queue { command } => queue(&cli.addr, command).await,
        Cmd::Dlq { command } => dlq(&cli.addr, command).await,
        Cmd::Dag { command } => dag(&cli.addr, command).await,
        Cmd::Resource { command } => resource(&cli.addr, command).await,
        Cmd::Schedule { command } => schedule(&cli.addr, command).await,
        Cmd::Event { command } => event(&cli.addr, command).await,
        Cmd::Trigger { command } => trigger(&cli.addr, command).await,
        Cmd::Timer { command } => timer(&cli.addr, command).await,
        Cmd::Lock { command } => lock(&cli.addr, command).await,
        Cmd::Worker {
            queue,
            capabilities,
            concurrency,
            worker_id,
            handler,
        } => {
            let worker_id = worker_id.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "host".into());
                format!("worker-{host}-{}", std::process::id())
            });
            let backend = std::sync::Arc::new(crate::node::executor::RemoteBackend {
                client: client(&cli.addr)?,
                worker_id,
                queues: queue,
                capabilities,
            });
            let pool = crate::node::executor::PoolConfig {
                min: 1,
                max: concurrency.clamp(1, 256),
                handler: (!handler.is_empty()).then_some(handler),
            };
            crate::node::executor::run(backend, pool, shutdown_signal()).await;
            Ok(())
        }
    }
}

async fn dag(addr: &[String], command: DagCmd) -> Result<()> {
    use crate::dag;
    let control = |id: u64, op: &'static str, step: String| async move {
        let state = client(addr)?.control_workflow(id, op, &step).await?;
        println!("workflow {id}: {state}");
        Ok(())
    };
    match command {
        DagCmd::Validate { file } => {
            let req = dag::load(&file)?;
            dag::check(&req)?;
            let edges: usize = req.steps.iter().map(|s| s.depends_on.len()).sum();
            println!(
                "{}: valid workflow {:?}, {} steps, {edges} dependencies",
                file.display(),
                req.name,
                req.steps.len()
            );
            Ok(())
        }
        DagCmd::Submit { file, wait, json } => {
            let req = dag::load(&file)?;
            dag::check(&req)?;
            let client = client(addr)?;
            let id = client.submit_workflow(req).await?;
            if !wait {
                if json {
                    println!("{}", serde_json::json!({ "id": id }));
                } else {
                    println!("{id}");
                }
                return Ok(());
            }
            eprintln!("workflow {id} submitted; waiting for it to end");
            let w = loop {
                let w = client.workflow(id, false).await?;
                if matches!(w.state.as_str(), "succeeded" | "failed" | "cancelled") {
                    break w;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            if json {
                println!("{}", dag::json(&w));
            } else {
                print!("{}", dag::text(&w));
            }
            if w.state == "succeeded" {
                Ok(())
            } else {
                Err(Error::FailedPrecondition(format!(
                    "workflow {id} ended {}",
                    w.state
                )))
            }
        }
        DagCmd::Get { id, stale, json } => {
            let w = client(addr)?.workflow(id, stale).await?;
            if json {
                println!("{}", dag::json(&w));
            } else {
                print!("{}", dag::text(&w));
            }
            Ok(())
        }
        DagCmd::Show { id, format } => {
            let render: fn(&pb::Workflow) -> String = match format.as_str() {
                "text" => dag::text,
                "dot" => dag::dot,
                "mermaid" => dag::mermaid,
                other => {
                    return Err(invalid(
                        "format",
                        format!("{other:?} is not one of text, dot, mermaid"),
                    ))
                }
            };
            let w = client(addr)?.workflow(id, false).await?;
            print!("{}", render(&w));
            Ok(())
        }
        DagCmd::List {
            state,
            after,
            limit,
            json,
        } => {
            let req = pb::ListWorkflowsRequest {
                state: state.unwrap_or_default(),
                after_id: after,
                limit,
                stale: false,
            };
            let list = client(addr)?.list_workflows(req).await?;
            if !json {
                println!(
                    "{:>6}  {:24} {:13} {:>8} {:>9}",
                    "ID", "NAME", "STATE", "RUNNING", "CRIT.PATH"
                );
            }
            for w in &list {
                if json {
                    println!("{}", dag::json(w));
                } else {
                    let paused = if w.paused { " (paused)" } else { "" };
                    println!(
                        "{:>6}  {:24} {:13} {:>8} {:>8.1}s{paused}",
                        w.id,
                        w.name,
                        w.state,
                        w.running,
                        w.critical_path_ms as f64 / 1000.0
                    );
                }
            }
            Ok(())
        }
        DagCmd::Cancel { id } => control(id, "cancel", String::new()).await,
        DagCmd::Pause { id } => control(id, "pause", String::new()).await,
        DagCmd::Resume { id } => control(id, "resume", String::new()).await,
        DagCmd::Retry { id, step } => control(id, "retry", step).await,
        DagCmd::Skip { id, step } => control(id, "skip", step).await,
    }
}

fn invalid(field: &str, message: String) -> Error {
    Error::InvalidArgument {
        field: field.into(),
        message,
    }
}

/// Parses a duration such as `250ms`, `30s`, `5m`, `2h` or `1d` into ms.
pub fn parse_duration(field: &str, text: &str) -> Result<u64> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(invalid(field, format!("{text:?} is negative")));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(invalid(
                field,
                format!("{text:?} is not a duration (a number and ms, s, m, h or d, e.g. 30s)"),
            ))
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| invalid(field, format!("{text:?} is not a duration (e.g. 30s)")))?;
    n.checked_mul(unit_ms)
        .ok_or_else(|| invalid(field, format!("{text:?} is too long")))
}

fn parse_env(field: &str, pairs: &[String]) -> Result<std::collections::HashMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(invalid(field, format!("{p:?} is not K=V"))),
        })
        .collect()
}

async fn submit(addr: &[String], a: SubmitArgs) -> Result<()> {
    if a.priority == Some(0) {
        return Err(invalid("priority", "is 0, must be 1..=10".into()));
    }
    if a.max_attempts == Some(0) {
        return Err(invalid("max_attempts", "is 0, must be 1..=100".into()));
    }
    let now = crate::raft::wall_clock_ms();
    let deadline_ms = match &a.deadline {
        Some(d) => Some(now.saturating_add(parse_duration("deadline", d)?)),
        None => None,
    };
    let timeout_ms = a
        .timeout
        .as_deref()
        .map(|t| parse_duration("timeout", t))
        .transpose()?;
    if timeout_ms == Some(0) {
        return Err(invalid("timeout", "must be more than 0".into()));
    }
    let req = pb::SubmitRequest {
        queue: a.queue,
        priority: a.priority.unwrap_or(0),
        kind: Some(pb::submit_request::Kind::Shell(pb::ShellCommand {
            argv: a.argv,
            env: parse_env("env", &a.env)?,
            cwd: a.cwd.unwrap_or_default(),
        })),
        delay_ms: a
            .delay
            .as_deref()
            .map(|d| parse_duration("delay", d))
            .transpose()?
            .unwrap_or(0),
        run_at_ms: a.run_at,
        max_attempts: a.max_attempts.unwrap_or(0),
        backoff: None,
        timeout_ms,
        lease_ttl_ms: a
            .lease_ttl
            .as_deref()
            .map(|t| parse_duration("lease_ttl", t))
            .transpose()?
            .unwrap_or(0),
        idempotency_key: a.idempotency_key.unwrap_or_default(),
        tags: a.tag,
        required_capabilities: a.requires,
        permanent_exit_codes: a.permanent_exit_codes,
        deadline_ms,
        resources: a.resource,
    };
    if req.lease_ttl_ms != 0 && req.lease_ttl_ms < crate::machine::limits::LEASE_TTL_MS_MIN {
        return Err(invalid(
            "lease_ttl",
            format!(
                "must be at least {} ms",
                crate::machine::limits::LEASE_TTL_MS_MIN
            ),
        ));
    }
    let client = client(addr)?;
    let reply = client.submit_full(req).await?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "id": reply.id, "duplicate": reply.duplicate })
        );
    } else {
        println!("{}", reply.id);
    }
    Ok(())
}

fn retry_request(a: &RetryArgs) -> Result<pb::RetryJobRequest> {
    if a.priority == Some(0) {
        return Err(invalid("priority", "is 0, must be 1..=10".into()));
    }
    Ok(pb::RetryJobRequest {
        id: a.id,
        argv: a.argv.clone(),
        env: parse_env("env", &a.env)?,
        priority: a.priority,
        max_attempts: a.max_attempts,
    })
}

fn print_state(id: u64, state: &str, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "id": id, "state": state }));
    } else {
        println!("job {id}: {state}");
    }
}

async fn job(addr: &[String], command: JobCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        JobCmd::Get { id, stale, json } => {
            let job = client.job(id, stale).await?;
            if json {
                println!("{}", proto::job_json(&job));
            } else {
                print_job(&job);
            }
        }
        JobCmd::Cancel { id, json } => print_state(id, &client.cancel(id).await?, json),
        JobCmd::Retry(a) => {
            let state = client.retry(retry_request(&a)?).await?;
            print_state(a.id, &state, a.json);
        }
    }
    Ok(())
}

fn print_job(job: &pb::Job) {
    let what = match &job.kind {
        Some(pb::job::Kind::Shell(s)) => s.argv.join(" "),
        Some(pb::job::Kind::Payload(p)) => format!("external payload, {} bytes", p.len()),
        None => String::new(),
    };
    println!(
        "job {}  queue {}  priority {}  {}",
        job.id, job.queue, job.priority, job.state
    );
    println!("  run: {what}");
    println!(
        "  attempts: {} of {} used ({} in all)",
        job.attempts_used, job.max_attempts, job.attempts_total
    );
    if !job.error.is_empty() {
        println!("  error: {}", job.error);
    }
    for a in &job.attempts {
        let node = a.node.map_or(String::new(), |n| format!(" node {n}"));
        let exit = a.exit_code.map_or(String::new(), |c| format!(" exit {c}"));
        let class = if a.error_class.is_empty() {
            String::new()
        } else {
            format!(" ({})", a.error_class)
        };
        println!(
            "  attempt {}: {}{class}{exit} by {}{node}",
            a.number, a.result, a.worker
        );
        for line in a
            .output_tail
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("    | {line}");
        }
    }
}

fn print_jobs(jobs: &[pb::Job], json: bool) {
    if json {
        let list: Vec<_> = jobs.iter().map(proto::job_json).collect();
        println!("{}", serde_json::Value::Array(list));
        return;
    }
    for j in jobs {
        let what = match &j.kind {
            Some(pb::job::Kind::Shell(s)) => s.argv.join(" "),
            _ => "(external)".into(),
        };
        println!(
            "{:>8}  {:<16} {:<10} p{:<2} attempts {}/{}  {what}",
            j.id, j.queue, j.state, j.priority, j.attempts_used, j.max_attempts
        );
    }
}

/// Parses `N/s`, `N/min`, `N/h`, `N/d` or `off` into (count, period ms).
fn parse_rate(text: &str) -> Result<(u32, u64)> {
    if text == "off" {
        return Ok((0, 0));
    }
    let bad = || {
        invalid(
            "rate",
            format!("{text:?} is not N/s, N/min, N/h or N/d (e.g. 100/min), or off"),
        )
    };
    let (count, per) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per_ms = match per.trim() {
        "s" | "sec" | "second" => 1_000,
        "m" | "min" | "minute" => 60_000,
        "h" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(invalid(
            "rate",
            "count is 0; use off to remove the limit".into(),
        ));
    }
    Ok((count, per_ms))
}

/// Parses `THRESHOLD%/WINDOW/COOLDOWN` (e.g. `50%/10/30s`) or `off`.
fn parse_breaker(text: &str) -> Result<(u32, u32, u64)> {
    if text == "off" {
        return Ok((0, 0, 0));
    }
    let bad = || {
        invalid(
            "breaker",
            format!("{text:?} is not THRESHOLD%/WINDOW/COOLDOWN (e.g. 50%/10/30s), or off"),
        )
    };
    let parts: Vec<&str> = text.split('/').collect();
    let [pct, window, cooldown] = parts.as_slice() else {
        return Err(bad());
    };
    let pct: u32 = pct
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| bad())?;
    let window: u32 = window.trim().parse().map_err(|_| bad())?;
    let cooldown = parse_duration("breaker", cooldown)?;
    if pct == 0 {
        return Err(invalid(
            "breaker",
            "threshold is 0%; use off to remove it".into(),
        ));
    }
    Ok((pct, window, cooldown))
}

/// A time as ms since the epoch, from digits or RFC 3339.
fn parse_time(field: &str, text: &str) -> Result<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
        .ok_or_else(|| {
            invalid(
                field,
                format!("{text:?} is not ms since the epoch or RFC 3339 (2026-11-23T10:00:00Z)"),
            )
        })
}

/// A schedule or trigger's target: the workflow file, or the shell job.
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
        let req = crate::dag::load(&file)?;
        crate::dag::check(&req)?;
        return Ok(RunTarget::Workflow(req));
    }
    if t.argv.is_empty() {
        return Err(invalid(
            "command",
            "give -- CMD ARGS... or --workflow FILE".into(),
        ));
    }
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
        println!("{}", proto::schedule_json(s));
        return;
    }
    let next = s.next_fire_ms.map_or("-".to_string(), |t| t.to_string());
    println!(
        "{:>4}  {:<20} {:<18} {:<16} next {next}{}  runs {}  catch-up {}  overlap {}  {}",
        s.id,
        s.name,
        s.cron,
        s.tz,
        if s.paused { " (paused)" } else { "" },
        s.runs_started,
        s.catch_up,
        s.overlap,
        s.target
    );
    if history {
        for r in &s.history {
            let what = match r.outcome.as_str() {
                "job" => format!("job {} {}", r.job_id, r.state),
                "workflow" => format!("workflow {} {}", r.workflow_id, r.state),
                other => format!("{other} {}", r.reason),
            };
            let manual = if r.manual { " (manual)" } else { "" };
            println!("      tick {}{manual}: {what}", r.tick_ms);
        }
    }
}

async fn schedule(addr: &[String], command: ScheduleCmd) -> Result<()> {
    let client = client(addr)?;
    let control = |schedule: &str, op: &str, from_ms: u64, to_ms: u64| pb::ControlScheduleRequest {
        schedule: Some(schedule_ref(schedule)),
        op: op.to_string(),
        from_ms,
        to_ms,
    };
    let (req, label) = match command {
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
            for s in client.schedules().await? {
                print_schedule(&s, json, false);
            }
            return Ok(());
        }
        ScheduleCmd::Get { schedule, json } => {
            let r = schedule_ref(&schedule);
            print_schedule(&client.schedule(r.id, &r.name).await?, json, true);
            return Ok(());
        }
        ScheduleCmd::Pause { schedule } => (control(&schedule, "pause", 0, 0), "paused"),
        ScheduleCmd::Resume { schedule } => (control(&schedule, "resume", 0, 0), "resumed"),
        ScheduleCmd::Trigger { schedule } => (control(&schedule, "trigger", 0, 0), "triggered"),
        ScheduleCmd::Delete { schedule } => (control(&schedule, "delete", 0, 0), "deleted"),
        ScheduleCmd::Backfill { schedule, from, to } => (
            control(
                &schedule,
                "backfill",
                parse_time("from", &from)?,
                parse_time("to", &to)?,
            ),
            "backfilled",
        ),
    };
    let reply = client.control_schedule(req).await?;
    println!(
        "schedule {}: {label}, {} runs started",
        reply.id, reply.started
    );
    Ok(())
}

async fn event(addr: &[String], command: EventCmd) -> Result<()> {
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

async fn timer(addr: &[String], command: TimerCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        TimerCmd::Create {
            topic,
            dedup_key,
            at,
            after,
            payload,
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
            println!("timer {}: emits {} at {}", t.id, t.topic, t.due_ms);
        }
        TimerCmd::List => {
            for t in client.timers().await? {
                println!(
                    "{:>6}  due {}  {}  key {}",
                    t.id, t.due_ms, t.topic, t.dedup_key
                );
            }
        }
        TimerCmd::Cancel { id } => {
            client.cancel_timer(id).await?;
            println!("timer {id}: cancelled");
        }
    }
    Ok(())
}

async fn trigger(addr: &[String], command: TriggerCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        TriggerCmd::Create { topic, target: t } => {
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
            println!("trigger {} on {}: {}", t.id, t.topic, t.target);
        }
        TriggerCmd::List => {
            for t in client.triggers().await? {
                println!(
                    "{:>4}  {:<24} fired {:>5}  {}",
                    t.id, t.topic, t.fired, t.target
                );
            }
        }
        TriggerCmd::Delete { id } => {
            client.delete_trigger(id).await?;
            println!("trigger {id}: deleted");
        }
    }
    Ok(())
}

async fn resource(addr: &[String], command: ResourceCmd) -> Result<()> {
    let client = client(addr)?;
    let show = |list: &[pb::ResourceInfo], json: bool| {
        for r in list {
            if json {
                println!("{}", proto::resource_json(r));
                continue;
            }
            let locks: Vec<String> = r
                .locks
                .iter()
                .map(|l| format!("{} (token {}, expires {})", l.owner, l.token, l.expires_ms))
                .collect();
            let jobs: Vec<String> = r.job_holders.iter().map(|u| u.job_id.to_string()).collect();
            let waiters: Vec<String> = r.waiters.iter().map(|u| u.job_id.to_string()).collect();
            println!(
                "{:<24} capacity {:>4}  held {:>4}  jobs [{}]  locks [{}]  waiting [{}]",
                r.name,
                r.capacity,
                r.used_by_jobs as usize + r.locks.len(),
                jobs.join(","),
                locks.join(", "),
                waiters.join(",")
            );
        }
    };
    match command {
        ResourceCmd::Set {
            name,
            capacity,
            json,
        } => show(&[client.set_resource(&name, capacity).await?], json),
        ResourceCmd::List { json } => show(&client.resources("", false).await?, json),
        ResourceCmd::Get { name, json } => show(&client.resources(&name, false).await?, json),
    }
    Ok(())
}

async fn lock(addr: &[String], command: LockCmd) -> Result<()> {
    let client = client(addr)?;
    let print = |g: &pb::LockGrant, json: bool, name: &str| {
        if json {
            println!(
                "{}",
                serde_json::json!({ "token": g.token, "expires_ms": g.expires_ms })
            );
        } else {
            println!("{name}: token {} expires {}", g.token, g.expires_ms);
        }
    };
    match command {
        LockCmd::Acquire {
            name,
            owner,
            ttl,
            wait,
            json,
        } => {
            let req = pb::AcquireLockRequest {
                resource: name.clone(),
                owner,
                ttl_ms: parse_duration("ttl", &ttl)?,
                wait_ms: wait
                    .as_deref()
                    .map(|w| parse_duration("wait", w))
                    .transpose()?
                    .unwrap_or(0),
            };
            print(&client.acquire_lock(req).await?, json, &name);
        }
        LockCmd::Renew {
            name,
            token,
            ttl,
            json,
        } => {
            let ttl = parse_duration("ttl", &ttl)?;
            print(&client.renew_lock(&name, token, ttl).await?, json, &name);
        }
        LockCmd::Release { name, token } => {
            client.release_lock(&name, token).await?;
            println!("{name}: released token {token}");
        }
    }
    Ok(())
}

fn print_queue(q: &pb::QueueInfo, json: bool) {
    if json {
        println!("{}", proto::queue_json(q));
    } else {
        let mut limits = Vec::new();
        if q.rate_count > 0 {
            limits.push(format!("rate {}/{}ms", q.rate_count, q.rate_per_ms));
        }
        if q.concurrency > 0 {
            limits.push(format!("concurrency {}", q.concurrency));
        }
        if q.breaker_threshold_pct > 0 {
            limits.push(format!(
                "breaker {} ({}/{} failed, opens above {}%)",
                q.breaker_state, q.recent_failures, q.recent_outcomes, q.breaker_threshold_pct
            ));
        }
        if !limits.is_empty() {
            println!("{:<20} {}", q.queue, limits.join(", "));
        }
        println!(
            "{:<20} {:<7} scheduled {} ready {} leased {} succeeded {} dead {} cancelled {} \
             deadline_missed {}",
            q.queue,
            if q.paused { "paused" } else { "active" },
            q.scheduled,
            q.ready,
            q.leased,
            q.succeeded,
            q.dead,
            q.cancelled,
            q.deadline_missed
        );
    }
}

async fn queue(addr: &[String], command: QueueCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        QueueCmd::Pause { queue, json } => print_queue(&client.pause(&queue, true).await?, json),
        QueueCmd::Resume { queue, json } => print_queue(&client.pause(&queue, false).await?, json),
        QueueCmd::Get { queue, json } => print_queue(&client.queue(&queue, false).await?, json),
        QueueCmd::Set {
            queue,
            rate,
            concurrency,
            breaker,
            json,
        } => {
            let current = client.queue(&queue, false).await?;
            let mut req = pb::SetQueuePolicyRequest {
                queue: queue.clone(),
                rate_count: current.rate_count,
                rate_per_ms: current.rate_per_ms,
                concurrency: current.concurrency,
                breaker_threshold_pct: current.breaker_threshold_pct,
                breaker_window: current.breaker_window,
                breaker_cooldown_ms: current.breaker_cooldown_ms,
            };
            if let Some(rate) = rate {
                (req.rate_count, req.rate_per_ms) = parse_rate(&rate)?;
            }
            if let Some(c) = concurrency {
                req.concurrency = if c == "off" {
                    0
                } else {
                    c.parse().map_err(|_| {
                        invalid("concurrency", format!("{c:?} is not a number or off"))
                    })?
                };
                if req.concurrency == 0 && c != "off" {
                    return Err(invalid("concurrency", "is 0; use off to remove it".into()));
                }
            }
            if let Some(b) = breaker {
                (
                    req.breaker_threshold_pct,
                    req.breaker_window,
                    req.breaker_cooldown_ms,
                ) = parse_breaker(&b)?;
            }
            print_queue(&client.set_queue_policy(req).await?, json);
        }
        QueueCmd::List { json } => {
            let queues = client.queues(false).await?;
            if json {
                let list: Vec<_> = queues.iter().map(proto::queue_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for q in &queues {
                    print_queue(q, false);
                }
            }
        }
    }
    Ok(())
}

async fn dlq(addr: &[String], command: DlqCmd) -> Result<()> {
    let client = client(addr)?;
    match command {
        DlqCmd::List { queue, limit, json } => {
            let req = pb::ListJobsRequest {
                queue: queue.unwrap_or_default(),
                state: "dead".into(),
                after_id: 0,
                limit,
                stale: false,
            };
            print_jobs(&client.list_jobs(req).await?, json);
        }
        DlqCmd::Requeue(a) => {
            let job = client.job(a.id, false).await?;
            if job.state != "dead" {
                return Err(Error::FailedPrecondition(format!(
                    "job {} is {}, not in the dead-letter queue",
                    a.id, job.state
                )));
            }
            let state = client.retry(retry_request(&a)?).await?;
            print_state(a.id, &state, a.json);
        }
        DlqCmd::Purge { queue, json } => {
            let n = client.purge_dead(queue.as_deref()).await?;
            if json {
                println!("{}", serde_json::json!({ "purged": n }));
            } else {
                println!("purged {n} dead jobs");
            }
        }
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The API addresses to use: `--addr`, else every api_addr of ./cluster.toml, with node ids
/// when known.
fn targets(addr: &[String]) -> Result<Vec<(Option<u64>, String)>> {
    if !addr.is_empty() {
        return Ok(addr.iter().map(|a| (None, a.clone())).collect());
    }
    let path = Path::new("cluster.toml");
    if !path.exists() {
        return Err(Error::Config(
            "no --addr given and no ./cluster.toml to read node addresses from".into(),
        ));
    }
    let config = Config::load(path).map_err(|e| Error::Config(e.0))?;
    Ok(config
        .nodes
        .iter()
        .map(|n| (Some(n.id), n.api_addr.to_string()))
        .collect())
}

fn client(addr: &[String]) -> Result<Client> {
    let addrs: Vec<String> = targets(addr)?.into_iter().map(|(_, a)| a).collect();
    Client::new(&addrs)
}

async fn cluster_status(addr: &[String], json: bool) -> Result<()> {
    let targets = targets(addr)?;
    let addrs: Vec<&str> = targets.iter().map(|(_, a)| a.as_str()).collect();
    let client = Client::new(&addrs)?;
    let calls = (0..client.len()).map(|i| {
        let client = &client;
        async move { tokio::time::timeout(Duration::from_secs(2), client.node_status(i)).await }
    });
    let replies = futures::future::join_all(calls).await;
    let mut nodes = Vec::new();
    let mut best: Option<&pb::NodeStatusResponse> = None;
    for ((id, api_addr), reply) in targets.iter().zip(&replies) {
        match reply {
            Ok(Ok(s)) => {
                if best.is_none_or(|b| s.term > b.term || (s.term == b.term && s.leader.is_some()))
                {
                    best = Some(s);
                }
                nodes.push(serde_json::json!({
                    "id": s.id,
                    "api_addr": api_addr,
                    "state": s.state,
                    "last_applied": s.last_applied,
                    "term": s.term,
                    "leader": s.leader,
                }));
            }
            _ => nodes.push(serde_json::json!({
                "id": id,
                "api_addr": api_addr,
                "state": "unreachable",
                "last_applied": null,
            })),
        }
    }
    let leader = best.and_then(|b| b.leader);
    let term = best.map_or(0, |b| b.term);
    if json {
        let v = serde_json::json!({ "leader": leader, "term": term, "nodes": nodes });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "leader: {}  term: {term}",
            leader.map_or("none".to_string(), |l| l.to_string())
        );
        for n in &nodes {
            println!(
                "  node {:<4} {:<22} {:<12} last_applied {}",
                n["id"].to_string(),
                n["api_addr"].as_str().unwrap_or(""),
                n["state"].as_str().unwrap_or(""),
                n["last_applied"]
            );
        }
    }
    if replies.iter().all(|r| !matches!(r, Ok(Ok(_)))) {
        return Err(Error::unavailable(format!(
            "no node answered at {}",
            addrs.join(", ")
        )));
    }
    Ok(())
}
