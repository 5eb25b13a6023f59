"""A real raftline cluster for the tests: N nodes started from the binary at $RAFTLINE_BIN.

Every port comes from the OS (bind port 0, read it, close), so parallel runs don't clash.
Waits are on conditions with deadlines, never bare sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENT_DIR = HERE.parent
REPO = CLIENT_DIR.parent.parent


def binary() -> str:
    """The raftline binary: $RAFTLINE_BIN, else ../../target/debug/raftline from the client dir."""
    path = os.environ.get("RAFTLINE_BIN") or str(REPO / "target" / "debug" / "raftline")
    if not os.path.isabs(path) and not os.path.exists(path):
        # Relative to the repository root, as CI gives it (target/debug/raftline).
        cand = REPO / path
        if cand.exists():
            path = str(cand)
    return str(Path(path).resolve())


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Cluster:
    def __init__(self, nodes: int = 3, tls: bool = False, root: str | None = None):
        self.n = nodes
        self.tls = tls
        self.dir = Path(root or tempfile.mkdtemp(prefix="raftline-py-"))
        self.bin = binary()
        ports = free_ports(3 * nodes)
        self.nodes = {}
        for i in range(1, nodes + 1):
            raft, api, http = ports[3 * (i - 1) : 3 * i]
            self.nodes[i] = {
                "raft": f"127.0.0.1:{raft}",
                "api": f"127.0.0.1:{api}",
                "http": f"127.0.0.1:{http}",
            }
        self.procs: dict[int, subprocess.Popen] = {}
        self.config = self.dir / "cluster.toml"
        self._write_config()
        self.ca = str(self.dir / "certs" / "ca.pem") if tls else None
        if tls:
            subprocess.run(
                [self.bin, "certs", "init", "--config", str(self.config), "--dir", str(self.dir / "certs")],
                check=True,
                capture_output=True,
            )
        self.token: str | None = None

    def _write_config(self) -> None:
        lines = [
            "[cluster]",
            'name = "pytest"',
            f'data_dir = "{self.dir / "data"}"',
            "heartbeat_ms = 50",
            "election_timeout_min_ms = 200",
            "election_timeout_max_ms = 400",
            "request_timeout_ms = 5000",
            "workers_min = 0",
            "workers_max = 0",
            "",
        ]
        if self.tls:
            lines += [
                "[tls]",
                f'ca_file = "{self.dir / "certs" / "ca.pem"}"',
                f'cert_file = "{self.dir / "certs" / "node-{id}.pem"}"',
                f'key_file = "{self.dir / "certs" / "node-{id}-key.pem"}"',
                "",
            ]
        for i, a in self.nodes.items():
            lines += [
                "[[node]]",
                f"id = {i}",
                f'raft_addr = "{a["raft"]}"',
                f'api_addr = "{a["api"]}"',
                f'http_addr = "{a["http"]}"',
                "",
            ]
        self.config.write_text("\n".join(lines))

    # ---- addresses -------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url(self, i: int) -> str:
        return f"{self.scheme}://{self.nodes[i]['http']}"

    @property
    def addrs(self) -> list[str]:
        return [self.url(i) for i in self.nodes]

    def log(self, i: int) -> Path:
        return self.dir / f"node-{i}.log"

    # ---- processes ---------------------------------------------------------------------------
    def start_node(self, i: int) -> None:
        logf = open(self.log(i), "ab")
        self.procs[i] = subprocess.Popen(
            [self.bin, "node", "--config", str(self.config), "--id", str(i)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        logf.close()

    def start(self, timeout: float = 60.0) -> "Cluster":
        if not os.path.exists(self.bin):
            raise RuntimeError(f"raftline binary not found at {self.bin} (set RAFTLINE_BIN)")
        for i in self.nodes:
            self.start_node(i)
        deadline = time.monotonic() + timeout
        tokfile = self.dir / "data" / "node-1" / "bootstrap-token"
        while not tokfile.exists() or not tokfile.read_text().strip():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("no bootstrap token\n" + self.tails())
            time.sleep(0.05)
        self.token = tokfile.read_text().strip()
        self.wait_ready(deadline)
        self.wait_leader(deadline=deadline)
        return self

    def _check_alive(self) -> None:
        for i, p in self.procs.items():
            if p.poll() is not None and i not in self._killed:
                raise RuntimeError(f"node {i} exited with {p.returncode}\n" + self.tails())

    _killed: set = set()

    def _ctx(self):
        return ssl.create_default_context(cafile=self.ca) if self.tls else None

    def http_get(self, i: int, path: str, auth: bool = True, timeout: float = 2.0):
        req = urllib.request.Request(self.url(i) + path)
        if auth and self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ctx()) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, deadline: float) -> None:
        pending = set(i for i in self.nodes if i not in self._killed)
        while pending:
            for i in list(pending):
                try:
                    status, _ = self.http_get(i, "/ready", auth=False, timeout=1.0)
                    if status == 200:
                        pending.discard(i)
                except OSError:
                    pass
            if not pending:
                break
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes {sorted(pending)} not ready\n" + self.tails())
            time.sleep(0.05)

    def status(self, i: int) -> dict | None:
        try:
            code, body = self.http_get(i, "/v1/cluster/status", timeout=1.0)
        except OSError:
            return None
        return json.loads(body) if code == 200 else None

    def leader(self, exclude: int | None = None) -> int | None:
        """The leader id when every live node agrees on one (not `exclude`)."""
        seen = set()
        for i in self.nodes:
            if i in self._killed:
                continue
            st = self.status(i)
            if not st or not st.get("leader"):
                return None
            seen.add(int(st["leader"]))
        if len(seen) == 1:
            lid = seen.pop()
            if lid != exclude and lid not in self._killed:
                return lid
        return None

    def wait_leader(self, exclude: int | None = None, deadline: float | None = None) -> int:
        deadline = deadline or time.monotonic() + 30
        while True:
            lid = self.leader(exclude)
            if lid is not None:
                return lid
            if time.monotonic() > deadline:
                raise TimeoutError("no leader\n" + self.tails())
            time.sleep(0.05)

    def kill9(self, i: int) -> None:
        self._killed = set(self._killed) | {i}
        p = self.procs[i]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        self._killed = set(self._killed) - {i}
        self.start_node(i)
        self.wait_ready(time.monotonic() + timeout)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for i, p in self.procs.items():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self) -> None:
        """Removes the cluster's temp dir (kept when RAFTLINE_KEEP_TEST_DATA is set)."""
        if not os.environ.get("RAFTLINE_KEEP_TEST_DATA"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def tails(self, lines: int = 40) -> str:
        out = []
        for i in self.nodes:
            try:
                text = self.log(i).read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            out.append(f"--- node {i} log tail ({self.log(i)}) ---")
            out.extend(text)
        return "\n".join(out)
