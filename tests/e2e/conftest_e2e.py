"""The operator as a subprocess, and waits and probes for the end-to-end tests (manifests: tests/manifests.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from helpers import Cluster, wait_for
from manifests import FAIL_LABEL, HOLD_LABEL


def wait_run(cluster: Cluster, namespace: str, name: str, timeout: float = 300) -> dict[str, Any]:
    """The run once it has reached a final phase."""
    def finished() -> dict[str, Any] | None:
        obj = cluster.get("pipelinerun", name, namespace)
        phase = (obj.get("status") or {}).get("phase")
        return obj if phase in ("Succeeded", "Failed", "Cancelled") else None

    return wait_for(finished, timeout=timeout, interval=0.5, message=f"PipelineRun {name} to finish")


def held_pod(cluster: Cluster, namespace: str, selector: str, other_than: tuple[str, ...] = (),
             timeout: float = 180) -> str:
    """The name of a live pod matching ``selector`` that is still held (manifests.held_pods), once one exists.

    Pods named in ``other_than`` are passed over; a released pod no longer carries the hold label.
    """
    def find() -> str | None:
        pods = cluster.list("pods", namespace, f"{selector},{HOLD_LABEL}=true")
        names = sorted(p["metadata"]["name"] for p in pods
                       if not p["metadata"].get("deletionTimestamp") and p["metadata"]["name"] not in other_than)
        return names[0] if names else None

    return wait_for(find, timeout=timeout, interval=0.5, message=f"a held pod matching {selector}")


def release(cluster: Cluster, namespace: str, pod: str, *, fail: bool = False) -> None:
    """Let a held pod finish: it succeeds, or with ``fail`` it exits 1 (one patch, so never the other way)."""
    labels = [f"{HOLD_LABEL}-", *([f"{FAIL_LABEL}=true"] if fail else [])]
    cluster.kubectl("-n", namespace, "label", "pod", pod, *labels, "--overwrite")


class OperatorProcess:
    """``headwater operator -n NAMESPACE [-n MORE ...]`` in a subprocess that a test can kill and restart."""

    def __init__(self, cluster: Cluster, namespace: str, log_path: Path, *more_namespaces: str,
                 **settings: str) -> None:
        self.cluster, self.namespace, self.log_path = cluster, namespace, log_path
        self.namespaces = [namespace, *more_namespaces]
        self.env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "HEADWATER_RESYNC_SECONDS": "5",
                    "HEADWATER_SCHEDULE_INTERVAL_SECONDS": "1", "HEADWATER_METRICS_PORT": "0",
                    "HEADWATER_API_PORT": "0", **settings}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        headwater = Path(sys.executable).parent / "headwater"
        with self.log_path.open("ab") as log:
            scopes = [arg for ns in self.namespaces for arg in ("-n", ns)]
            self.proc = subprocess.Popen([str(headwater), "operator", *scopes],
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """The operator's /metrics as {series: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}
