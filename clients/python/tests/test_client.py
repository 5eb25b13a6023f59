"""The client against a real 3-node cluster."""

import time
import uuid

import pytest

import raftline


def q():
    return f"py-{uuid.uuid4().hex[:10]}"


def test_submit_get_and_idempotency(client):
    queue = q()
    r1 = client.submit_result(queue, b"\x00\x01payload", idempotency_key="same-key-" + queue, tags=["t1"], priority=7)
    r2 = client.submit_result(queue, b"other", idempotency_key="same-key-" + queue)
    assert r1.id == r2.id and not r1.duplicate and r2.duplicate
    job = client.get_job(r1.id)
    assert job["payload"] == b"\x00\x01payload"
    assert job["queue"] == queue and job["state"] == "ready" and job["priority"] == 7
    assert job["tags"] == ["t1"] and job["idempotency_key"] == "same-key-" + queue
    stale = client.get_job(r1.id, stale=True)
    assert stale["id"] == r1.id
    # Auto keys: two plain submits are two jobs.
    assert client.submit(queue, "a") != client.submit(queue, "a")


def test_submit_options_reach_the_job(client):
    queue = q()
    deadline = time.time() + 3600
    jid = client.submit(
        queue,
        b"x",
        delay=60,
        max_attempts=5,
        timeout=30,
        lease_ttl=12,
        requires=["gpu"],
        deadline=deadline,
        backoff=raftline.Backoff(base=0.2, factor=2, cap=1),
    )
    job = client.get_job(jid)
    assert job["state"] == "scheduled"
    assert job["max_attempts"] == 5 and job["timeout_ms"] == 30000 and job["lease_ttl_ms"] == 12000
    assert job["required_capabilities"] == ["gpu"]
    assert abs(job["deadline_ms"] - deadline * 1000) < 2
    assert job["run_at_ms"] >= job["created_ms"] + 59_000
    # A scheduled job can be run now.
    assert client.retry(jid) == "ready"


def test_batch_list_cancel_retry(client):
    queue = q()
    ids = client.submit_batch([{"queue": queue, "payload": f"p{i}", "tags": ["even" if i % 2 == 0 else "odd"]} for i in range(25)])
    assert len(ids) == 25 and ids == sorted(ids)
    listed = list(client.list_jobs(queue=queue, page_size=7))
    assert [j["id"] for j in listed] == ids
    assert [j["payload"] for j in listed] == [f"p{i}".encode() for i in range(25)]
    even = [j["id"] for j in client.list_jobs(queue=queue, tag="even")]
    assert even == ids[::2]
    page, nxt = client.list_jobs_page(queue=queue, limit=10)
    assert len(page) == 10 and nxt == ids[9]
    assert client.cancel(ids[0]) == "cancelled"
    assert client.wait(ids[0], timeout=5)["state"] == "cancelled"
    with pytest.raises(raftline.FailedPrecondition) as e:
        client.cancel(ids[0])
    assert e.value.http_status == 400
    assert client.retry(ids[0], priority=9) == "ready"
    assert client.get_job(ids[0])["priority"] == 9
    cancelled = list(client.list_jobs(queue=queue, state="cancelled"))
    assert cancelled == []
    info = client.get_queue(queue)
    assert info["ready"] == 25


def test_errors(client, cluster):
    with pytest.raises(raftline.NotFound) as e:
        client.get_job(10**12)
    assert (e.value.http_status, e.value.status) == (404, "NOT_FOUND")
    with pytest.raises(raftline.InvalidArgument) as e:
        client.submit(q(), b"", priority=42)
    assert e.value.field == "priority"
    with pytest.raises(raftline.InvalidArgument) as e:
        client.submit_batch([{"queue": q(), "payload": b""}, {"queue": "bad queue", "payload": b""}])
    assert e.value.field.startswith("jobs[1]")
    bad = raftline.Client(cluster.addrs, token="rl_wrong")
    with pytest.raises(raftline.Unauthenticated) as e:
        bad.get_job(1)
    assert e.value.http_status == 401


def test_wait_times_out(client):
    jid = client.submit(q(), b"")
    with pytest.raises(TimeoutError):
        client.wait(jid, timeout=0.3)


def test_shell_job_runs_nowhere_but_is_stored(client):
    # workers_max = 0 in the test cluster: a shell job waits, but its argv is stored.
    jid = client.submit(q(), argv=["echo", "hi"], env={"A": "1"})
    job = client.get_job(jid)
    assert job["shell"]["argv"] == ["echo", "hi"] and job["shell"]["env"] == {"A": "1"}
