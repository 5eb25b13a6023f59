"""The raftline REST client: HTTP/1.1 keep-alive, failover across nodes, idempotent submits."""

from __future__ import annotations

import base64
import datetime as _dt
import http.client
import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import RaftlineError, Unavailable, make_error

log = logging.getLogger("raftline")

TERMINAL_STATES = frozenset({"succeeded", "dead", "cancelled"})

# Job fields that are proto `bytes` (base64 in JSON); decoded to bytes in what we return.
_BYTES_FIELDS = ("payload", "checkpoint")


# ---------------------------------------------------------------------------------------------
# Value helpers
# ---------------------------------------------------------------------------------------------


def b64encode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(bytes(data)).decode("ascii")


def b64decode(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _ms(value: float | int | _dt.timedelta | None) -> int | None:
    """A duration in seconds (or a timedelta) as whole milliseconds."""
    if value is None:
        return None
    if isinstance(value, _dt.timedelta):
        value = value.total_seconds()
    if value < 0:
        raise ValueError("a duration can't be negative")
    return int(round(value * 1000))


def _epoch_ms(value: float | int | _dt.datetime | None) -> int | None:
    """A point in time (datetime, or seconds since the epoch) as ms since the epoch."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.astimezone()  # naive = local time, like datetime.timestamp()
        return int(round(value.timestamp() * 1000))
    return int(round(float(value) * 1000))


def _decode_job(job: dict) -> dict:
    """A Job as the server sent it, with its bytes fields decoded."""
    for f in _BYTES_FIELDS:
        if f in job and isinstance(job[f], str):
            job[f] = b64decode(job[f])
    return job


@dataclass(frozen=True)
class Backoff:
    """Retry backoff of a job: ``base`` seconds, times ``factor`` each attempt, up to ``cap``."""

    base: float = 1.0
    factor: int = 2
    cap: float = 16.0
    jitter: bool = True

    def to_json(self) -> dict:
        return {
            "base_ms": _ms(self.base),
            "factor": int(self.factor),
            "cap_ms": _ms(self.cap),
            "no_jitter": not self.jitter,
        }


@dataclass(frozen=True)
class SubmitResult:
    id: int
    duplicate: bool


@dataclass(frozen=True)
class _Addr:
    scheme: str
    host: str
    port: int

    @property
    def label(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def _parse_addr(addr: str, tls: bool) -> _Addr:
    addr = addr.strip()
    if "://" not in addr:
        addr = ("https://" if tls else "http://") + addr
    u = urllib.parse.urlsplit(addr)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"bad node address {addr!r}: want host:port or http(s)://host:port")
    port = u.port or (443 if u.scheme == "https" else 80)
    return _Addr(u.scheme, u.hostname, port)


# Errors that mean "this node did not answer": fail over to the next one.
_CONN_ERRORS = (OSError, http.client.HTTPException, socket.timeout)


class _Failed(Exception):
    """One try at one node failed in a way that fails over (not raised to callers)."""

    def __init__(self, reason: str, error: RaftlineError | None = None):
        super().__init__(reason)
        self.error = error


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


class Client:
    """A client of a raftline cluster over its REST API.

    ``addrs``: every node's HTTP address (``"127.0.0.1:7301"`` or ``"https://host:port"``), a
    list or a comma-separated string; default env ``RAFTLINE_ADDRS``. ``token``: the API token
    secret; default env ``RAFTLINE_TOKEN``, else the file named by ``token_file`` or
    ``RAFTLINE_TOKEN_FILE``. ``ca``: the cluster's CA certificate file (``ca.pem``); given, or
    with an ``https://`` address, the client speaks TLS and checks the node's certificate
    against it (default env ``RAFTLINE_CA_FILE``). ``timeout``: seconds one HTTP request may
    take at one node (a long-poll adds its wait). ``deadline``: seconds a call keeps failing
    over between nodes (connection errors, timeouts, 503 UNAVAILABLE) before it raises
    :class:`Unavailable`.

    A client is safe to share between threads: each thread keeps its own keep-alive connection
    per node.
    """

    def __init__(
        self,
        addrs: Sequence[str] | str | None = None,
        token: str | None = None,
        *,
        ca: str | None = None,
        timeout: float = 10.0,
        deadline: float = 30.0,
        token_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
    ):
        if addrs is None:
            addrs = os.environ.get("RAFTLINE_ADDRS", "")
        if isinstance(addrs, str):
            addrs = [a for a in addrs.split(",") if a.strip()]
        if not addrs:
            raise ValueError("no node addresses: pass addrs or set RAFTLINE_ADDRS")
        if token is None:
            token = os.environ.get("RAFTLINE_TOKEN") or None
        if token is None:
            token_file = token_file or os.environ.get("RAFTLINE_TOKEN_FILE")
            if token_file:
                with open(token_file, encoding="utf-8") as f:
                    token = f.read().strip()
        self.token = token
        if ca is None:
            ca = os.environ.get("RAFTLINE_CA_FILE") or None
        self.ca = ca
        tls = ca is not None or ssl_context is not None
        self.addrs = [_parse_addr(a, tls) for a in addrs]
        self._ssl = ssl_context
        if self._ssl is None and any(a.scheme == "https" for a in self.addrs):
            self._ssl = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        self.timeout = float(timeout)
        self.deadline = float(deadline)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._preferred = 0
        self._local = threading.local()
        self._conns_lock = threading.Lock()
        # Every connection of every thread, for close(); a dead thread's go with it.
        self._all_conns: weakref.WeakSet = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"Client({[a.label for a in self.addrs]!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes every connection this client opened (in any thread)."""
        with self._conns_lock:
            conns = list(self._all_conns)
            self._all_conns.clear()
        for c in conns:
            try:
                c.close()
            except Exception:
                pass

    # ---- transport --------------------------------------------------------------------------

    def _conn(self, addr: _Addr, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to `addr` and whether it was used before."""
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(addr)
        if conn is not None and conn.sock is not None:
            conn.sock.settimeout(timeout)
            conn.timeout = timeout
            return conn, True
        if conn is not None:
            conn.close()
        if addr.scheme == "https":
            conn = http.client.HTTPSConnection(addr.host, addr.port, timeout=timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(addr.host, addr.port, timeout=timeout)
        conns[addr] = conn
        with self._conns_lock:
            self._all_conns.add(conn)
        return conn, False

    def _drop(self, addr: _Addr) -> None:
        conns = getattr(self._local, "conns", None) or {}
        conn = conns.pop(addr, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
            with self._conns_lock:
                self._all_conns.discard(conn)

    def _once(self, addr: _Addr, method: str, target: str, body: bytes | None, timeout: float):
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        for fresh_retry in (False, True):
            conn, reused = self._conn(addr, timeout)
            sent = False
            try:
                conn.request(method, target, body=body, headers=headers)
                sent = True
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self._drop(addr)
                return resp.status, data
            except _CONN_ERRORS as e:
                self._drop(addr)
                # A kept-alive connection the server closed while idle fails at once on its next
                # request: try once more on a fresh connection to the same node.
                stale = isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if reused and not fresh_retry and stale and not isinstance(e, socket.timeout):
                    log.debug("raftline: kept-alive connection to %s was closed (%s), reconnecting", addr.label, e)
                    continue
                raise _Failed(f"{addr.label}: {type(e).__name__}: {e}" + ("" if sent else " (before sending)"))
        raise AssertionError("unreachable")

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, Any] | None = None,
        extra_timeout: float = 0.0,
        deadline: float | None = None,
    ) -> Any:
        """One REST call with failover: ``method`` ``/v1/...`` with a JSON body (POST/PUT) or
        query (GET/DELETE). Returns the decoded JSON reply; raises :class:`RaftlineError`."""
        target = path
        if query:
            q = {}
            for k, v in query.items():
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = "true" if v else "false"
                q[k] = v
            if q:
                target += "?" + urllib.parse.urlencode(q)
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        timeout = self.timeout + max(0.0, extra_timeout)
        stop_at = time.monotonic() + (self.deadline if deadline is None else deadline)
        n = len(self.addrs)
        idx = self._preferred
        tries = 0
        pause = self.backoff
        last = "no node tried"
        last_err: RaftlineError | None = None
        while True:
            addr = self.addrs[idx % n]
            try:
                status, data = self._once(addr, method, target, payload, timeout)
                reply = _decode_body(data)
                if 200 <= status < 300:
                    self._preferred = idx % n
                    return reply
                err = _error_of(status, reply, data)
                if err.status == "UNAVAILABLE" or status in (502, 503, 504):
                    raise _Failed(f"{addr.label}: {err}", err)
                self._preferred = idx % n
                raise err
            except _Failed as f:
                last = str(f)
                last_err = f.error
                log.debug("raftline: %s %s failed at %s; failing over", method, path, last)
            tries += 1
            idx += 1
            # After every node was tried once in this round, back off (doubling, capped).
            wait = 0.0
            if tries % n == 0:
                wait = pause * (0.5 + random.random() / 2)
                pause = min(pause * 2, self.max_backoff)
            if time.monotonic() + wait >= stop_at:
                msg = f"no node answered {method} {path} within the deadline; last: {last}"
                if last_err is not None:
                    raise Unavailable(last_err.http_status, "UNAVAILABLE", f"{msg}", last_err.field)
                raise Unavailable(0, "UNAVAILABLE", msg)
            if wait:
                time.sleep(wait)

    # ---- jobs -------------------------------------------------------------------------------

    @staticmethod
    def _submit_body(
        queue: str,
        payload: bytes | str | None = None,
        *,
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        priority: int | None = None,
        delay: float | _dt.timedelta | None = None,
        run_at: float | _dt.datetime | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        timeout: float | _dt.timedelta | None = None,
        lease_ttl: float | _dt.timedelta | None = None,
        idempotency_key: str | None = None,
        tags: Iterable[str] | None = None,
        requires: Iterable[str] | None = None,
        permanent_exit_codes: Iterable[int] | None = None,
        deadline: float | _dt.datetime | None = None,
        resources: Iterable[str] | None = None,
    ) -> dict:
        body: dict[str, Any] = {"queue": queue}
        if argv is not None:
            if payload is not None:
                raise ValueError("give either payload (an external job) or argv (a shell job)")
            shell: dict[str, Any] = {"argv": list(argv)}
            if env:
                shell["env"] = dict(env)
            if cwd:
                shell["cwd"] = cwd
            body["shell"] = shell
        else:
            if env or cwd:
                raise ValueError("env and cwd are for shell jobs (argv)")
            body["payload"] = b64encode(payload)
        if priority is not None:
            body["priority"] = int(priority)
        if delay is not None:
            body["delay_ms"] = _ms(delay)
        if run_at is not None:
            body["run_at_ms"] = _epoch_ms(run_at)
        if max_attempts is not None:
            body["max_attempts"] = int(max_attempts)
        if backoff is not None:
            body["backoff"] = backoff.to_json() if isinstance(backoff, Backoff) else dict(backoff)
        if timeout is not None:
            body["timeout_ms"] = _ms(timeout)
        if lease_ttl is not None:
            body["lease_ttl_ms"] = _ms(lease_ttl)
        body["idempotency_key"] = idempotency_key or f"py-{uuid.uuid4()}"
        if tags:
            body["tags"] = list(tags)
        if requires:
            body["required_capabilities"] = list(requires)
        if permanent_exit_codes:
            body["permanent_exit_codes"] = [int(c) for c in permanent_exit_codes]
        if deadline is not None:
            body["deadline_ms"] = _epoch_ms(deadline)
        if resources:
            body["resources"] = list(resources)
        return body

    def submit(self, queue: str, payload: bytes | str | None = None, **options: Any) -> int:
        """Adds a job and returns its id. An external job (for workers) carries ``payload``
        (bytes, or str sent as UTF-8; empty when not given); a shell job gives ``argv`` (with
        ``env``, ``cwd``) instead. Options (all optional): ``priority`` 1..10, ``delay``
        (seconds or timedelta), ``run_at`` (datetime or epoch seconds), ``max_attempts``,
        ``backoff`` (:class:`Backoff`), ``timeout`` (seconds per attempt), ``lease_ttl``
        (seconds), ``idempotency_key`` (random when not given; the same key is sent on every
        retry), ``tags``, ``requires`` (capabilities), ``permanent_exit_codes``, ``deadline``
        (datetime or epoch seconds), ``resources`` (``name`` or ``name:units``)."""
        return self.submit_result(queue, payload, **options).id

    def submit_result(self, queue: str, payload: bytes | str | None = None, **options: Any) -> SubmitResult:
        """Like :meth:`submit`, also saying whether the idempotency key matched an earlier job."""
        body = self._submit_body(queue, payload, **options)
        r = self.call("POST", "/v1/jobs", body)
        return SubmitResult(int(r["id"]), bool(r.get("duplicate", False)))

    def submit_batch(self, jobs: Iterable[Mapping[str, Any]]) -> list[int]:
        """Adds many jobs; each item is a dict of :meth:`submit`'s arguments (``queue``,
        ``payload``, options). Returns the ids in order. Sent in calls of up to 1,000 jobs, each
        job with its own idempotency key, so a retried call creates nothing twice."""
        return [r.id for r in self.submit_batch_results(jobs)]

    def submit_batch_results(self, jobs: Iterable[Mapping[str, Any]]) -> list[SubmitResult]:
        bodies = []
        for j in jobs:
            j = dict(j)
            queue = j.pop("queue")
            payload = j.pop("payload", None)
            bodies.append(self._submit_body(queue, payload, **j))
        out: list[SubmitResult] = []
        for i in range(0, len(bodies), 1000):
            r = self.call("POST", "/v1/jobs/batch", {"jobs": bodies[i : i + 1000]})
            out.extend(SubmitResult(int(x["id"]), bool(x.get("duplicate", False))) for x in r["jobs"])
        return out

    def get_job(self, job_id: int, *, stale: bool = False) -> dict:
        """The job as a dict (the proto's ``Job`` fields; ``payload`` decoded to bytes)."""
        return _decode_job(self.call("GET", f"/v1/jobs/{int(job_id)}", query={"stale": stale or None}))

    def wait(self, job_id: int, timeout: float | None = None, *, poll: float = 0.1, max_poll: float = 1.0) -> dict:
        """Polls until the job is terminal (succeeded, dead or cancelled) and returns it; raises
        ``TimeoutError`` when it isn't after ``timeout`` seconds (None: wait forever)."""
        stop_at = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if job.get("state") in TERMINAL_STATES:
                return job
            if stop_at is not None and time.monotonic() + poll > stop_at:
                raise TimeoutError(f"job {job_id} is still {job.get('state')} after {timeout} s")
            time.sleep(poll)
            poll = min(poll * 1.5, max_poll)

    def cancel(self, job_id: int) -> str:
        """Cancels an unfinished job; returns its state (``cancelled``)."""
        return self.call("POST", f"/v1/jobs/{int(job_id)}/cancel", {})["state"]

    def retry(
        self,
        job_id: int,
        *,
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Runs a scheduled, dead or cancelled job again now; returns its state."""
        body: dict[str, Any] = {}
        if argv is not None:
            body["argv"] = list(argv)
        if env:
            body["env"] = dict(env)
        if priority is not None:
            body["priority"] = int(priority)
        if max_attempts is not None:
            body["max_attempts"] = int(max_attempts)
        return self.call("POST", f"/v1/jobs/{int(job_id)}/retry", body)["state"]

    @staticmethod
    def _list_query(
        queue: str | None = None,
        state: str | None = None,
        tag: str | None = None,
        text: str | None = None,
        created_after: float | _dt.datetime | None = None,
        created_before: float | _dt.datetime | None = None,
        finished_after: float | _dt.datetime | None = None,
        finished_before: float | _dt.datetime | None = None,
        stale: bool = False,
    ) -> dict:
        return {
            "queue": queue,
            "state": state,
            "tag": tag,
            "text": text,
            "created_after_ms": _epoch_ms(created_after),
            "created_before_ms": _epoch_ms(created_before),
            "finished_after_ms": _epoch_ms(finished_after),
            "finished_before_ms": _epoch_ms(finished_before),
            "stale": stale or None,
        }

    def list_jobs_page(self, *, after_id: int = 0, limit: int | None = None, **filters: Any) -> tuple[list[dict], int]:
        """One page of :meth:`list_jobs`: (jobs, next_after_id); next_after_id 0 = no more."""
        q = self._list_query(**filters)
        q["after_id"] = int(after_id) or None
        q["limit"] = limit
        r = self.call("GET", "/v1/jobs", query=q)
        return [_decode_job(j) for j in r.get("jobs", [])], int(r.get("next_after_id") or 0)

    def list_jobs(self, *, after_id: int = 0, page_size: int | None = None, **filters: Any) -> Iterator[dict]:
        """Every job the filters keep, in id order, fetched a page at a time. Filters:
        ``queue``, ``state``, ``tag``, ``text``, ``created_after``, ``created_before``,
        ``finished_after``, ``finished_before`` (datetime or epoch seconds), ``stale``."""
        while True:
            jobs, nxt = self.list_jobs_page(after_id=after_id, limit=page_size, **filters)
            yield from jobs
            if not nxt:
                return
            after_id = nxt

    # ---- queues and cluster -----------------------------------------------------------------

    def get_queue(self, queue: str, *, stale: bool = False) -> dict:
        return self.call("GET", f"/v1/queues/{_seg(queue)}", query={"stale": stale or None})

    def list_queues(self, *, stale: bool = False) -> list[dict]:
        return self.call("GET", "/v1/queues", query={"stale": stale or None}).get("queues", [])

    def pause_queue(self, queue: str) -> dict:
        return self.call("POST", f"/v1/queues/{_seg(queue)}/pause", {})

    def resume_queue(self, queue: str) -> dict:
        return self.call("POST", f"/v1/queues/{_seg(queue)}/resume", {})

    def node_status(self) -> dict:
        """The answering node's view of the cluster (``leader``, ``term``, ``members``...)."""
        return self.call("GET", "/v1/cluster/status")

    # ---- worker calls (used by Worker; usable directly) -------------------------------------

    def lease(self, worker_id: str, queues: Sequence[str] = (), *, max: int = 1, capabilities: Sequence[str] = (),
              ttl: float | None = None, wait: float = 0.0) -> list[dict]:
        """Leases up to ``max`` jobs, long-polling up to ``wait`` seconds. Returns the proto's
        ``LeasedJob`` dicts (``job``, ``token``, ``attempt``, ``expires_ms``, ``ttl_ms``,
        ``checkpoint`` as bytes or None)."""
        body = _lease_body(worker_id, queues, max, capabilities, ttl, wait)
        r = self.call("POST", "/v1/worker/lease", body, extra_timeout=wait)
        return [_decode_leased(j) for j in r.get("jobs", [])]

    def heartbeat(self, worker_id: str) -> list[dict]:
        """Extends every lease the worker holds; returns them (``job_id``, ``token``, ``expires_ms``)."""
        return self.call("POST", "/v1/worker/heartbeat", {"worker_id": worker_id}).get("leases", [])

    def complete(self, job_id: int, token: int, *, success: bool = True, error_class: str = "",
                 error: str = "", output_tail: str = "", exit_code: int | None = None) -> str:
        body = _completion(job_id, token, success, error_class, error, output_tail, exit_code)
        return self.call("POST", "/v1/worker/complete", body)["state"]

    def complete_and_lease(self, completions: Sequence[Mapping[str, Any]], lease: Mapping[str, Any] | None,
                           wait: float = 0.0) -> dict:
        body: dict[str, Any] = {"completions": list(completions)}
        if lease is not None:
            body["lease"] = dict(lease)
        r = self.call("POST", "/v1/worker/complete-and-lease", body, extra_timeout=wait)
        r["jobs"] = [_decode_leased(j) for j in r.get("jobs", [])]
        return r

    def checkpoint(self, job_id: int, token: int, data: bytes | str) -> str:
        body = {"job_id": int(job_id), "token": int(token), "data": b64encode(data)}
        return self.call("POST", "/v1/worker/checkpoint", body)["state"]

    def release(self, job_id: int, token: int) -> str:
        return self.call("POST", "/v1/worker/release", {"job_id": int(job_id), "token": int(token)})["state"]


# ---------------------------------------------------------------------------------------------


def _seg(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def _decode_body(data: bytes) -> Any:
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError:
        return None


def _error_of(status: int, reply: Any, raw: bytes) -> RaftlineError:
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        e = reply["error"]
        return make_error(int(e.get("code") or status), str(e.get("status") or ""), str(e.get("message") or ""),
                          e.get("field"))
    name = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
            409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}.get(status, "UNKNOWN")
    return make_error(status, name, raw.decode("utf-8", "replace")[:500] or f"HTTP {status}")


def _lease_body(worker_id, queues, max_, capabilities, ttl, wait) -> dict:
    body: dict[str, Any] = {"worker_id": worker_id, "queues": list(queues), "max": int(max_)}
    if capabilities:
        body["capabilities"] = list(capabilities)
    if ttl:
        body["ttl_ms"] = _ms(ttl)
    if wait:
        body["wait_ms"] = _ms(wait)
    return body


def _completion(job_id, token, success, error_class="", error="", output_tail="", exit_code=None) -> dict:
    c: dict[str, Any] = {"job_id": int(job_id), "token": int(token), "success": bool(success)}
    if not success:
        c["error_class"] = error_class or "transient"
        c["error"] = error or ""
    if output_tail:
        c["output_tail"] = output_tail
    if exit_code is not None:
        c["exit_code"] = int(exit_code)
    return c


def _decode_leased(lj: dict) -> dict:
    if isinstance(lj.get("job"), dict):
        _decode_job(lj["job"])
    cp = lj.get("checkpoint")
    lj["checkpoint"] = b64decode(cp) if isinstance(cp, str) else None
    return lj
