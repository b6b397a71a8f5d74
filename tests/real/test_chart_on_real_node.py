"""The chart installed by Helm from the locally built images: the operator runs in-cluster on the real node."""

from __future__ import annotations

import json
import urllib.request

import pytest

from real_support import Release, port_forward

# The first test also waits for the node to come up, which on a fresh machine builds kubelet, kube-proxy,
# CoreDNS and the images (about 15-20 minutes on 2 cores): more than the default per-test timeout.
pytestmark = [pytest.mark.real, pytest.mark.timeout(2700)]


def test_operator_and_postgresql_run_on_the_real_node_from_the_local_images(release: Release) -> None:
    real = release.real
    pods = json.loads(real.kubectl("-n", release.namespace, "get", "pods", "-o", "json").stdout)["items"]
    by_component = {p["metadata"]["labels"].get("app.kubernetes.io/component", "operator"): p for p in pods}
    operator, postgresql = by_component["operator"], by_component["postgresql"]
    for pod in (operator, postgresql):
        assert pod["spec"]["nodeName"] == real.node_name
        assert pod["status"]["phase"] == "Running"
        assert all(c["ready"] for c in pod["status"]["containerStatuses"]), pod["status"]["containerStatuses"]
    assert operator["spec"]["containers"][0]["image"] == release.images["headwater"]
    assert postgresql["spec"]["containers"][0]["image"] == release.images["postgres"]
    # In-cluster, as the chart's ServiceAccount: its token is what the operator authenticates with.
    assert operator["spec"]["serviceAccountName"] == release.name
    node = real.get("node", real.node_name)
    runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"]
    assert runtime.startswith("containerd://"), runtime


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_lineage_api_and_metrics_answer_through_their_services(release: Release) -> None:
    real = release.real
    with port_forward(real, release.namespace, f"svc/{release.name}-api", 8080) as port:
        status, _ = http_get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200
    with port_forward(real, release.namespace, f"svc/{release.name}-metrics", 9090) as port:
        status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert "headwater_" in text
