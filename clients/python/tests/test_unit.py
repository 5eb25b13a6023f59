"""Unit tests without a cluster: a fake node (http.server) stands in where a server is needed."""

import datetime as dt
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import raftline
from raftline.client import Client, _parse_addr
from cluster import free_ports


class FakeNode:
    """An HTTP/1.1 keep-alive server; `script(handler, body)` answers each request and returns
    (status, dict) or None to drop the connection without a reply."""

    def __init__(self, script):
        self.requests = []
        self.connections = 0
        node = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                node.connections += 1

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                node.requests.append((self.command, self.path, dict(self.headers), body))
                out = script(self, body)
                if out is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, reply = out
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fakes():
    made = []

    def make(script):
        f = FakeNode(script)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def unavailable(*_):
    return 503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "no leader", "field": None}}


def test_parse_addr():
    a = _parse_addr("127.0.0.1:7301", False)
    assert (a.scheme, a.host, a.port) == ("http", "127.0.0.1", 7301)
    a = _parse_addr("127.0.0.1:7301", True)
    assert a.scheme == "https"
    a = _parse_addr("https://node-1:9000/", False)
    assert (a.scheme, a.host, a.port) == ("https", "node-1", 9000)
    with pytest.raises(ValueError):
        _parse_addr("ftp://x:1", False)


def test_env_defaults(monkeypatch, tmp_path):
    tok = tmp_path / "tok"
    tok.write_text("rl_secret\n")
    monkeypatch.setenv("RAFTLINE_ADDRS", "127.0.0.1:1,127.0.0.1:2")
    monkeypatch.delenv("RAFTLINE_TOKEN", raising=False)
    monkeypatch.setenv("RAFTLINE_TOKEN_FILE", str(tok))
    c = Client()
    assert [a.port for a in c.addrs] == [1, 2]
    assert c.token == "rl_secret"
    monkeypatch.setenv("RAFTLINE_TOKEN", "rl_env")
    assert Client().token == "rl_env"
    monkeypatch.delenv("RAFTLINE_ADDRS")
    with pytest.raises(ValueError):
        Client()


def test_submit_body_maps_every_option():
    b = Client._submit_body(
        "q",
        "héllo",
        priority=9,
        delay=1.5,
        run_at=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
        max_attempts=4,
        backoff=raftline.Backoff(base=0.5, factor=3, cap=10, jitter=False),
        timeout=dt.timedelta(minutes=1),
        lease_ttl=20,
        tags=["a"],
        requires=["gpu"],
        permanent_exit_codes=[3],
        deadline=1_900_000_000,
        resources=["db:2"],
    )
    assert b == {
        "queue": "q",
        "payload": "aMOpbGxv",
        "priority": 9,
        "delay_ms": 1500,
        "run_at_ms": 1893456000000,
        "max_attempts": 4,
        "backoff": {"base_ms": 500, "factor": 3, "cap_ms": 10000, "no_jitter": True},
        "timeout_ms": 60000,
        "lease_ttl_ms": 20000,
        "idempotency_key": b["idempotency_key"],
        "tags": ["a"],
        "required_capabilities": ["gpu"],
        "permanent_exit_codes": [3],
        "deadline_ms": 1_900_000_000_000,
        "resources": ["db:2"],
    }
    assert b["idempotency_key"].startswith("py-")
    s = Client._submit_body("q", argv=["echo", "hi"], env={"A": "1"}, cwd="/tmp", idempotency_key="k")
    assert s["shell"] == {"argv": ["echo", "hi"], "env": {"A": "1"}, "cwd": "/tmp"}
    assert s["idempotency_key"] == "k" and "payload" not in s
    assert Client._submit_body("q")["payload"] == ""
    with pytest.raises(ValueError):
        Client._submit_body("q", b"x", argv=["true"])


def test_failover_skips_dead_and_unavailable_nodes(fakes):
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    busy = fakes(unavailable)
    good = fakes(lambda h, b: (200, {"id": 5, "state": "ready", "payload": "aGk="}))
    c = Client([dead, busy.addr, good.addr], token="rl_t", deadline=5)
    job = c.get_job(5)
    assert job["payload"] == b"hi"
    assert good.requests[0][2]["Authorization"] == "Bearer rl_t"
    assert len(busy.requests) == 1
    # The node that answered is preferred next time.
    c.get_job(5)
    assert len(busy.requests) == 1 and len(good.requests) == 2


def test_keep_alive_uses_one_connection(fakes):
    good = fakes(lambda h, b: (200, {"id": 1, "state": "ready"}))
    c = Client([good.addr], token="t")
    for _ in range(5):
        c.get_job(1)
    assert good.connections == 1


def test_submit_retry_keeps_its_idempotency_key(fakes):
    calls = []

    def script(h, body):
        calls.append(body)
        if len(calls) == 1:
            return None  # the node "dies" after reading the request: an ambiguous failure
        return 200, {"id": 7, "duplicate": True}

    node = fakes(script)
    c = Client([node.addr], token="t", deadline=5)
    r = c.submit_result("q", b"x")
    assert r == raftline.SubmitResult(7, True)
    assert len(calls) == 2
    assert calls[0]["idempotency_key"] == calls[1]["idempotency_key"]


def test_batch_gives_every_job_a_key(fakes):
    bodies = []

    def script(h, body):
        bodies.append(body)
        return 200, {"jobs": [{"id": i + 1, "duplicate": False} for i in range(len(body["jobs"]))]}

    node = fakes(script)
    c = Client([node.addr], token="t")
    ids = c.submit_batch([{"queue": "q", "payload": str(i)} for i in range(1500)])
    assert len(ids) == 1500
    assert [len(b["jobs"]) for b in bodies] == [1000, 500]
    keys = [j["idempotency_key"] for b in bodies for j in b["jobs"]]
    assert len(set(keys)) == 1500


def test_errors_carry_status_and_field(fakes):
    def script(h, body):
        return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "priority: is 42", "field": "priority"}}

    node = fakes(script)
    c = Client([node.addr], token="t")
    with pytest.raises(raftline.InvalidArgument) as e:
        c.submit("q", b"", priority=42)
    err = e.value
    assert isinstance(err, raftline.RaftlineError)
    assert (err.http_status, err.status, err.field) == (400, "INVALID_ARGUMENT", "priority")
    assert "priority: is 42" in str(err)
    assert len(node.requests) == 1  # not retried


def test_deadline_gives_unavailable(fakes):
    busy = fakes(unavailable)
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    c = Client([dead, busy.addr], token="t", deadline=0.5)
    t0 = time.monotonic()
    with pytest.raises(raftline.Unavailable) as e:
        c.get_job(1)
    assert time.monotonic() - t0 < 3
    assert e.value.status == "UNAVAILABLE"
    assert len(busy.requests) >= 2  # kept trying with backoff
