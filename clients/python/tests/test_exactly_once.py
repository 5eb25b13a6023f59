"""Acceptance: a Python Worker processes 1,000 jobs on a 3-node cluster while the leader is
kill -9'd; every job succeeds exactly once. The jobs come from the Node client (the
cross-language test) or, in a second test, from the Python client."""

import collections
import json
import os
import random
import shutil
import subprocess
import threading
import time
import uuid

import pytest

import raftline
from cluster import REPO

N_JOBS = 1000
KILL_AFTER = 300  # handler runs before the leader is killed
BACKLOG = 500  # ready jobs before the worker starts
NODE_CLIENT = REPO / "clients" / "node"
NODE_SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "node_submit.js")


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.runs = []  # (job id, attempt, token, payload)

    def handler(self, job):
        with self.lock:
            self.runs.append((job.id, job.attempt, job.token, job.payload))
        time.sleep(random.random() * 0.003)
        return "ok"

    def count(self):
        with self.lock:
            return len(self.runs)


def queue_info(client, queue):
    try:
        return client.get_queue(queue, stale=True)
    except raftline.NotFound:
        return {"ready": 0}


def run_exactly_once(cluster, start_submitter):
    """`start_submitter(queue)` starts submitting N_JOBS jobs (payload job-<i>) in the
    background and returns a function that waits for it and returns the job ids."""
    client = raftline.Client(cluster.addrs, token=cluster.token, ca=cluster.ca)
    queue = f"xl-{uuid.uuid4().hex[:8]}"
    rec = Recorder()
    t0 = time.monotonic()
    finish_submitter = start_submitter(queue)
    # Let a backlog build up first, so the kill comes while jobs are ready and more are coming.
    stop_at = time.monotonic() + 120
    while queue_info(client, queue)["ready"] < BACKLOG:
        assert time.monotonic() < stop_at, "submitter too slow"
        time.sleep(0.02)
    worker = raftline.Worker(client, [queue], rec.handler, concurrency=8, ttl=5, poll_wait=1).start()
    try:
        while rec.count() < KILL_AFTER:
            assert time.monotonic() < stop_at, f"only {rec.count()} jobs ran"
            time.sleep(0.01)
        leader = cluster.wait_leader()
        pending = client.get_queue(queue, stale=True)
        cluster.kill9(leader)
        killed_at = rec.count()
        print(f"\nkilled leader node {leader} after {killed_at} handler runs; queue then: "
              f"ready={pending['ready']} leased={pending['leased']} succeeded={pending['succeeded']}")
        new_leader = cluster.wait_leader(exclude=leader)
        ids = finish_submitter()
        assert len(ids) == N_JOBS and len(set(ids)) == N_JOBS
        while client.get_queue(queue)["succeeded"] < N_JOBS:
            assert time.monotonic() < stop_at, f"{client.get_queue(queue)} after 120 s"
            time.sleep(0.1)
    finally:
        assert worker.stop(30), "worker did not stop"
    elapsed = time.monotonic() - t0

    jobs = list(client.list_jobs(queue=queue, page_size=1000))
    assert sorted(j["id"] for j in jobs) == sorted(ids)
    assert {j["payload"] for j in jobs} == {f"job-{i}".encode() for i in range(N_JOBS)}
    runs_by_job = collections.defaultdict(list)
    for jid, attempt, token, payload in rec.runs:
        runs_by_job[jid].append((attempt, token))
    bad = []
    for j in jobs:
        succeeded = [a for a in j["attempts"] if a["result"] == "succeeded"]
        tokens = {a["token"] for a in j["attempts"]}
        ran = runs_by_job.get(j["id"], [])
        if j["state"] != "succeeded" or len(succeeded) != 1 or not ran or any(t not in tokens for _, t in ran):
            bad.append((j["id"], j["state"], [(a["token"], a["result"], a["error_class"]) for a in j["attempts"]], ran))
    assert not bad, f"{len(bad)} jobs not succeeded exactly once, e.g. {bad[:5]}"
    reruns = {jid: r for jid, r in runs_by_job.items() if len(r) > 1}
    stats = worker.stats.as_dict()
    # Every job's success was reported and settled once by this worker.
    assert stats["succeeded"] == N_JOBS, stats
    print(f"{N_JOBS} jobs succeeded exactly once in {elapsed:.1f} s; handler runs {len(rec.runs)}, "
          f"jobs run more than once {len(reruns)} {dict(list(reruns.items())[:5])}; "
          f"leader {leader} killed after {killed_at} runs, new leader {new_leader}; worker stats {stats}")
    client.close()


def test_node_submits_python_worker_runs_leader_killed(own_cluster):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    assert NODE_CLIENT.is_dir(), f"the Node client is not at {NODE_CLIENT}"
    env = {**os.environ, "RAFTLINE_ADDRS": ",".join(own_cluster.addrs), "RAFTLINE_TOKEN": own_cluster.token}
    if own_cluster.ca:
        env["RAFTLINE_CA_FILE"] = own_cluster.ca

    def start(queue):
        proc = subprocess.Popen([node, NODE_SCRIPT, str(NODE_CLIENT), queue, str(N_JOBS)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def finish():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"node submitter exited {proc.returncode}:\n{err[-3000:]}"
            return [int(i) for i in json.loads(out.strip().splitlines()[-1])["ids"]]

        return finish

    run_exactly_once(own_cluster, start)


def test_python_submits_python_worker_runs_leader_killed(own_cluster):
    def start(queue):
        client = raftline.Client(own_cluster.addrs, token=own_cluster.token, ca=own_cluster.ca)
        ids = [None] * N_JOBS
        errors = []
        counter = iter(range(N_JOBS))
        lock = threading.Lock()

        def lane():
            try:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    ids[i] = client.submit(queue, payload=f"job-{i}")
            except Exception as e:  # reported by finish()
                errors.append(e)

        lanes = [threading.Thread(target=lane) for _ in range(4)]
        for t in lanes:
            t.start()

        def finish():
            for t in lanes:
                t.join(120)
            assert not errors, errors
            client.close()
            return ids

        return finish

    run_exactly_once(own_cluster, start)
