"""TLS: a cluster with [tls] set (certificates from `raftline certs init`); the client checks
each node against the cluster's CA file."""

import pytest

import raftline
from cluster import Cluster


@pytest.fixture(scope="module")
def tls_cluster():
    from conftest import _need_binary

    _need_binary()
    c = Cluster(3, tls=True)
    try:
        c.start()
    except Exception:
        c.stop()
        raise
    yield c
    c.stop()
    c.cleanup()


def test_tls_with_ca_file(tls_cluster):
    c = tls_cluster
    # host:port addresses speak TLS because a CA file is given.
    bare = [u.split("://", 1)[1] for u in c.addrs]
    client = raftline.Client(bare, token=c.token, ca=c.ca)
    jid = client.submit("tls", b"secret")
    assert client.get_job(jid)["payload"] == b"secret"

    ran = []
    with raftline.Worker(client, "tls", lambda job: ran.append(job.id), poll_wait=1):
        assert client.wait(jid, timeout=20)["state"] == "succeeded"
    assert ran == [jid]


def test_tls_without_the_ca_is_refused(tls_cluster):
    c = tls_cluster
    client = raftline.Client(c.addrs, token=c.token, deadline=0.5)
    with pytest.raises(raftline.Unavailable) as e:
        client.get_job(1)
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)


def test_plain_http_to_a_tls_node_fails(tls_cluster):
    c = tls_cluster
    plain = ["http://" + u.split("://", 1)[1] for u in c.addrs]
    client = raftline.Client(plain, token=c.token, deadline=0.5)
    with pytest.raises(raftline.Unavailable):
        client.get_job(1)
