//! The crate's one error type, and its one mapping to `tonic::Status` (and back, for clients).

use crate::machine::Rejection;

/// A raftline error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A request field is malformed: nothing was written.
    #[error("invalid argument: {field}: {message}")]
    InvalidArgument {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The call does not apply to the current state (a stale fencing token, a finished job).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A limit is reached (backpressure): retry later.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// No leader or quorum within the bound. `leader` is a hint when one is known.
    #[error("unavailable: {message}")]
    Unavailable {
        /// What happened, and whether the write may still commit.
        message: String,
        /// Last known leader.
        leader: Option<u64>,
    },
    /// No valid credentials: no token, an unknown, revoked or expired one.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The credentials don't allow the call (role or queue).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A configuration or start-up problem a user must fix.
    #[error("{0}")]
    Config(String),
    /// Any other failure (I/O, a peer's unexpected answer).
    #[error("{0}")]
    Internal(String),
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Unavailable`] without a leader hint.
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::Unavailable {
            message: message.into(),
            leader: None,
        }
    }

    /// Puts `prefix` before the field an invalid-argument error names (`jobs[3].` + `queue`),
    /// so an error from a nested part of a request names its place in the whole.
    pub fn within(self, prefix: &str) -> Error {
        match self {
            Error::InvalidArgument { field, message } => Error::InvalidArgument {
                field: format!("{prefix}{field}"),
                message,
            },
            other => other,
        }
    }

    /// Exit code for the CLI: 2 for input a user must correct, 3 for missing or insufficient
    /// credentials, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidArgument { .. } | Error::Config(_) => 2,
            Error::Unauthenticated(_) | Error::PermissionDenied(_) => 3,
            _ => 1,
        }
    }
}

impl From<Rejection> for Error {
    fn from(r: Rejection) -> Error {
        match r {
            Rejection::Invalid { field, message } => Error::InvalidArgument { field, message },
            Rejection::Exhausted { message } => Error::ResourceExhausted(message),
            Rejection::NotFound { job_id } => Error::NotFound(format!("job {job_id}")),
            Rejection::Missing { what } => Error::NotFound(what),
            Rejection::Precondition { message } => Error::FailedPrecondition(message),
        }
    }
}

/// A config file a user must fix.
impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Error {
        Error::Config(e.0)
    }
}

/// An encode or decode failure of our own data: a bug or a damaged file, not the caller's input.
impl From<crate::machine::codec::CodecError> for Error {
    fn from(e: crate::machine::codec::CodecError) -> Error {
        Error::Internal(e.to_string())
    }
}

/// Whether a failed call's request provably never left this process, so trying it at another
/// node cannot apply it twice: its connection could not be established (refused, no route,
/// DNS, the connect timeout), which tonic reports as a [`tonic::ConnectError`] in the status's
/// source chain. Anything else (a reset after the request went out, an HTTP/2 error, a status
/// a node sent) may come after the node received it. A typed check, not a match on the
/// message: "connection reset" contains "connect" too. Used by the client's retries and by a
/// follower forwarding a write to the leader; tested in `client/retry.rs`.
pub fn not_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

const LEADER_HINT: &str = "raftline-leader";

/// Set on the UNAVAILABLE a node that is not yet a member answers with: it did nothing, so
/// any call may go to another node.
const NOT_MEMBER: &str = "raftline-not-member";

/// The refusal of a node that waits to be added to a cluster (`raftline node --join`).
pub fn not_member_status(id: u64) -> tonic::Status {
    let mut status = tonic::Status::unavailable(format!(
        "node {id} is not a member of a cluster yet (it waits for `raftline cluster add \
         --id {id}`); ask a member"
    ));
    status
        .metadata_mut()
        .insert(NOT_MEMBER, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// Whether `status` is [`not_member_status`]: nothing was done.
pub fn not_member(status: &tonic::Status) -> bool {
    status.metadata().get(NOT_MEMBER).is_some()
}

/// `message` cut to [`STATUS_MESSAGE_BYTES_MAX`](crate::machine::limits::STATUS_MESSAGE_BYTES_MAX)
/// bytes at a character boundary, saying so when cut: what a status may carry.
pub fn bounded(mut message: String) -> String {
    let max = crate::machine::limits::STATUS_MESSAGE_BYTES_MAX;
    if message.len() > max {
        let total = message.len();
        let mut end = max - 64;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(&format!("... (cut from {total} bytes)"));
    }
    message
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        match e {
            Error::InvalidArgument { field, message } => {
                tonic::Status::invalid_argument(bounded(format!("{field}: {message}")))
            }
            Error::NotFound(m) => tonic::Status::not_found(bounded(m)),
            Error::FailedPrecondition(m) => tonic::Status::failed_precondition(bounded(m)),
            Error::ResourceExhausted(m) => tonic::Status::resource_exhausted(bounded(m)),
            Error::Unavailable { message, leader } => {
                let mut status = tonic::Status::unavailable(bounded(message));
                if let Some(id) = leader {
                    if let Ok(v) = id.to_string().parse() {
                        status.metadata_mut().insert(LEADER_HINT, v);
                    }
                }
                status
            }
            Error::Unauthenticated(m) => tonic::Status::unauthenticated(bounded(m)),
            Error::PermissionDenied(m) => tonic::Status::permission_denied(bounded(m)),
            Error::Config(m) => tonic::Status::failed_precondition(bounded(m)),
            Error::Internal(m) => tonic::Status::internal(bounded(m)),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        let message = s.message().to_string();
        match s.code() {
            tonic::Code::InvalidArgument => {
                let (field, message) = match message.split_once(": ") {
                    Some((f, m)) => (f.to_string(), m.to_string()),
                    None => (String::new(), message),
                };
                Error::InvalidArgument { field, message }
            }
            tonic::Code::NotFound => Error::NotFound(message),
            // tonic's refusal of a message over the size limit, on either side.
            tonic::Code::OutOfRange if message.contains("message length too large") => {
                Error::InvalidArgument {
                    field: "request".into(),
                    message: format!(
                        "is over the API message limit (API_MESSAGE_BYTES_MAX): {message}"
                    ),
                }
            }
            tonic::Code::FailedPrecondition => Error::FailedPrecondition(message),
            tonic::Code::ResourceExhausted => Error::ResourceExhausted(message),
            tonic::Code::Unauthenticated => Error::Unauthenticated(message),
            tonic::Code::PermissionDenied => Error::PermissionDenied(message),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Error::Unavailable {
                leader: s
                    .metadata()
                    .get(LEADER_HINT)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                message: if message.is_empty() {
                    format!("{:?}", s.code())
                } else {
                    message
                },
            },
            code => Error::Internal(format!("{code:?}: {message}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors survive the trip through a gRPC status, with the field and the leader hint.
    #[test]
    fn error_status_round_trip() {
        let cases = [
            Error::InvalidArgument {
                field: "queue".into(),
                message: "must not be empty".into(),
            },
            Error::NotFound("job 7".into()),
            Error::FailedPrecondition("stale token".into()),
            Error::ResourceExhausted("full".into()),
            Error::Unavailable {
                message: "no leader".into(),
                leader: Some(3),
            },
        ];
        for e in cases {
            let back: Error = tonic::Status::from(e.clone()).into();
            assert_eq!(back, e);
        }
        assert_eq!(Error::Config("x".into()).exit_code(), 2);
        assert_eq!(Error::unavailable("x").exit_code(), 1);
    }
}
