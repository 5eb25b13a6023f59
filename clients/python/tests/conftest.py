import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The tests run against this checkout's source (src/), even when an older copy is installed.
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from cluster import Cluster, binary  # noqa: E402


def _need_binary():
    path = binary()
    if not os.path.exists(path):
        if os.environ.get("RAFTLINE_BIN"):
            pytest.fail(f"RAFTLINE_BIN={os.environ['RAFTLINE_BIN']}: no such file")
        pytest.skip(f"no raftline binary at {path} (build it, or set RAFTLINE_BIN)")


@pytest.fixture(scope="session")
def cluster():
    """One 3-node cluster for the whole session (tests that kill nodes use `own_cluster`)."""
    _need_binary()
    c = Cluster(3)
    try:
        c.start()
    except Exception:
        c.stop()
        raise
    yield c
    c.stop()
    c.cleanup()


@pytest.fixture
def own_cluster():
    """A fresh 3-node cluster for one test (it may kill nodes)."""
    _need_binary()
    c = Cluster(3)
    try:
        c.start()
    except Exception:
        c.stop()
        raise
    yield c
    c.stop()
    c.cleanup()


@pytest.fixture
def client(cluster):
    import raftline

    c = raftline.Client(cluster.addrs, token=cluster.token, ca=cluster.ca)
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for name in ("own_cluster", "cluster", "tls_cluster"):
            c = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(c, Cluster):
                rep.sections.append((f"raftline node logs ({name})", c.tails()))
