"""A threaded worker: leases external jobs, runs a handler for each, completes them."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import traceback
import uuid
from typing import Any, Callable, Sequence

from .client import Client, _completion, _lease_body
from .errors import LeaseLost, PermanentError, RaftlineError, Unavailable, status_name

log = logging.getLogger("raftline.worker")

OUTPUT_TAIL_MAX = 4096
ERROR_MAX = 2048


def default_worker_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "host"
    return f"py-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Job:
    """A leased job, as the handler sees it.

    Attributes: ``id``, ``queue``, ``payload`` (bytes), ``attempt`` (1 for the first run),
    ``token`` (the lease's fencing token), ``last_checkpoint`` (bytes stored by an earlier
    attempt or by :meth:`checkpoint`, else None), ``tags``, ``info`` (the whole ``Job`` dict
    the lease returned), ``lease_lost`` (a ``threading.Event`` set when the worker learns the
    lease is gone: the handler may stop early; its result is thrown away either way).
    """

    def __init__(self, worker: "Worker", leased: dict):
        info = leased.get("job") or {}
        self._worker = worker
        self.info = info
        self.id = int(info.get("id", 0))
        self.queue = info.get("queue", "")
        self.payload: bytes = info.get("payload", b"") or b""
        self.tags = list(info.get("tags") or [])
        self.attempt = int(leased.get("attempt") or 0)
        self.token = int(leased["token"])
        self.ttl_ms = int(leased.get("ttl_ms") or 0)
        self.expires_ms = int(leased.get("expires_ms") or 0)
        self.last_checkpoint: bytes | None = leased.get("checkpoint")
        self.lease_lost = threading.Event()
        self._completing = False  # the handler returned; its completion is being sent

    def checkpoint(self, data: bytes | str) -> None:
        """Stores progress; the next attempt of the job gets it as ``last_checkpoint``. Raises
        :class:`LeaseLost` when the lease is gone (the handler should return)."""
        if self.lease_lost.is_set():
            raise LeaseLost(f"job {self.id}: lease {self.token} lost")
        try:
            self._worker.client.checkpoint(self.id, self.token, data)
        except RaftlineError as e:
            if e.status in ("FAILED_PRECONDITION", "NOT_FOUND"):
                self.lease_lost.set()
                raise LeaseLost(f"job {self.id}: {e.message}") from e
            raise
        self.last_checkpoint = data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def __repr__(self) -> str:
        return f"Job(id={self.id}, queue={self.queue!r}, attempt={self.attempt})"


class WorkerStats:
    """Counters of a worker's life, for logs and tests."""

    def __init__(self):
        self._lock = threading.Lock()
        self.leased = 0
        self.succeeded = 0  # completions of success the cluster applied
        self.failed = 0  # failed attempts the cluster applied
        self.already_done = 0  # a retried completion the cluster had applied already
        self.lost = 0  # jobs abandoned: lease lost, cancelled, or completion refused
        self.released = 0  # leased and handed back (stopping, or orphan leases)
        self.errors = 0  # calls that failed (and were retried)

    def add(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"WorkerStats({self.as_dict()})"


Handler = Callable[[Job], Any]


class Worker:
    """Runs ``handler(job)`` for jobs leased from ``queues`` (every queue when empty).

    ``concurrency`` threads each lease one job at a time with a long-poll of ``poll_wait``
    seconds and complete it with ``CompleteAndLease`` (the completion and the next lease in one
    call). The handler returns ``None``, or ``str``/``bytes`` kept as the attempt's output tail;
    an exception fails the attempt (``transient``: the server retries it with backoff;
    :class:`PermanentError`: ``permanent``, straight to dead letters). While handlers run, a
    heartbeat every ttl/3 extends the leases; a job missing from the heartbeat's reply was
    cancelled or lost: ``job.lease_lost`` is set and its result is not reported.

    ``ttl``: lease ttl in seconds (the job's own, 30 s by default, when None). ``worker_id``:
    unique per process ([A-Za-z0-9_.-]{1,128}), generated when None. ``capabilities``: what
    this worker offers to jobs that require capabilities.
    """

    def __init__(
        self,
        client: Client,
        queues: Sequence[str] | str,
        handler: Handler,
        *,
        concurrency: int = 1,
        worker_id: str | None = None,
        capabilities: Sequence[str] = (),
        ttl: float | None = None,
        poll_wait: float = 5.0,
    ):
        if isinstance(queues, str):
            queues = [queues]
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.queues = list(queues)
        self.handler = handler
        self.concurrency = int(concurrency)
        self.worker_id = worker_id or default_worker_id()
        self.capabilities = list(capabilities)
        self.ttl = ttl
        self.poll_wait = float(poll_wait)
        self.stats = WorkerStats()
        self._stopping = threading.Event()
        self._hb_wake = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, Job] = {}  # job id -> job being run (or about to be)
        self._suspects: dict[int, int] = {}  # job id -> token held but unknown to us
        self._threads: list[threading.Thread] = []
        self._started = False

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> "Worker":
        if self._started:
            raise RuntimeError("worker already started")
        self._started = True
        for i in range(self.concurrency):
            t = threading.Thread(target=self._slot, name=f"raftline-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeats, name="raftline-heartbeat", daemon=True)
        hb.start()
        self._hb_thread = hb
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stops gracefully: no new leases; running handlers finish and their jobs complete;
        jobs leased but not started are released. Waits up to ``timeout`` seconds (None:
        until done; a long-poll in flight takes up to ``poll_wait``). Returns whether every
        thread ended."""
        self._stopping.set()
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        stop_at = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if stop_at is None else max(0.0, stop_at - time.monotonic()))
        done = not any(t.is_alive() for t in self._threads)
        if done:
            self._stopping.set()
            self._done.set()
            self._hb_wake.set()
            hb = getattr(self, "_hb_thread", None)
            if hb is not None:
                hb.join(None if stop_at is None else max(0.0, stop_at - time.monotonic()))
        return done

    def run(self) -> None:
        """Starts and blocks until :meth:`stop` is called (Ctrl-C stops gracefully)."""
        self.start()
        try:
            while not self.join(0.5):
                pass
        except KeyboardInterrupt:
            log.info("raftline worker %s: stopping", self.worker_id)
            self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def __enter__(self) -> "Worker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- one slot -----------------------------------------------------------------------------

    def _lease_req(self) -> dict:
        return _lease_body(self.worker_id, self.queues, 1, self.capabilities, self.ttl, self.poll_wait)

    def _slot(self) -> None:
        pending: tuple[Job, dict] | None = None  # a finished job and its completion
        pause = 0.05
        while True:
            stopping = self._stopping.is_set()
            if stopping and pending is None:
                return
            try:
                if pending is not None:
                    job, completion = pending
                    lease = self._lease_req() if not stopping else {"worker_id": self.worker_id, "max": 0}
                    r = self.client.complete_and_lease([completion], lease, wait=0 if stopping else self.poll_wait)
                    self._settle(job, completion, (r.get("completions") or [{}])[0])
                    pending = None
                    leased = r.get("jobs") or []
                else:
                    leased = self.client.lease(self.worker_id, self.queues, max=1, capabilities=self.capabilities,
                                               ttl=self.ttl, wait=self.poll_wait)
                pause = 0.05
            except RaftlineError as e:
                self.stats.add(errors=1)
                if pending is not None and not isinstance(e, Unavailable) and e.status != "RESOURCE_EXHAUSTED":
                    # The call was refused as a whole (not a node failure): the completion can't
                    # be sent as it is. Leave the job to its lease expiry.
                    log.error("raftline worker: completing job %s refused: %s", pending[0].id, e)
                    self._forget(pending[0])
                    self.stats.add(lost=1)
                    pending = None
                elif pending is not None and stopping:
                    log.error("raftline worker: completing job %s failed while stopping: %s", pending[0].id, e)
                    self._forget(pending[0])
                    pending = None
                else:
                    log.warning("raftline worker %s: %s", self.worker_id, e)
                self._stopping.wait(pause)
                pause = min(pause * 2, 2.0)
                continue
            except Exception:  # a bug, not a node failure: keep the slot alive
                self.stats.add(errors=1)
                log.exception("raftline worker: unexpected error")
                self._stopping.wait(pause)
                pause = min(pause * 2, 2.0)
                continue
            jobs = [Job(self, lj) for lj in leased]
            if jobs:
                self.stats.add(leased=len(jobs))
                with self._lock:
                    for j in jobs:
                        self._running[j.id] = j
                        self._suspects.pop(j.id, None)
                self._hb_wake.set()  # the heartbeat period may have shortened
            for idx, job in enumerate(jobs):
                if self._stopping.is_set():
                    # Leased but not started: hand back without using an attempt.
                    for j in jobs[idx:]:
                        self._release(j)
                    break
                completion = self._run(job)
                if completion is None:
                    self._forget(job)
                    continue
                job._completing = True
                if pending is not None:  # max=1, so only one; complete the older one alone
                    self._complete_alone(*pending)
                pending = (job, completion)

    def _run(self, job: Job) -> dict | None:
        """Runs the handler; the completion to send, or None when the job was lost."""
        try:
            result = self.handler(job)
        except LeaseLost as e:
            log.warning("raftline worker: job %s abandoned: %s", job.id, e)
            self.stats.add(lost=1)
            return None
        except PermanentError as e:
            if job.lease_lost.is_set():
                self.stats.add(lost=1)
                return None
            return _completion(job.id, job.token, False, "permanent", _tail(str(e) or type(e).__name__, ERROR_MAX),
                               exit_code=e.exit_code)
        except Exception as e:
            if job.lease_lost.is_set():
                self.stats.add(lost=1)
                return None
            tb = traceback.format_exc()
            return _completion(job.id, job.token, False, "transient", _tail(f"{type(e).__name__}: {e}", ERROR_MAX),
                               output_tail=_tail(tb, OUTPUT_TAIL_MAX))
        if job.lease_lost.is_set():
            log.warning("raftline worker: job %s finished after its lease was lost; not completed", job.id)
            self.stats.add(lost=1)
            return None
        out = ""
        if isinstance(result, bytes):
            out = result.decode("utf-8", "replace")
        elif isinstance(result, str):
            out = result
        return _completion(job.id, job.token, True, output_tail=_tail(out, OUTPUT_TAIL_MAX))

    def _complete_alone(self, job: Job, completion: dict) -> None:
        try:
            r = self.client.complete_and_lease([completion], {"worker_id": self.worker_id, "max": 0})
            self._settle(job, completion, (r.get("completions") or [{}])[0])
        except RaftlineError as e:
            log.error("raftline worker: completing job %s failed: %s", job.id, e)
            self._forget(job)

    def _settle(self, job: Job, completion: dict, result: dict) -> None:
        """Counts one completion's result. A refusal (stale token) after a retried call may
        mean our own earlier try was applied: the job's attempt of our token tells."""
        self._forget(job)
        if result.get("state"):
            self.stats.add(**({"succeeded": 1} if completion["success"] else {"failed": 1}))
            return
        code = status_name(result.get("error_code", ""))
        if code in ("FAILED_PRECONDITION", "NOT_FOUND"):
            verdict = self._resolve(job, completion)
            if verdict == "ours":
                self.stats.add(already_done=1)
                self.stats.add(**({"succeeded": 1} if completion["success"] else {"failed": 1}))
                return
            log.warning("raftline worker: job %s: completion refused (%s), someone else owns it now",
                        job.id, result.get("error"))
            self.stats.add(lost=1)
            return
        log.error("raftline worker: job %s: completion refused: %s %s", job.id, code, result.get("error"))
        self.stats.add(lost=1)

    def _resolve(self, job: Job, completion: dict) -> str:
        """'ours' when the job's attempt under our token ended as we reported, else 'lost'."""
        try:
            info = self.client.get_job(job.id)
        except RaftlineError as e:
            log.warning("raftline worker: can't read job %s to settle its completion: %s", job.id, e)
            return "lost"
        for a in info.get("attempts") or []:
            if int(a.get("token") or 0) != job.token:
                continue
            res = a.get("result")
            if completion["success"] and res == "succeeded":
                return "ours"
            if not completion["success"] and res == "failed" and a.get("error_class") == completion.get("error_class"):
                return "ours"
            return "lost"
        return "lost"

    def _release(self, job: Job) -> None:
        try:
            self.client.release(job.id, job.token)
            self.stats.add(released=1)
        except RaftlineError as e:
            log.warning("raftline worker: releasing job %s: %s", job.id, e)
        self._forget(job)

    def _forget(self, job: Job) -> None:
        with self._lock:
            if self._running.get(job.id) is job:
                del self._running[job.id]

    # ---- heartbeats -----------------------------------------------------------------------------

    def _period(self) -> float:
        if self.ttl:
            return self.ttl / 3
        with self._lock:
            ttls = [j.ttl_ms for j in self._running.values() if j.ttl_ms]
        return (min(ttls) / 1000.0 if ttls else 30.0) / 3

    def _heartbeats(self) -> None:
        """Every ttl/3: extend our leases, mark the running jobs the cluster no longer gives us
        as lost, and release leases we hold without knowing (a lease whose reply was lost when
        a node died): seen twice in a row, they are no call's in flight."""
        while True:
            period = self._period()
            t0 = time.monotonic()
            while True:
                if self._done.is_set():
                    return
                left = period - (time.monotonic() - t0)
                if left <= 0:
                    break
                if self._hb_wake.wait(left):
                    # A job was leased (the period may be shorter now) or the worker ended.
                    self._hb_wake.clear()
                    period = min(period, self._period())
            try:
                self._heartbeat_once()
            except RaftlineError as e:
                self.stats.add(errors=1)
                log.warning("raftline worker %s: heartbeat: %s", self.worker_id, e)
            except Exception:  # a bug: keep heartbeating
                self.stats.add(errors=1)
                log.exception("raftline worker %s: heartbeat", self.worker_id)

    def _heartbeat_once(self) -> None:
        with self._lock:
            known = {jid: j.token for jid, j in self._running.items()}
        held = self.client.heartbeat(self.worker_id)
        held_map = {int(h["job_id"]): int(h["token"]) for h in held}
        orphans = []
        with self._lock:
            for jid, token in known.items():
                job = self._running.get(jid)
                # A job whose completion is in flight is not held once that was applied.
                if job is not None and job.token == token and held_map.get(jid) != token and not job._completing:
                    if not job.lease_lost.is_set():
                        log.warning("raftline worker: job %s: lease lost (cancelled or expired)", jid)
                    job.lease_lost.set()
            suspects = {}
            for jid, token in held_map.items():
                if jid in self._running and self._running[jid].token == token:
                    continue
                if self._suspects.get(jid) == token:
                    orphans.append((jid, token))
                else:
                    suspects[jid] = token
            self._suspects = suspects
        for jid, token in orphans:
            try:
                self.client.release(jid, token)
                self.stats.add(released=1)
                log.info("raftline worker: released job %s leased under token %s without a reply", jid, token)
            except RaftlineError as e:
                log.warning("raftline worker: releasing orphan job %s: %s", jid, e)


def _tail(s: str, n: int) -> str:
    b = s.encode("utf-8")
    if len(b) <= n:
        return s
    return b[-n:].decode("utf-8", "ignore")
