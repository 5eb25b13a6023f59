//! The generated gRPC types, and every conversion between wire and domain types.

use crate::error::Error;
use crate::machine::{limits, Job, JobKind, JobSpec};

/// Generated from `proto/raftline/v1/*.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("raftline.v1");
}

/// Turns a submit request into a job spec; field checks happen in [`JobSpec::validate`].
pub fn job_spec(req: pb::SubmitRequest) -> Result<JobSpec, Error> {
    let kind = match req.kind {
        Some(pb::submit_request::Kind::Shell(shell)) => JobKind::Shell { argv: shell.argv },
        Some(pb::submit_request::Kind::Payload(payload)) => JobKind::External { payload },
        None => {
            return Err(Error::InvalidArgument {
                field: "kind".into(),
                message: "set either shell (argv) or payload".into(),
            })
        }
    };
    Ok(JobSpec {
        queue: req.queue,
        priority: if req.priority == 0 {
            limits::PRIORITY_DEFAULT
        } else {
            req.priority
        },
        kind,
    })
}

/// A job as sent to clients.
pub fn job(job: &Job) -> pb::Job {
    pb::Job {
        id: job.id,
        queue: job.spec.queue.clone(),
        priority: job.spec.priority,
        kind: Some(match &job.spec.kind {
            JobKind::Shell { argv } => {
                pb::job::Kind::Shell(pb::ShellCommand { argv: argv.clone() })
            }
            JobKind::External { payload } => pb::job::Kind::Payload(payload.clone()),
        }),
        created_ms: job.created_ms,
        state: job.state.name().to_string(),
    }
}

/// A job as JSON for the CLI.
pub fn job_json(job: &pb::Job) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": job.id,
        "queue": job.queue,
        "priority": job.priority,
        "created_ms": job.created_ms,
        "state": job.state,
    });
    match &job.kind {
        Some(pb::job::Kind::Shell(shell)) => v["argv"] = serde_json::json!(shell.argv),
        Some(pb::job::Kind::Payload(p)) => v["payload_bytes"] = serde_json::json!(p.len()),
        None => {}
    }
    v
}
