"""Steps run least-privileged on the real control plane: PodSecurity admission, tokens, ServiceAccounts.

The apiserver enforces Pod Security admission itself, so a step pod the namespace refuses is never
created (the Job controller reports FailedCreate); kwok's simulated nodes run the pods it admits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, wait_run
from helpers import Cluster, wait_for
from manifests import pipeline, run, step

pytestmark = pytest.mark.e2e

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


def _token_volumes(pod: dict[str, Any]) -> list[str]:
    """The projected ServiceAccount token volumes the ServiceAccount admission plugin added."""
    return [v["name"] for v in pod["spec"].get("volumes") or [] if v["name"].startswith("kube-api-access-")]


def _pods(cluster: Cluster, namespace: str, run_name: str, step_id: str) -> list[dict[str, Any]]:
    return cluster.list("pods", namespace, f"headwater.dev/run={run_name},headwater.dev/step={step_id}")


def _job_events(cluster: Cluster, namespace: str, job: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("-n", namespace, "get", "events", "-o", "json",
                          "--field-selector", f"involvedObject.kind=Job,involvedObject.name={job}").stdout
    return list(json.loads(out)["items"])


def test_a_step_runs_to_success_where_the_restricted_pod_security_standard_is_enforced(
        cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.kubectl("label", "namespace", namespace, RESTRICTED)
    cluster.apply(pipeline("restricted", [step("extract"), step("load", "extract", automountServiceAccountToken=True)]),
                  run("restricted-1", "restricted"), namespace=namespace)
    done = wait_run(cluster, namespace, "restricted-1")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    [extract] = _pods(cluster, namespace, "restricted-1", "extract")
    [load] = _pods(cluster, namespace, "restricted-1", "load")
    # No API token unless the step asks for one.
    assert _token_volumes(extract) == [] and extract["spec"]["automountServiceAccountToken"] is False
    assert len(_token_volumes(load)) == 1
    assert extract["spec"]["securityContext"]["runAsNonRoot"] is True
    assert extract["spec"]["containers"][0]["terminationMessagePolicy"] == "File"


def test_a_step_whose_security_context_the_namespace_refuses_gets_no_pod_and_does_not_succeed(
        cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.kubectl("label", "namespace", namespace, RESTRICTED)
    cluster.apply(pipeline("escalating", [step("extract", retries=0, timeoutSeconds=15,
                                               securityContext={"allowPrivilegeEscalation": True})]),
                  run("escalating-1", "escalating"), namespace=namespace)
    job = wait_for(lambda: cluster.list("jobs", namespace, "headwater.dev/run=escalating-1"), timeout=60,
                   message="the step's Job")[0]["metadata"]["name"]
    refused = wait_for(lambda: [e for e in _job_events(cluster, namespace, job) if e["reason"] == "FailedCreate"],
                       timeout=60, message="the Job controller's FailedCreate Event")
    assert any('violates PodSecurity "restricted' in e["message"] and "allowPrivilegeEscalation" in e["message"]
               for e in refused), refused
    done = wait_run(cluster, namespace, "escalating-1", timeout=120)
    assert done["status"]["phase"] == "Failed", done["status"]
    assert _pods(cluster, namespace, "escalating-1", "extract") == []


@pytest.fixture
def allow_listing_operator(cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
                           ) -> Iterator[OperatorProcess]:
    """An operator whose steps may name only the ServiceAccount ``etl``."""
    proc = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_ALLOWED_SERVICE_ACCOUNTS="etl")
    proc.start()
    yield proc
    proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ({proc.log_path}) ---\n{proc.logs()[-20000:]}")


def test_a_step_naming_a_service_account_off_the_operators_allow_list_fails_without_a_job(
        cluster: Cluster, namespace: str, allow_listing_operator: OperatorProcess) -> None:
    for account in ("etl", "builder"):
        cluster.kubectl("-n", namespace, "create", "serviceaccount", account)
    cluster.apply(pipeline("accounts", [step("allowed", serviceAccountName="etl"),
                                        step("denied", "allowed", serviceAccountName="builder")]),
                  run("accounts-1", "accounts"), namespace=namespace)
    done = wait_run(cluster, namespace, "accounts-1")
    steps = {s["name"]: s for s in done["status"]["steps"]}
    assert steps["allowed"]["phase"] == "Succeeded", steps
    assert (steps["denied"]["phase"], steps["denied"]["reason"]) == ("Failed", "ServiceAccountNotAllowed")
    assert "HEADWATER_ALLOWED_SERVICE_ACCOUNTS" in steps["denied"]["message"]
    jobs = cluster.list("jobs", namespace, "headwater.dev/run=accounts-1")
    assert [j["metadata"]["labels"]["headwater.dev/step"] for j in jobs] == ["allowed"]
    [pod] = _pods(cluster, namespace, "accounts-1", "allowed")
    assert pod["spec"]["serviceAccountName"] == "etl"
