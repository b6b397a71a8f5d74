"""The local cluster's control-plane processes, for tests that kill, restart or pause one of them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from helpers import CLUSTER_NAME, HACK, Cluster, wait_for

_SAFE_PAUSE_SECONDS = 7.0
"""Paused longer, the controller-manager or the scheduler may have missed its 10 s lease renewal deadline."""


class ControlPlane:
    """The local cluster's components: processes that ``kwokctl --runtime binary`` started and keeps pid files of.

    A component is killed with SIGKILL and started again with its own command line from ``kwok.yaml``,
    as a supervisor (the kubelet of a static pod, systemd) would. ``kwokctl start cluster`` cannot do
    it: a killed process stays a zombie here, and it takes that for a running one.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        cache = subprocess.run(["bash", "-c", f"source {HACK}/versions.sh && echo $HEADWATER_CACHE"],
                               capture_output=True, text=True, check=True).stdout.strip()
        self.workdir = Path(os.environ.get("KWOK_WORKDIR", f"{cache}/kwok-workdir")) / "clusters" / CLUSTER_NAME

    def available(self) -> bool:
        return (self.workdir / "kwok.yaml").exists() and not os.environ.get("HEADWATER_TEST_KUBECONFIG")

    def _pid_file(self, name: str) -> Path:
        return self.workdir / "pids" / f"{name}.pid"

    def alive(self, name: str) -> bool:
        try:
            stat = Path(f"/proc/{int(self._pid_file(name).read_text())}/stat").read_text()
        except (OSError, ValueError):
            return False
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"

    def kill(self, name: str) -> None:
        os.kill(int(self._pid_file(name).read_text()), signal.SIGKILL)
        wait_for(lambda: not self.alive(name), timeout=30, message=f"{name} to die")

    def start(self, name: str) -> None:
        config = next(d for d in yaml.safe_load_all((self.workdir / "kwok.yaml").read_text()) if d)
        component = next(c for c in config["components"] if c["name"] == name)
        log = self.workdir / "logs" / f"{name}.log"
        # started in the background by a shell that exits at once, so no test process is its parent
        pid = subprocess.run(
            ["bash", "-c", 'cd "$1" && shift && exec 0</dev/null && { setsid "$@" >>"$LOG" 2>&1 & echo $!; }', "-",
             component.get("workDir") or str(self.workdir), component["binary"], *component.get("args", [])],
            env={**os.environ, "LOG": str(log)}, capture_output=True, text=True, check=True).stdout.strip()
        self._pid_file(name).write_text(pid)

    def ready(self) -> bool:
        return self.cluster.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0

    def heal(self) -> None:
        """Start again whatever died meanwhile (the controller-manager and the scheduler exit when they
        cannot renew their leader lease for 10 s)."""
        for name in ("kube-controller-manager", "kube-scheduler", "kwok-controller"):
            if not self.alive(name):
                self.start(name)

    @contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """``name`` stopped (SIGSTOP) for the block, then continued: a component far behind its queue.

        Keep the block well under 10 s for the controller-manager and the scheduler: they exit when they
        cannot renew their leader lease for that long.
        """
        pid = int(self._pid_file(name).read_text())
        stopped = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
            if time.monotonic() - stopped > _SAFE_PAUSE_SECONDS:
                # it may have lost its lease and exit now: start it again, so later tests have it
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: not self.alive(name), timeout=15, interval=0.5, message=f"{name} to exit")
                self.heal()
