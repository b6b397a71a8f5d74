"""Upgrade and uninstall of the release, then the cluster's teardown; after every other real test."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import wait_for
from real_support import CHART, REAL_CLUSTER, RealCluster, Release, chart_values, leftovers, stop_real_cluster

# The first test also waits for the node to come up, which on a fresh machine builds kubelet, kube-proxy,
# CoreDNS and the images (about 15-20 minutes on 2 cores): more than the default per-test timeout.
pytestmark = [pytest.mark.real, pytest.mark.timeout(2700)]

RUNS_LAST = True


def operator_pod(release: Release) -> dict[str, object]:
    out = release.real.kubectl("-n", release.namespace, "get", "pods", "-l",
                               "app.kubernetes.io/component=operator", "-o", "json").stdout
    pods = [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    pod: dict[str, object] = pods[0]
    return pod


def test_helm_upgrade_with_changed_values_replaces_the_operator(release: Release) -> None:
    before = operator_pod(release)
    values = chart_values(release.images, operator={"resyncSeconds": 7, "extraEnv": [
        {"name": "HEADWATER_UPGRADED", "value": "yes"}]})
    release.values_file.write_text(yaml.safe_dump(values))
    release.real.helm("upgrade", release.name, str(CHART), "--namespace", release.namespace,
                      "-f", str(release.values_file), "--wait", "--timeout", "5m")
    after = operator_pod(release)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]  # type: ignore[index]
    env = {e["name"]: e.get("value") for e in after["spec"]["containers"][0]["env"]}  # type: ignore[index]
    assert env["HEADWATER_RESYNC_SECONDS"] == "7"
    assert env["HEADWATER_UPGRADED"] == "yes"
    history = release.real.helm("history", release.name, "--namespace", release.namespace, "-o", "json")
    assert [h["status"] for h in json.loads(history)][-1] == "deployed"


def test_helm_uninstall_removes_the_release_and_keeps_the_database_secret(release: Release) -> None:
    real = release.real
    real.helm("uninstall", release.name, "--namespace", release.namespace, "--wait", "--timeout", "3m")
    wait_for(lambda: not json.loads(real.kubectl("-n", release.namespace, "get", "pods", "-o", "json").stdout)
             ["items"], timeout=120, message="the release's pods to go")
    for kind in ("deployment", "statefulset", "service"):
        listed = real.kubectl("-n", release.namespace, "get", kind, "-o", "name").stdout.strip()
        assert listed == "", f"{kind}: {listed}"
    # The password outlives the release, like the data volume initialised with it (docs/install.md).
    assert real.get("secret", f"{release.name}-postgresql", release.namespace)["data"]["postgres-password"]


def test_cluster_down_leaves_no_process_mount_bridge_or_chain(real_cluster: RealCluster) -> None:
    proc = stop_real_cluster(REAL_CLUSTER)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert leftovers() == ""
