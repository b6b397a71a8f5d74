"""The real tier's cluster: the local control plane with a real node, images imported, the chart installed.

Everything here follows docs/install.md, with buildah and ctr (hack/images.sh) where a user has docker and
kind: build the image, load it into the node, `helm install` with the image's repository, tag and
``pullPolicy: Never``. The node is hack/node.sh's (containerd, kubelet, kube-proxy, CoreDNS).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml

from helpers import HACK, ROOT, Cluster, wait_for

CHART = ROOT / "charts" / "headwater"
RELEASE = "headwater"
RELEASE_NAMESPACE = "headwater-system"
REAL_CLUSTER = os.environ.get("HEADWATER_REAL_CLUSTER", "headwater-real")
FINAL_PHASES = ("Succeeded", "Failed", "Cancelled")


def hack_value(expression: str) -> str:
    """A value the hack/ scripts compute (paths under the cache, the node's network)."""
    script = f'source "{HACK}/versions.sh" && source "{HACK}/node-env.sh" && echo {expression}'
    return subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout.strip()


def sh(*args: str, timeout: float = 600) -> str:
    """Run a command; fail with the end of its stderr."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


@dataclass
class RealCluster:
    """The real tier's cluster: kubectl and helm against it, and its node's containerd."""

    name: str
    cluster: Cluster

    @property
    def node_name(self) -> str:
        return f"{self.name}-node"

    @property
    def state_dir(self) -> Path:
        return Path(hack_value(f'"$(node_state_dir {self.name})"'))

    @property
    def containerd_socket(self) -> str:
        return str(self.state_dir / "containerd" / "containerd.sock")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=timeout)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.cluster.get(kind, name, namespace)

    def helm(self, *args: str, timeout: float = 600) -> str:
        helm = Path(hack_value('"$(helm_bin_dir)"')) / "helm"
        return sh(str(helm), "--kubeconfig", self.cluster.kubeconfig, *args, timeout=timeout)

    def load_images(self, *images: str) -> dict[str, str]:
        """Build (when missing) and load images into the node, as `kind load docker-image` would."""
        out = sh("bash", str(HACK / "images.sh"), "import", self.containerd_socket, *images, timeout=3600)
        refs = dict(line.split()[:2] for line in out.splitlines() if line.strip())
        assert set(images) <= set(refs), f"images.sh imported {refs}, wanted {images}"
        return refs


@dataclass
class Release:
    """The chart installed by Helm from the locally built images."""

    real: RealCluster
    images: dict[str, str]
    values_file: Path
    name: str = RELEASE
    namespace: str = RELEASE_NAMESPACE

    def operator_logs(self) -> str:
        proc = self.real.kubectl("-n", self.namespace, "logs", f"deployment/{self.name}", "--tail=400", check=False)
        return proc.stdout + proc.stderr

    def database_url(self) -> str:
        """The bundled PostgreSQL's URL, as the chart generated it (host: the Service's DNS name)."""
        return secret_value(self.real, self.namespace, f"{self.name}-postgresql", "database-url")

    def local_database_url(self, port: int) -> str:
        """The same database through a port-forward to 127.0.0.1:``port``."""
        host = f"@{self.name}-postgresql.{self.namespace}.svc:5432/"
        url = self.database_url()
        assert host in url, url
        return url.replace(host, f"@127.0.0.1:{port}/")


def start_real_cluster(name: str) -> RealCluster:
    proc = subprocess.run(["bash", str(HACK / "cluster.sh"), "up", "--real-node", name],
                          capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"hack/cluster.sh up --real-node {name} failed:\n{proc.stderr[-6000:]}")
    return RealCluster(name=name, cluster=Cluster(kubeconfig=proc.stdout.strip().splitlines()[-1]))


def stop_real_cluster(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(HACK / "cluster.sh"), "down", name],
                          capture_output=True, text=True, check=False, timeout=600)


def leftovers() -> str:
    """What a real node left on this machine (hack/node.sh leftovers); empty when nothing."""
    proc = subprocess.run(["bash", str(HACK / "node.sh"), "leftovers"], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.strip()


def chart_values(images: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """The chart's values for locally loaded images (docs/install.md), on the real node."""
    def split(ref: str) -> tuple[str, str]:
        repository, _, tag = ref.rpartition(":")
        return repository, tag

    repository, tag = split(images["headwater"])
    pg_repository, pg_tag = split(images["postgres"])
    on_real_node = {hack_value("$NODE_LABEL_KEY"): hack_value("$NODE_LABEL_VALUE")}
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "postgresql": {
            "image": {"repository": pg_repository, "tag": pg_tag, "pullPolicy": "Never"},
            "persistence": {"size": "1Gi"},
            "nodeSelector": on_real_node,
        },
        "nodeSelector": on_real_node,
        "operator": {"resyncSeconds": 10, "recordRescanSeconds": 5,
                     # freshness checked every 5 s (default 30), so that a missed deadline shows soon
                     "extraEnv": [{"name": "HEADWATER_FRESHNESS_INTERVAL_SECONDS", "value": "5"}]},
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


