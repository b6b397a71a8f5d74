"""Manifest builders and waits for the operator's end-to-end tests."""

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

API = "headwater.dev/v1alpha1"


def step(step_id: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "container", "image": "busybox", "dependsOn": list(deps), **fields}


def fail_label() -> dict[str, Any]:
    """podMetadata that makes every attempt of a step fail on the simulated nodes."""
    return {"labels": {"headwater.dev/test-fail": "true"}}


def pipeline(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"owner": "data-team@example.com", "steps": steps, **spec}}


def run(name: str, pipeline_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "PipelineRun", "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": pipeline_name}, **spec}}


def wait_run(cluster: Cluster, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    """The run once it has reached a final phase."""
    def finished() -> dict[str, Any] | None:
        obj = cluster.get("pipelinerun", name, namespace)
        phase = (obj.get("status") or {}).get("phase")
        return obj if phase in ("Succeeded", "Failed", "Cancelled") else None

    return wait_for(finished, timeout=timeout, interval=0.5, message=f"PipelineRun {name} to finish")


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
