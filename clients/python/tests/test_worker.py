"""The Worker against a real 3-node cluster."""

import threading
import time
import uuid

import pytest

import raftline


def q():
    return f"pyw-{uuid.uuid4().hex[:10]}"


def wait_for(cond, timeout=15.0, what="condition"):
    stop_at = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > stop_at:
            raise TimeoutError(what)
        time.sleep(0.02)


def test_worker_runs_jobs_retries_failures_and_dead_letters(client):
    queue = q()
    fast = raftline.Backoff(base=0.05, factor=1, cap=0.05, jitter=False)
    ok = [client.submit(queue, f"ok{i}") for i in range(10)]
    flaky = client.submit(queue, "flaky", backoff=fast)
    perm = client.submit(queue, "perm", backoff=fast)
    runs = []
    lock = threading.Lock()

    def handler(job):
        with lock:
            runs.append((job.id, job.attempt))
        if job.payload == b"flaky" and job.attempt == 1:
            raise RuntimeError("first try fails")
        if job.payload == b"perm":
            raise raftline.PermanentError("no way", exit_code=3)
        return "out:" + job.payload.decode()

    with raftline.Worker(client, [queue], handler, concurrency=3, poll_wait=1) as w:
        for jid in ok + [flaky, perm]:
            client.wait(jid, timeout=20)
    for jid in ok:
        job = client.get_job(jid)
        assert job["state"] == "succeeded"
        assert job["attempts"][-1]["output_tail"].startswith("out:ok")
    job = client.get_job(flaky)
    assert job["state"] == "succeeded" and job["attempts_total"] == 2
    assert job["attempts"][0]["result"] == "failed" and "first try fails" in job["attempts"][0]["error"]
    job = client.get_job(perm)
    assert job["state"] == "dead" and job["attempts_total"] == 1
    assert job["attempts"][0]["error_class"] == "permanent" and job["attempts"][0]["exit_code"] == 3
    s = w.stats.as_dict()
    assert s["succeeded"] == 11 and s["failed"] == 2 and s["lost"] == 0


def test_checkpoint_reaches_the_next_attempt(client):
    queue = q()
    jid = client.submit(queue, b"cp", backoff=raftline.Backoff(base=0.05, factor=1, cap=0.05))
    seen = []

    def handler(job):
        seen.append((job.attempt, job.last_checkpoint))
        if job.attempt == 1:
            job.checkpoint(b"step-1")
            assert job.last_checkpoint == b"step-1"
            raise RuntimeError("crash after the checkpoint")

    with raftline.Worker(client, queue, handler, poll_wait=1):
        assert client.wait(jid, timeout=20)["state"] == "succeeded"
    assert seen == [(1, None), (2, b"step-1")]
    assert client.get_job(jid)["has_checkpoint"]


def test_cancelled_job_is_abandoned_not_completed(client):
    queue = q()
    jid = client.submit(queue, b"long", lease_ttl=3)  # heartbeat every second
    started = threading.Event()
    outcome = {}

    def handler(job):
        started.set()
        # Runs until the heartbeat reports the lease gone.
        outcome["lost"] = job.lease_lost.wait(15)
        with pytest.raises(raftline.LeaseLost):
            job.checkpoint(b"late")
        return "should not be reported"

    w = raftline.Worker(client, queue, handler, poll_wait=1).start()
    try:
        assert started.wait(10)
        assert client.cancel(jid) == "cancelled"
        wait_for(lambda: "lost" in outcome, what="handler saw the lost lease")
    finally:
        assert w.stop(10)
    assert outcome["lost"] is True
    job = client.get_job(jid)
    assert job["state"] == "cancelled"
    assert job["attempts"][0]["error_class"] == "cancelled"
    assert w.stats.as_dict()["lost"] == 1 and w.stats.as_dict()["succeeded"] == 0


def test_heartbeats_keep_a_long_job_leased(client):
    queue = q()
    jid = client.submit(queue, b"slow")

    def handler(job):
        time.sleep(3.5)  # longer than the lease ttl below; heartbeats every second keep it

    with raftline.Worker(client, queue, handler, ttl=3, poll_wait=1):
        job = client.wait(jid, timeout=20)
    assert job["state"] == "succeeded" and job["attempts_total"] == 1


def test_stop_is_graceful(client):
    queue = q()
    running = client.submit(queue, b"running")
    gate = threading.Event()
    started = threading.Event()

    def handler(job):
        started.set()
        gate.wait(10)
        return "done"

    w = raftline.Worker(client, queue, handler, concurrency=1, poll_wait=1).start()
    assert started.wait(10)
    stopper = threading.Thread(target=w.stop, args=(20,))
    stopper.start()
    time.sleep(0.2)
    waiting = client.submit(queue, b"not started")  # submitted after stop(): never run
    gate.set()
    stopper.join(20)
    assert not stopper.is_alive()
    assert client.get_job(running)["state"] == "succeeded"  # in-flight handler completed
    job = client.get_job(waiting)
    assert job["state"] == "ready" and job["attempts_used"] == 0