def postgres_volume(real: RealCluster, size: str = "1Gi") -> dict[str, Any]:
    """A PersistentVolume on the node for the bundled PostgreSQL's claim (the cluster has no provisioner).

    A hostPath directory owned by the image's postgres user (999): fsGroup does not apply to hostPath.
    """
    path = real.state_dir / "volumes" / "postgresql"
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 999, 999)
    path.chmod(0o700)
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"{real.name}-postgresql"},
        "spec": {
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "claimRef": {"namespace": RELEASE_NAMESPACE, "name": f"data-{RELEASE}-postgresql-0"},
            "hostPath": {"path": str(path), "type": "Directory"},
        },
    }


def secret_value(real: RealCluster, namespace: str, name: str, key: str) -> str:
    data = real.get("secret", name, namespace)["data"]
    return base64.b64decode(data[key]).decode()


def wait_run(real: RealCluster, namespace: str, name: str, timeout: float = 240) -> dict[str, Any]:
    """The PipelineRun once it reached a final phase."""
    def finished() -> dict[str, Any] | None:
        obj = real.get("pipelinerun", name, namespace)
        return obj if (obj.get("status") or {}).get("phase") in FINAL_PHASES else None
    return wait_for(finished, timeout=timeout, interval=1, message=f"PipelineRun {namespace}/{name} to finish")


def steps_by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run["status"].get("steps", [])}


def step_pods(real: RealCluster, namespace: str, run: str) -> list[dict[str, Any]]:
    out = real.kubectl("-n", namespace, "get", "pods", "-l", f"headwater.dev/run={run}", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def port_forward(real: RealCluster, namespace: str, target: str, port: int) -> Iterator[int]:
    """`kubectl port-forward` to ``target`` (e.g. svc/headwater-api); yields the local port."""
    local = free_port()
    proc = subprocess.Popen(
        [real.cluster.kubectl_path, "--kubeconfig", real.cluster.kubeconfig, "-n", namespace, "port-forward",
         target, f"{local}:{port}", "--address", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def listening() -> bool:
            assert proc.poll() is None, f"kubectl port-forward {target} exited with {proc.returncode}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", local)) == 0
        wait_for(listening, timeout=30, message=f"kubectl port-forward {target}")
        yield local
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def bundled_database(release: Release) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A connection to the chart's PostgreSQL from this machine, through `kubectl port-forward`."""
    with port_forward(release.real, release.namespace, f"svc/{release.name}-postgresql", 5432) as port, \
            psycopg.connect(release.local_database_url(port)) as conn:
        yield conn


def manifest(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def elapsed(start: float) -> str:
    return f"{time.monotonic() - start:.1f}s"
