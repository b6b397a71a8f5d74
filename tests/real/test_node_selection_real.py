"""Simulated nodes beside the real one: a pod lands on a simulated node only when it tolerates its taint."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
import yaml

from helpers import HACK, wait_for
from real_support import REAL_CLUSTER, RealCluster

# The first test also waits for the node to come up, which on a fresh machine builds kubelet, kube-proxy,
# CoreDNS and the images (about 15-20 minutes on 2 cores): more than the default per-test timeout.
pytestmark = [pytest.mark.real, pytest.mark.timeout(2700)]


def pod(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image, "command": ["true"]}],
                     **spec}}


def scheduled_node(real: RealCluster, namespace: str, name: str) -> str:
    def node() -> str | None:
        node_name: str | None = real.get("pod", name, namespace)["spec"].get("nodeName")
        return node_name
    return wait_for(node, timeout=60, message=f"pod {name} to be scheduled")


def test_simulated_nodes_take_only_pods_that_tolerate_them(real_cluster: RealCluster, images: dict[str, str]
                                                           ) -> None:
    real = real_cluster
    # What HEADWATER_CLUSTER_NODES does at creation, on the running cluster: simulated nodes, tainted.
    proc = subprocess.run(["bash", str(HACK / "cluster.sh"), "up", "--real-node", REAL_CLUSTER],
                          env={**os.environ, "HEADWATER_CLUSTER_NODES": "3"}, capture_output=True, text=True,
                          check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    namespace = "node-selection"
    try:
        nodes = json.loads(real.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        simulated = [n for n in nodes if n["metadata"]["name"] != real.node_name]
        assert simulated, [n["metadata"]["name"] for n in nodes]
        for node in simulated:
            assert {"key": "headwater.dev/simulated", "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
        real.kubectl("create", "namespace", namespace)
        wait_for(lambda: real.kubectl("-n", namespace, "get", "serviceaccount", "default", check=False)
                 .returncode == 0, timeout=60, message="the default ServiceAccount")
        fake = simulated[0]["metadata"]["name"]
        tolerating = pod("tolerating", images["headwater"],
                         nodeSelector={"kubernetes.io/hostname": fake},
                         tolerations=[{"key": "headwater.dev/simulated", "operator": "Exists"}])
        for p in (pod(f"plain-{i}", images["headwater"]) for i in range(3)):
            real.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(p))
        real.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(tolerating))
        for i in range(3):
            assert scheduled_node(real, namespace, f"plain-{i}") == real.node_name
        assert scheduled_node(real, namespace, "tolerating") == fake
    finally:
        real.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", check=False)
        for node in json.loads(real.kubectl("get", "nodes", "-o", "json").stdout)["items"]:
            if node["metadata"]["name"] != real.node_name:
                real.kubectl("delete", "node", node["metadata"]["name"], check=False)
