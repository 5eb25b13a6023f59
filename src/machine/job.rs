//! Jobs: what a client submits (`JobSpec`) and what the state machine keeps (`Job`).

use serde::{Deserialize, Serialize};

use super::command::Rejection;
use super::limits;

/// Cluster-assigned job id: a sequence number assigned in log order, so it is the same on
/// every replica and increases with submission order.
pub type JobId = u64;

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// A process started by a node's worker: argv[0] is the program.
    Shell {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// An opaque payload for an external worker that leases jobs over gRPC.
    External {
        /// Bytes handed to the worker as is.
        payload: Vec<u8>,
    },
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Queue name, `[A-Za-z0-9_.-]{1,128}`.
    pub queue: String,
    /// 1..=10, 10 most urgent.
    pub priority: u32,
    /// What to run.
    pub kind: JobKind,
}

/// Where a job is in its lifecycle. Only `Ready` exists until the lifecycle issue adds the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting in its queue's ready index to be leased.
    Ready,
}

impl JobState {
    /// Lower-case name used in the API and CLI.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
        }
    }
}

/// A job held by the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Cluster-assigned id.
    pub id: JobId,
    /// The submitted definition.
    pub spec: JobSpec,
    /// State-machine time of the submit, ms since the Unix epoch.
    pub created_ms: u64,
    /// Lifecycle state.
    pub state: JobState,
}

fn invalid(field: &str, message: impl Into<String>) -> Rejection {
    Rejection::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Checks a queue name: `[A-Za-z0-9_.-]{1,128}`.
pub fn validate_queue_name(field: &str, queue: &str) -> Result<(), Rejection> {
    if queue.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if queue.len() > limits::QUEUE_NAME_BYTES_MAX {
        return Err(invalid(
            field,
            format!(
                "is {} bytes, the limit is {}",
                queue.len(),
                limits::QUEUE_NAME_BYTES_MAX
            ),
        ));
    }
    if let Some(c) = queue
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(
            field,
            format!("has the character {c:?}; allowed are A-Z a-z 0-9 _ . -"),
        ));
    }
    Ok(())
}

impl JobSpec {
    /// Checks every field against its rule and limit. Run by the server before proposing and
    /// again by apply, so a bad spec can never enter the state even if a check is skipped.
    pub fn validate(&self) -> Result<(), Rejection> {
        validate_queue_name("queue", &self.queue)?;
        if !(limits::PRIORITY_MIN..=limits::PRIORITY_MAX).contains(&self.priority) {
            return Err(invalid(
                "priority",
                format!(
                    "is {}, must be {}..={}",
                    self.priority,
                    limits::PRIORITY_MIN,
                    limits::PRIORITY_MAX
                ),
            ));
        }
        match &self.kind {
            JobKind::Shell { argv } => {
                if argv.is_empty() {
                    return Err(invalid("shell.argv", "must name a program (argv is empty)"));
                }
                if argv[0].is_empty() {
                    return Err(invalid("shell.argv[0]", "program name must not be empty"));
                }
                if argv.len() > limits::ARGV_ITEMS_MAX {
                    return Err(invalid(
                        "shell.argv",
                        format!(
                            "has {} items, the limit is {}",
                            argv.len(),
                            limits::ARGV_ITEMS_MAX
                        ),
                    ));
                }
                let bytes: usize = argv.iter().map(String::len).sum();
                if bytes > limits::ARGV_BYTES_MAX {
                    return Err(invalid(
                        "shell.argv",
                        format!(
                            "is {bytes} bytes in total, the limit is {}",
                            limits::ARGV_BYTES_MAX
                        ),
                    ));
                }
                if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
                    return Err(invalid(&format!("shell.argv[{i}]"), "contains a NUL byte"));
                }
            }
            JobKind::External { payload } => {
                if payload.len() > limits::PAYLOAD_BYTES_MAX {
                    return Err(invalid(
                        "payload",
                        format!(
                            "is {} bytes, the limit is {}",
                            payload.len(),
                            limits::PAYLOAD_BYTES_MAX
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(queue: &str, argv: &[&str]) -> JobSpec {
        JobSpec {
            queue: queue.into(),
            priority: limits::PRIORITY_DEFAULT,
            kind: JobKind::Shell {
                argv: argv.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn field_of(r: Result<(), Rejection>) -> String {
        match r {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// Each rule rejects with the field it is about, and a good spec passes.
    #[test]
    fn validate_names_the_field() {
        assert_eq!(shell("q-1.a_b", &["echo", "hi"]).validate(), Ok(()));
        assert_eq!(field_of(shell("", &["echo"]).validate()), "queue");
        assert_eq!(field_of(shell("a b", &["echo"]).validate()), "queue");
        assert_eq!(
            field_of(shell(&"q".repeat(129), &["echo"]).validate()),
            "queue"
        );
        assert_eq!(shell(&"q".repeat(128), &["echo"]).validate(), Ok(()));
        assert_eq!(field_of(shell("q", &[]).validate()), "shell.argv");
        assert_eq!(field_of(shell("q", &[""]).validate()), "shell.argv[0]");
        let big = "x".repeat(limits::ARGV_BYTES_MAX);
        assert_eq!(
            field_of(shell("q", &["echo", &big]).validate()),
            "shell.argv"
        );
        let mut p = shell("q", &["echo"]);
        p.priority = 11;
        assert_eq!(field_of(p.validate()), "priority");
        p.priority = 0;
        assert_eq!(field_of(p.validate()), "priority");
        let ext = JobSpec {
            queue: "q".into(),
            priority: 5,
            kind: JobKind::External {
                payload: vec![0; limits::PAYLOAD_BYTES_MAX + 1],
            },
        };
        assert_eq!(field_of(ext.validate()), "payload");
    }
}
