"""Errors raised by the raftline client."""

from __future__ import annotations


class RaftlineError(Exception):
    """A call the cluster refused, or that no node answered before the deadline.

    Attributes:
        http_status: the HTTP status (0 when no node answered at all).
        status: the gRPC status name, e.g. ``INVALID_ARGUMENT``, ``NOT_FOUND``,
            ``FAILED_PRECONDITION``, ``UNAVAILABLE``.
        message: what is wrong (starts with the field when one is at fault).
        field: the field at fault (e.g. ``jobs[2].priority``) or ``None``.
    """

    def __init__(self, http_status: int, status: str, message: str, field: str | None = None):
        self.http_status = http_status
        self.status = status
        self.message = message
        self.field = field
        super().__init__(f"{status} ({http_status}): {message}")

    def __reduce__(self):
        return (type(self), (self.http_status, self.status, self.message, self.field))


class InvalidArgument(RaftlineError):
    """400 INVALID_ARGUMENT: a field is wrong (see ``field``)."""


class FailedPrecondition(RaftlineError):
    """400 FAILED_PRECONDITION: a stale fencing token or a job in the wrong state."""


class Unauthenticated(RaftlineError):
    """401: no token, or an unknown, expired or revoked one."""


class PermissionDenied(RaftlineError):
    """403: the token's role or queue patterns don't allow the call."""


class NotFound(RaftlineError):
    """404: no such job (or queue, workflow, ...)."""


class ResourceExhausted(RaftlineError):
    """429: a limit was reached (rate limit, long-poll slots, ...)."""


class Unavailable(RaftlineError):
    """503, a connection error or a timeout on every node until the failover deadline."""


_BY_STATUS = {
    "INVALID_ARGUMENT": InvalidArgument,
    "FAILED_PRECONDITION": FailedPrecondition,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "UNAVAILABLE": Unavailable,
}

# CompletionResult.error_code is the gRPC name ("FAILED_PRECONDITION"); servers before the
# webhooks release sent the tonic code's Debug name ("FailedPrecondition"): accept both.
_CAMEL = {
    "InvalidArgument": "INVALID_ARGUMENT",
    "FailedPrecondition": "FAILED_PRECONDITION",
    "Unauthenticated": "UNAUTHENTICATED",
    "PermissionDenied": "PERMISSION_DENIED",
    "NotFound": "NOT_FOUND",
    "ResourceExhausted": "RESOURCE_EXHAUSTED",
    "Unavailable": "UNAVAILABLE",
    "Internal": "INTERNAL",
    "Aborted": "ABORTED",
    "AlreadyExists": "ALREADY_EXISTS",
    "Unknown": "UNKNOWN",
}


def status_name(code: str) -> str:
    """A gRPC status name in SCREAMING_CASE, from either spelling."""
    return _CAMEL.get(code, code)


def make_error(http_status: int, status: str, message: str, field: str | None = None) -> RaftlineError:
    status = status_name(status)
    cls = _BY_STATUS.get(status, RaftlineError)
    return cls(http_status, status, message, field)


class LeaseLost(Exception):
    """Raised inside a handler (by ``job.checkpoint``) when the worker no longer holds the job's
    lease: it expired, the job was cancelled, or another worker leased it. The worker abandons
    the job without completing it."""


class PermanentError(Exception):
    """Raise from a handler to fail the attempt as ``permanent``: the job goes to dead letters
    without further retries."""

    def __init__(self, message: str = "", exit_code: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code
