//! JSON views of jobs, queues, resources and schedules for the CLI's `--json` output. They
//! belong to the command line, not to the wire: field names here are a promise to scripts
//! that read the output, separate from the protobuf names.

use crate::proto::pb;

/// `--json` and `--jsonl` of a list command that has both.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct ListFormat {
    /// Print JSON: one array.
    #[arg(long)]
    pub json: bool,
    /// Print JSON lines: one object per line, each whole as soon as it is printed.
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
}

impl ListFormat {
    /// Whether any JSON was asked for.
    pub fn any_json(self) -> bool {
        self.json || self.jsonl
    }
}

/// Prints the JSON of a list as its items come: ONE array (opened before the first item,
/// closed by [`JsonList::end`], so it is whole only once the command ends) or, for `--jsonl`,
/// one object per line.
pub struct JsonList {
    lines: bool,
    started: bool,
}

impl JsonList {
    /// A list printed as JSON lines when `lines`, else as one array.
    pub fn new(lines: bool) -> JsonList {
        JsonList {
            lines,
            started: false,
        }
    }

    /// Prints one item.
    pub fn item(&mut self, v: &serde_json::Value) {
        let open = match (self.lines, self.started) {
            (true, _) => "",
            (false, true) => ",\n",
            (false, false) => "[",
        };
        self.started = true;
        if self.lines {
            println!("{v}");
        } else {
            print!("{open}{v}");
        }
    }

    /// Whether nothing was printed yet.
    pub fn is_empty(&self) -> bool {
        !self.started
    }

    /// Ends the list (closes the array; an empty list is `[]`).
    pub fn end(self) {
        if self.lines {
            return;
        }
        let open = if self.started { "" } else { "[" };
        println!("{open}]");
    }
}

/// Prints a whole list as ONE JSON array.
pub fn print_array(items: Vec<serde_json::Value>) {
    println!("{}", serde_json::Value::Array(items));
}

/// A job as JSON for the CLI.
pub fn job_json(job: &pb::Job) -> serde_json::Value {
    let attempts: Vec<serde_json::Value> = job
        .attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "number": a.number,
                "token": a.token,
                "worker": a.worker,
                "node": a.node,
                "started_ms": a.started_ms,
                "ended_ms": a.ended_ms,
                "result": a.result,
                "error_class": a.error_class,
                "exit_code": a.exit_code,
                "error": a.error,
                "output_tail": a.output_tail,
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "id": job.id,
        "queue": job.queue,
        "state": job.state,
        "priority": job.priority,
        "attempts": attempts,
        "attempts_used": job.attempts_used,
        "attempts_total": job.attempts_total,
        "max_attempts": job.max_attempts,
        "created_ms": job.created_ms,
        "run_at_ms": job.run_at_ms,
        "finished_ms": job.finished_ms,
        "error": job.error,
        "tags": job.tags,
        "required_capabilities": job.required_capabilities,
        "permanent_exit_codes": job.permanent_exit_codes,
        "timeout_ms": job.timeout_ms,
        "lease_ttl_ms": job.lease_ttl_ms,
        "deadline_ms": job.deadline_ms,
        "deadline_missed": job.deadline_missed,
        "idempotency_key": job.idempotency_key,
        "lease_token": job.lease_token,
        "lease_worker": job.lease_worker,
        "submitted_by": (!job.submitted_by_token.is_empty()).then(|| serde_json::json!({
            "token_id": job.submitted_by_token,
            "token_name": job.submitted_by_name,
        })),
    });
    match &job.kind {
        Some(pb::job::Kind::Shell(shell)) => {
            v["argv"] = serde_json::json!(shell.argv);
            v["env"] = serde_json::json!(shell.env);
            v["cwd"] = serde_json::json!(shell.cwd);
        }
        Some(pb::job::Kind::Payload(p)) => v["payload_bytes"] = serde_json::json!(p.len()),
        None => {}
    }
    v
}

/// A queue as JSON for the CLI.
pub fn queue_json(q: &pb::QueueInfo) -> serde_json::Value {
    serde_json::json!({
        "queue": q.queue,
        "paused": q.paused,
        "counts": {
            "scheduled": q.scheduled,
            "ready": q.ready,
            "leased": q.leased,
            "succeeded": q.succeeded,
            "dead": q.dead,
            "cancelled": q.cancelled,
        },
        "deadline_missed": q.deadline_missed,
        "rate": (q.rate_count > 0).then(|| serde_json::json!({
            "count": q.rate_count, "per_ms": q.rate_per_ms,
        })),
        "concurrency": (q.concurrency > 0).then_some(q.concurrency),
        "breaker": (q.breaker_threshold_pct > 0).then(|| serde_json::json!({
            "threshold_pct": q.breaker_threshold_pct,
            "window": q.breaker_window,
            "cooldown_ms": q.breaker_cooldown_ms,
            "state": q.breaker_state,
            "open_until_ms": q.breaker_open_until_ms,
            "recent_failures": q.recent_failures,
            "recent_outcomes": q.recent_outcomes,
            "transitions": q.breaker_transitions.iter().map(|t| serde_json::json!({
                "at_ms": t.at_ms, "state": t.state,
            })).collect::<Vec<_>>(),
        })),
    })
}

/// A resource as JSON for the CLI.
pub fn resource_json(r: &pb::ResourceInfo) -> serde_json::Value {
    let uses = |list: &[pb::ResourceUse]| {
        list.iter()
            .map(|u| serde_json::json!({ "job_id": u.job_id, "units": u.units }))
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "name": r.name,
        "capacity": r.capacity,
        "used_by_jobs": r.used_by_jobs,
        "job_holders": uses(&r.job_holders),
        "locks": r.locks.iter().map(|l| serde_json::json!({
            "token": l.token, "owner": l.owner,
            "acquired_ms": l.acquired_ms, "expires_ms": l.expires_ms,
        })).collect::<Vec<_>>(),
        "waiters": uses(&r.waiters),
    })
}

/// A schedule as JSON for the CLI.
pub fn schedule_json(s: &pb::ScheduleInfo) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "name": s.name, "cron": s.cron, "tz": s.tz, "paused": s.paused,
        "next_fire_ms": s.next_fire_ms, "catch_up": s.catch_up, "overlap": s.overlap,
        "start_ms": s.start_ms, "end_ms": s.end_ms, "runs_started": s.runs_started,
        "created_ms": s.created_ms, "target": s.target,
        "history": s.history.iter().map(|r| serde_json::json!({
            "tick_ms": r.tick_ms, "at_ms": r.at_ms, "manual": r.manual, "outcome": r.outcome,
            "job_id": (r.job_id != 0).then_some(r.job_id),
            "workflow_id": (r.workflow_id != 0).then_some(r.workflow_id),
            "reason": r.reason, "state": r.state,
        })).collect::<Vec<_>>(),
    })
}
