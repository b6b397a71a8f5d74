"""The local control plane behaves like a real cluster: CRDs, Jobs, retries, deadlines, termination messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, config

from conftest_e2e import held_pod, release
from helpers import Cluster, wait_for
from manifests import held_pods

pytestmark = pytest.mark.e2e

SMOKE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.headwater.dev"},
    "spec": {
        "group": "smoke.headwater.dev",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            }}},
        }],
    },
}


def job(name: str, *, backoff_limit: int = 0, deadline: int | None = None,
        labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "template": {
            "metadata": {"labels": labels or {}, "annotations": annotations or {}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
        },
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def job_condition(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The Job's terminal condition (Complete or Failed) once it has one."""
    status = cluster.get("job", name, namespace).get("status", {})
    for cond in status.get("conditions", []):
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return dict(cond)
    return None


def test_a_crd_applied_with_kubectl_is_served_and_listed(cluster: Cluster, namespace: str) -> None:
    cluster.apply(SMOKE_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.smoke.headwater.dev")
    cluster.apply({"apiVersion": "smoke.headwater.dev/v1", "kind": "Widget",
                   "metadata": {"name": "gear"}, "spec": {"size": 3}}, namespace=namespace)
    listed = cluster.kubectl("-n", namespace, "get", "widgets").stdout
    assert "gear" in listed


def test_a_job_whose_pods_succeed_ends_complete(cluster: Cluster, namespace: str) -> None:
    cluster.apply(job("ok"), namespace=namespace)
    cond = wait_for(lambda: job_condition(cluster, namespace, "ok"), timeout=120, message="job ok to finish")
    assert cond["type"] == "Complete"
    assert cluster.get("job", "ok", namespace)["status"]["succeeded"] == 1


def test_a_failing_job_with_backoff_limit_2_makes_3_pods_and_fails(cluster: Cluster, namespace: str) -> None:
    cluster.apply(job("boom", backoff_limit=2, labels={"headwater.dev/test-fail": "true"}), namespace=namespace)
    cond = wait_for(lambda: job_condition(cluster, namespace, "boom"), timeout=300, message="job boom to fail")
    assert (cond["type"], cond["reason"]) == ("Failed", "BackoffLimitExceeded")
    pods = cluster.list("pods", namespace, "job-name=boom")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Failed" for p in pods)


def test_a_job_whose_first_pod_fails_succeeds_on_retry(cluster: Cluster, namespace: str) -> None:
    cluster.apply(job("flaky", backoff_limit=3, labels=held_pods()["labels"]), namespace=namespace)
    first = held_pod(cluster, namespace, "job-name=flaky")
    release(cluster, namespace, first, fail=True)
    release(cluster, namespace, held_pod(cluster, namespace, "job-name=flaky", other_than=(first,)))
    cond = wait_for(lambda: job_condition(cluster, namespace, "flaky"), timeout=120, message="job flaky")
    assert cond["type"] == "Complete"
    status = cluster.get("job", "flaky", namespace)["status"]
    assert (status["succeeded"], status["failed"]) == (1, 1)


def test_a_job_running_past_its_deadline_fails_with_deadline_exceeded(cluster: Cluster, namespace: str) -> None:
    cluster.apply(job("slow", deadline=2, labels=held_pods()["labels"]), namespace=namespace)  # never ends by itself
    cond = wait_for(lambda: job_condition(cluster, namespace, "slow"), timeout=120, message="job slow to fail")
    assert (cond["type"], cond["reason"]) == ("Failed", "DeadlineExceeded")


def test_a_termination_message_set_by_the_stage_is_readable_with_the_python_client(
    cluster: Cluster, namespace: str
) -> None:
    result = {"rowsAffected": 1234}
    cluster.apply(job("report", annotations={"headwater.dev/test-termination-message": json.dumps(result)}),
                  namespace=namespace)
    wait_for(lambda: job_condition(cluster, namespace, "report"), timeout=120, message="job report")
    api = client.CoreV1Api(config.new_client_from_config(config_file=cluster.kubeconfig))
    try:
        pods = api.list_namespaced_pod(namespace, label_selector="job-name=report").items
        assert len(pods) == 1
        terminated = pods[0].status.container_statuses[0].state.terminated
        assert terminated.exit_code == 0
        assert json.loads(terminated.message) == result
    finally:
        api.api_client.close()
