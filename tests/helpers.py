"""Shared test helpers: polling, the local cluster, the throwaway PostgreSQL server and an HTTP receiver."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
HACK = ROOT / "hack"
LOCKS = Path(os.environ.get("HEADWATER_CACHE") or Path.home() / ".cache" / "headwater") / "locks"
_held_locks: list[int] = []  # open for the life of the test process: the kernel releases them when it ends


def try_lock(name: str) -> bool:
    """Take the machine-wide lock ``name`` for the rest of this process; False when another process holds it."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCKS / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _held_locks.append(fd)
    return True


@contextmanager
def machine_lock(name: str, timeout: float) -> Iterator[None]:
    """Hold the machine-wide lock ``name`` (waiting up to ``timeout`` seconds for another process to let go)."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCKS / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        def taken() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
        wait_for(taken, timeout=timeout, interval=2.0, message=f"another test session to release {name}")
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def session_cluster_name() -> str:
    """The test session's local cluster: ``HEADWATER_TEST_CLUSTER``, else ``headwater-test`` unless another test
    session on this machine is using it (a shared cluster would be stopped under one by the other), else one
    of this session's own."""
    chosen = os.environ.get("HEADWATER_TEST_CLUSTER")
    if chosen:
        return chosen
    return "headwater-test" if try_lock("cluster-headwater-test") else f"headwater-test-{os.getpid()}"


CLUSTER_NAME = session_cluster_name()
"""The local cluster of the test session (its kwokctl name)."""

T = TypeVar("T")
P = TypeVar("P")


class WaitTimeoutError(AssertionError):
    """A condition polled by :func:`wait_for` did not hold in time."""


def wait_for(
    condition: Callable[[], T | None],
    timeout: float = 120.0,
    interval: float = 0.2,
    message: str = "condition",
) -> T:
    """Poll ``condition`` until it returns a truthy value and return that value.

    Exceptions raised by the condition count as "not yet"; the last one is
    reported if time runs out.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except Exception as exc:  # the condition is re-tried until the deadline
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WaitTimeoutError(f"timed out after {timeout}s waiting for {message}{detail}")
        time.sleep(interval)


def _tool(name: str) -> str:
    """Path of a tool built by hack/build-tools.sh (kubectl of the cluster's version, helm, ...)."""
    out = subprocess.run(
        ["bash", "-c", f"source {HACK}/versions.sh && echo \"$(k8s_bin_dir)\" \"$(helm_bin_dir)\""],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    for directory in out:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(f"{name} is not built: run hack/build-tools.sh")


@dataclass
class Cluster:
    """A running Kubernetes cluster reached through ``kubeconfig``."""

    kubeconfig: str
    kubectl_path: str = field(default_factory=lambda: _tool("kubectl"))

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise with its stderr when ``check`` and it fails."""
        proc = subprocess.run(
            [self.kubectl_path, "--kubeconfig", self.kubeconfig, *args],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        """Server-side apply of manifest dicts."""
        ns = ["-n", namespace] if namespace else []
        self.kubectl(*ns, "apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = ["-n", namespace] if namespace else []
        out = self.kubectl(*ns, "get", kind, name, "-o", "json").stdout
        return yaml.safe_load(out)  # JSON is YAML

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        sel = ["-l", selector] if selector else []
        out = self.kubectl("-n", namespace, "get", kind, *sel, "-o", "json").stdout
        items: list[dict[str, Any]] = yaml.safe_load(out)["items"]
        return items


def start_cluster(name: str) -> Cluster:
    """Bring up (or reuse) the local control plane named ``name``."""
    proc = subprocess.run(
        ["bash", str(HACK / "cluster.sh"), "up", name], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"hack/cluster.sh up {name} failed:\n{proc.stderr[-4000:]}")
    return Cluster(kubeconfig=proc.stdout.strip().splitlines()[-1])


def stop_cluster(name: str) -> None:
    subprocess.run(["bash", str(HACK / "cluster.sh"), "down", name], capture_output=True, check=False)


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL server in a temporary directory (see hack/postgres.sh)."""

    directory: Path
    url: str = ""

    def start(self) -> str:
        proc = subprocess.run(
            ["bash", str(HACK / "postgres.sh"), "start", str(self.directory)],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"could not start PostgreSQL: {proc.stderr}")
        self.url = proc.stdout.strip()
        return self.url

    def stop(self) -> None:
        """Stop the server and keep its data (start() brings it back on the same URL)."""
        subprocess.run(["bash", str(HACK / "postgres.sh"), "stop", str(self.directory)], check=True)

    def destroy(self) -> None:
        subprocess.run(["bash", str(HACK / "postgres.sh"), "destroy", str(self.directory)], check=True)


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """Start a PostgreSQL server for the duration of the block; stop it and remove its files after."""
    parent = Path(tempfile.mkdtemp(prefix="headwater-pg-"))
    os.chmod(parent, 0o755)  # the server may run as the 'postgres' user
    server = ThrowawayPostgres(parent / "pg")
    try:
        server.start()
        yield server
    finally:
        server.destroy()
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards."""
    name = f"hw_lineage_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Receiver(ThreadingHTTPServer):
    """A loopback HTTP endpoint that keeps every JSON body it accepts (``answer``, 201 unless changed)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.refused = 0
        self.answer = 201
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = outer.answer
                if answer < 300:
                    outer.events.append(json.loads(body))
                else:
                    outer.refused += 1
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A :class:`Receiver` serving from a background thread for the duration of the block."""
    server = Receiver()
    # a short poll, because shutdown() waits for the serving loop's next look
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def paced(items: Sequence[P], seconds: float) -> Iterator[P]:
    """Yield ``items`` spread evenly over ``seconds``: the pace of a load a test puts on the system under
    test (not a wait for a condition: use :func:`wait_for` for that)."""
    start = time.monotonic()
    for i, item in enumerate(items):
        delay = start + i * seconds / max(len(items), 1) - time.monotonic()
        if delay > 0:
            threading.Event().wait(delay)
        yield item

