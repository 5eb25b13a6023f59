//! The command line: one binary for nodes, the local launcher and the client commands.
//!
//! This file holds the top of the command tree ([`Cli`], [`Cmd`]) and [`run`], which hands
//! each command to its group's file: [`jobs`] (submit, job, jobs), [`watch`] (job wait, job
//! logs), [`queues`] (queue, dlq), [`dag`] (workflows, with [`workflow_file`] and
//! [`workflow_view`]), [`resources`] (resource, lock), [`schedules`] (schedule, trigger, event,
//! timer), [`cluster`], [`worker`], [`up`] and [`node`]. Below the groups sit the shared
//! pieces: [`connect`] (which nodes to talk to), [`parse`] (flag values), [`page`] (lists
//! longer than a server page), [`view`] (JSON output), [`table`] and [`color`] (output for
//! people) and [`signal`]. The groups use those and [`crate::client`] (and
//! [`crate::progress`] for bars); nothing below a group imports it, and the one group another
//! uses is [`jobs`] (dead letters are listed and requeued as jobs are; `job wait` prints as
//! `job get`).
//!
//! Every leaf command takes `--json`: a result printed as one JSON value, so scripts never
//! parse text: one object, or for a list ONE array (streamed element by element where the list
//! is read page by page, so it is complete only once the command ends). Lists worth reading as
//! a stream (`jobs list`, `jobs export`, `dlq list`, `job logs`) also take `--jsonl`: one
//! object per line, each line whole as soon as it is printed. Long-running commands that
//! report events as they happen (`worker`: an attempt ran; `up`: a node started) print JSON
//! lines with `--json`: there is no end to close an array at. Without either flag, lists are
//! tables ([`table`]) and states are coloured on a terminal ([`color`], `--color`,
//! `NO_COLOR`); errors stay one line on stderr either way.
//!
//! Exit codes: 0 success; 2 usage or invalid input (bad flag, INVALID_ARGUMENT, bad config);
//! 1 any other failure (cluster unavailable, not found, I/O).

pub mod cluster;
pub mod color;
pub mod connect;
pub mod dag;
pub mod jobs;
pub mod members;
pub mod node;
pub mod page;
pub mod parse;
pub mod queues;
pub mod resources;
pub mod schedules;
pub mod search;
pub mod signal;
pub mod snapshot;
pub mod table;
pub mod tokens;
pub mod up;
pub mod view;
pub mod watch;
pub mod webhooks;
pub mod worker;
pub mod workflow_file;
pub mod workflow_view;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Result;
use cluster::ClusterCmd;
use dag::DagCmd;
use jobs::{JobCmd, SubmitArgs};
use queues::{DlqCmd, QueueCmd};
use resources::{LockCmd, ResourceCmd};
use schedules::{EventCmd, ScheduleCmd, TimerCmd, TriggerCmd};
use search::JobsCmd;
use worker::WorkerArgs;

/// raftline: a clustered job executor with embedded Raft storage.
#[derive(Debug, Parser)]
#[command(name = "raftline", version, about)]
pub struct Cli {
    /// Log lines as text or JSON (one object per line), on stderr; RAFTLINE_LOG picks what
    /// is logged (e.g. `info,raftline::node=debug`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "RAFTLINE_LOG_FORMAT"
    )]
    pub log_format: crate::logging::LogFormat,
    /// API addresses of one or more nodes, comma-separated (default: RAFTLINE_ADDR, else every
    /// api_addr in ./cluster.toml).
    #[arg(long, global = true, value_delimiter = ',', env = "RAFTLINE_ADDR")]
    pub addr: Vec<String>,
    /// API token secret (default: RAFTLINE_TOKEN, --token-file, else the bootstrap token of a
    /// node whose data dir ./cluster.toml names).
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the API token (default: RAFTLINE_TOKEN_FILE).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate to check nodes against when they serve TLS (default: RAFTLINE_CA_FILE,
    /// else `[tls] ca_file` of ./cluster.toml).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Colour states and errors: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub color: color::ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run one node of the cluster.
    Node(node::NodeArgs),
    /// Start every node of the config on this machine, as child processes; Ctrl-C stops them.
    Up {
        /// Cluster config file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Backups: save a consistent snapshot, restore one into a new cluster.
    Snapshot {
        /// Subcommand.
        #[command(subcommand)]
        command: snapshot::SnapshotCmd,
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
    /// API tokens (admin): create, list, revoke.
    Token {
        /// Subcommand.
        #[command(subcommand)]
        command: tokens::TokenCmd,
    },
    /// Who wrote what (admin): the last accepted API writes with their tokens.
    Audit {
        /// Subcommand.
        #[command(subcommand)]
        command: tokens::AuditCmd,
    },
    /// Move pending work in from another job system: `raftline import redis --url URL
    /// --from list:KEY|stream:KEY[:GROUP]|bullmq:QUEUE[@PREFIX] --queue Q` (idempotent).
    Import {
        /// Subcommand.
        #[command(subcommand)]
        command: crate::import::ImportCmd,
    },
    /// Webhooks: events POSTed to a URL, signed, retried, logged.
    Webhook {
        /// Subcommand.
        #[command(subcommand)]
        command: webhooks::WebhookCmd,
    },
    /// TLS certificates for a cluster.
    Certs {
        /// Subcommand.
        #[command(subcommand)]
        command: tokens::CertsCmd,
    },
    /// Run an external worker: lease jobs over the API and run them. Shell jobs run their own
    /// argv; external jobs run CMD with their payload on stdin.
    Worker(WorkerArgs),
    /// Print the REST API's OpenAPI 3.1 document (what every node serves at /v1/openapi.json).
    Openapi {
        /// Print JSON (the document is JSON either way).
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let addr = &cli.addr;
    color::set(cli.color);
    connect::set_access(connect::AccessFlags {
        token: cli.token.clone(),
        token_file: cli.token_file.clone(),
        ca_file: cli.ca_file.clone(),
    });
    match cli.command {
        Cmd::Node(args) => node::run(args).await,
        Cmd::Up { config, json } => up::run(&config, json).await,
        Cmd::Cluster { command } => cluster::run(addr, command).await,
        Cmd::Snapshot { command } => snapshot::run(addr, command).await,
        Cmd::Submit(args) => jobs::submit(addr, *args).await,
        Cmd::Job { command } => jobs::job(addr, command).await,
        Cmd::Jobs { command } => search::jobs(addr, command).await,
        Cmd::Queue { command } => queues::queue(addr, command).await,
        Cmd::Dlq { command } => queues::dlq(addr, command).await,
        Cmd::Dag { command } => dag::dag(addr, command).await,
        Cmd::Resource { command } => resources::resource(addr, command).await,
        Cmd::Lock { command } => resources::lock(addr, command).await,
        Cmd::Schedule { command } => schedules::schedule(addr, command).await,
        Cmd::Event { command } => schedules::event(addr, command).await,
        Cmd::Trigger { command } => schedules::trigger(addr, command).await,
        Cmd::Timer { command } => schedules::timer(addr, command).await,
        Cmd::Worker(args) => worker::run(addr, args).await,
        Cmd::Token { command } => tokens::token(addr, command).await,
        Cmd::Certs { command } => tokens::certs(command),
        Cmd::Webhook { command } => webhooks::webhook(addr, command).await,
        Cmd::Import { command } => crate::import::run(&connect::client(addr)?, command).await,
        Cmd::Audit { command } => tokens::audit(addr, command).await,
        Cmd::Openapi { json: _ } => {
            print!("{}", crate::server::rest::openapi::text());
            Ok(())
        }
    }
}
