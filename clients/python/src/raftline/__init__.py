"""raftline: a Python client for raftline clusters (REST API, standard library only)."""

from .client import TERMINAL_STATES, Backoff, Client, SubmitResult
from .errors import (
    FailedPrecondition,
    InvalidArgument,
    LeaseLost,
    NotFound,
    PermanentError,
    PermissionDenied,
    RaftlineError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .worker import Job, Worker, WorkerStats

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Client",
    "FailedPrecondition",
    "InvalidArgument",
    "Job",
    "LeaseLost",
    "NotFound",
    "PermanentError",
    "PermissionDenied",
    "RaftlineError",
    "ResourceExhausted",
    "SubmitResult",
    "TERMINAL_STATES",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkerStats",
]
