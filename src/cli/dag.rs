//! `raftline dag ...`: workflows from a file (see [`super::workflow_file`]), their views (see
//! [`super::workflow_view`]) and operator controls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;

use super::connect::client;
use super::page::pages;
use super::parse::invalid;
use super::table::{self, Table};
use super::workflow_file;
use super::workflow_view as view;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::proto::pb;

/// How often `dag submit --wait` reads the workflow to see whether it ended.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// `raftline dag ...`
#[derive(Debug, Subcommand)]
pub enum DagCmd {
    /// Check a workflow file offline, as the server would: shape, names, limits, jobs.
    Validate {
        /// Workflow file (.toml or .json).
        file: PathBuf,
        /// Print JSON: the workflow as parsed (name, policy, steps and their dependencies).
        #[arg(long)]
        json: bool,
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
        /// Print JSON: the workflow as `dag get --json` prints it, with the chosen format's
        /// rendering under "rendered".
        #[arg(long)]
        json: bool,
    },
    /// List workflows.
    List {
        /// Only this state: running | compensating | succeeded | failed | cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Ids above this.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (default 100); above the server's page size (1000) the list is
        /// read page by page.
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// Cancel a workflow: steps not ended are cancelled, running step jobs killed.
    Cancel {
        /// Workflow id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start no new steps until resumed (running steps finish).
    Pause {
        /// Workflow id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused workflow.
    Resume {
        /// Workflow id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a failed or cancelled step again, re-opening the steps it blocked.
    Retry {
        /// Workflow id.
        id: u64,
        /// Step name.
        step: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Skip a step not started (or failed): dependents treat it as succeeded.
    Skip {
        /// Workflow id.
        id: u64,
        /// Step name.
        step: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `raftline dag ...`.
pub async fn dag(addr: &[String], command: DagCmd) -> Result<()> {
    let control = |id: u64, op: &'static str, step: String, json: bool| async move {
        let state = client(addr)?.control_workflow(id, op, &step).await?;
        if json {
            let step = (!step.is_empty()).then_some(step);
            let v = serde_json::json!({ "id": id, "op": op, "step": step, "state": state });
            println!("{v}");
        } else {
            println!("workflow {id}: {}", super::color::state(&state));
        }
        Ok(())
    };
    match command {
        DagCmd::Validate { file, json } => {
            let req = workflow_file::load(&file)?;
            workflow_file::check(&req)?;
            let edges: usize = req.steps.iter().map(|s| s.depends_on.len()).sum();
            if json {
                let mut v = view::spec_json(&req);
                v["file"] = file.display().to_string().into();
                v["valid"] = true.into();
                println!("{v}");
                return Ok(());
            }
            println!(
                "{}: valid workflow {:?}, {} steps, {edges} dependencies",
                file.display(),
                req.name,
                req.steps.len()
            );
            Ok(())
        }
        DagCmd::Submit { file, wait, json } => submit(addr, &file, wait, json).await,
        DagCmd::Get { id, stale, json } => {
            let w = client(addr)?.workflow(id, stale).await?;
            if json {
                println!("{}", view::json(&w));
            } else {
                print!("{}", view::text(&w));
            }
            Ok(())
        }
        DagCmd::Show { id, format, json } => {
            let render: fn(&pb::Workflow) -> String = match format.as_str() {
                "text" => view::text,
                "dot" => view::dot,
                "mermaid" => view::mermaid,
                other => {
                    return Err(invalid(
                        "format",
                        format!("{other:?} is not one of text, dot, mermaid"),
                    ))
                }
            };
            let w = client(addr)?.workflow(id, false).await?;
            if json {
                let mut v = view::json(&w);
                let plain = if format == "text" {
                    view::text_plain
                } else {
                    render
                };
                v["rendered"] = plain(&w).into();
                v["format"] = format.into();
                println!("{v}");
            } else {
                print!("{}", render(&w));
            }
            Ok(())
        }
        DagCmd::List {
            state,
            after,
            limit,
            json,
        } => list(addr, state, after, limit, json).await,
        DagCmd::Cancel { id, json } => control(id, "cancel", String::new(), json).await,
        DagCmd::Pause { id, json } => control(id, "pause", String::new(), json).await,
        DagCmd::Resume { id, json } => control(id, "resume", String::new(), json).await,
        DagCmd::Retry { id, step, json } => control(id, "retry", step, json).await,
        DagCmd::Skip { id, step, json } => control(id, "skip", step, json).await,
    }
}

/// Runs `dag submit`: prints the id, or with `wait` the ended workflow (an error unless it
/// succeeded).
async fn submit(addr: &[String], file: &Path, wait: bool, json: bool) -> Result<()> {
    let req = workflow_file::load(file)?;
    workflow_file::check(&req)?;
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
    let w = wait_end(&client, id, json).await?;
    if json {
        println!("{}", view::json(&w));
    } else {
        print!("{}", view::text(&w));
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

/// Runs `dag list`: a table, or one JSON array.
/// Waits for workflow `id` to end, with a bar of its steps ended (see [`crate::progress`]).
async fn wait_end(client: &crate::client::Client, id: u64, json: bool) -> Result<pb::Workflow> {
    let progress = Progress::steps("steps", 0, json);
    progress.note(&format!("workflow {id} submitted; waiting for it to end"));
    loop {
        let w = match client.workflow(id, false).await {
            Ok(w) => w,
            Err(e) => {
                progress.clear();
                return Err(e);
            }
        };
        let ended = w
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.state.as_str(),
                    "succeeded" | "failed" | "skipped" | "cancelled"
                )
            })
            .count() as u64;
        if progress.total() != w.steps.len() as u64 {
            progress.set_total(w.steps.len() as u64);
        }
        progress.show(ended);
        if matches!(w.state.as_str(), "succeeded" | "failed" | "cancelled") {
            progress.finish();
            return Ok(w);
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

async fn list(
    addr: &[String],
    state: Option<String>,
    after: u64,
    limit: u32,
    json: bool,
) -> Result<()> {
    let client = client(addr)?;
    let req = pb::ListWorkflowsRequest {
        state: state.unwrap_or_default(),
        after_id: after,
        limit,
        stale: false,
    };
    let fetch = |after_id, limit| {
        let req = pb::ListWorkflowsRequest {
            after_id,
            limit,
            ..req.clone()
        };
        client.list_workflows(req)
    };
    if json {
        let mut out = super::view::JsonList::new(false);
        let read = pages(
            limit,
            after,
            fetch,
            |w| w.id,
            |list| {
                list.iter().for_each(|w| out.item(&view::json(w)));
            },
        )
        .await;
        if read.is_ok() || !out.is_empty() {
            out.end();
        }
        return read;
    }
    let mut t = Table::new(&["ID", "NAME", "STATE", "RUNNING", "CRIT.PATH", "CREATED"]);
    let read = pages(
        limit,
        after,
        fetch,
        |w| w.id,
        |list| {
            for w in list {
                let state = if w.paused {
                    t.state("paused")
                } else {
                    t.state(&w.state)
                };
                t.row(vec![
                    table::num(w.id),
                    table::text(&w.name),
                    state,
                    table::num(w.running),
                    table::num(table::duration(w.critical_path_ms)),
                    table::text(table::time(w.created_ms)),
                ]);
            }
        },
    )
    .await;
    // A call failing before any answer prints only its error.
    if read.is_ok() || !t.is_empty() {
        t.print();
    }
    read
}