def test_stop_releases_jobs_leased_but_not_started(client, cluster):
    queue = q()
    polling = threading.Event()

    class Spy(raftline.Client):
        def lease(self, *a, **kw):
            polling.set()
            return super().lease(*a, **kw)

    spy = Spy(cluster.addrs, token=cluster.token)
    ran = []
    w = raftline.Worker(spy, queue, ran.append, poll_wait=5).start()
    assert polling.wait(10)  # the slot is in its lease call: whatever it returns arrives while stopping
    w._stopping.set()  # what stop() does first (without waiting)
    jid = client.submit(queue, b"late")
    assert w.stop(15)
    assert ran == []
    job = client.get_job(jid)
    assert job["state"] == "ready" and job["attempts_used"] == 0
    assert [a["error_class"] for a in job["attempts"]] == ["released"]
    assert w.stats.as_dict()["released"] == 1


def test_worker_fails_over_when_a_node_dies(own_cluster):
    c = own_cluster
    client = raftline.Client(c.addrs, token=c.token)
    queue = q()
    ids = client.submit_batch([{"queue": queue, "payload": str(i)} for i in range(100)])
    done = []

    def handler(job):
        done.append(job.id)
        time.sleep(0.01)

    with raftline.Worker(client, queue, handler, concurrency=4, poll_wait=1, ttl=5) as w:
        wait_for(lambda: len(done) >= 20, what="20 jobs done")
        leader = c.wait_leader()
        c.kill9(leader)
        stop_at = time.monotonic() + 60
        while client.get_queue(queue)["succeeded"] < 100:
            assert time.monotonic() < stop_at, "not every job succeeded"
            time.sleep(0.1)
    for jid in ids:
        job = client.get_job(jid)
        assert job["state"] == "succeeded"
        assert sum(a["result"] == "succeeded" for a in job["attempts"]) == 1
    print("stats after the kill:", w.stats)


def test_a_lease_whose_reply_was_lost_is_released_and_run(client):
    queue = q()
    jid = client.submit(queue, b"orphan")
    wid = f"w-{uuid.uuid4().hex[:8]}"
    # The lease is applied but "its reply never reached the worker": the worker doesn't know it.
    (orphan,) = client.lease(wid, [queue], max=1, wait=5)
    ran = []
    with raftline.Worker(client, queue, lambda job: ran.append((job.id, job.attempt)), worker_id=wid, ttl=1.5,
                         poll_wait=1) as w:
        job = client.wait(jid, timeout=20)
    assert job["state"] == "succeeded"
    assert ran == [(jid, 2)]
    assert [(a["token"], a["error_class"]) for a in job["attempts"]][0] == (orphan["token"], "released")
    assert w.stats.as_dict()["released"] == 1


def test_a_retried_completion_already_applied_counts_as_done(client):
    """What the worker does when a completion it retried after a node failure is refused as
    stale: the first try was applied (ours), or someone else owns the job (lost)."""
    queue = q()
    # One batch is one log entry: both jobs are leasable together.
    applied, taken = client.submit_batch([{"queue": queue, "payload": b"a"}, {"queue": queue, "payload": b"b"}])
    wid = f"w-{uuid.uuid4().hex[:8]}"
    w = raftline.Worker(client, queue, lambda job: None, worker_id=wid)
    leased = {lj["job"]["id"]: raftline.Job(w, lj) for lj in client.lease(wid, [queue], max=2, wait=5)}
    assert set(leased) == {applied, taken}
    # First try of `applied`'s completion was applied; its retry is refused as stale.
    ja = leased[applied]
    comp = {"job_id": applied, "token": ja.token, "success": True}
    assert client.complete(applied, ja.token) == "succeeded"
    r = client.complete_and_lease([comp], None)["completions"][0]
    assert r["state"] == "" and r["error_code"] in ("FailedPrecondition", "FAILED_PRECONDITION")
    w._settle(ja, comp, r)
    # `taken` was cancelled meanwhile: its completion is refused, and it is not ours.
    jt = leased[taken]
    client.cancel(taken)
    comp_t = {"job_id": taken, "token": jt.token, "success": True}
    rt = client.complete_and_lease([comp_t], None)["completions"][0]
    w._settle(jt, comp_t, rt)
    s = w.stats.as_dict()
    assert (s["succeeded"], s["already_done"], s["lost"]) == (1, 1, 1)
