"""The operator as a real process against the local control plane, one per test namespace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Cluster


class OperatorProcess:
    """``headwater operator -n NAMESPACE`` in a subprocess that a test can kill and restart."""

    def __init__(self, cluster: Cluster, namespace: str, log_path: Path, **settings: str) -> None:
        self.cluster, self.namespace, self.log_path = cluster, namespace, log_path
        self.env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "HEADWATER_RESYNC_SECONDS": "5",
                    "HEADWATER_SCHEDULE_INTERVAL_SECONDS": "1", "HEADWATER_METRICS_PORT": "0",
                    "HEADWATER_API_PORT": "0", **settings}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        headwater = Path(sys.executable).parent / "headwater"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(headwater), "operator", "-n", self.namespace],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no cleanup, as in a crash or an OOM kill."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
             ) -> Iterator[OperatorProcess]:
    """A running operator watching the test's namespace; its log is printed when the test fails."""
    proc = OperatorProcess(cluster, namespace, tmp_path / "operator.log")
    proc.start()
    yield proc
    proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ({proc.log_path}) ---\n{proc.logs()[-20000:]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
