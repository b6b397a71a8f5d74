"""Steps that fail for real: the database's error, a killed overrun, a container's exit code and retries."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from helpers import wait_for
from real_support import Release, bundled_database, step_pods, steps_by_name, wait_run

# The first test also waits for the node to come up, which on a fresh machine builds kubelet, kube-proxy,
# CoreDNS and the images (about 15-20 minutes on 2 cores): more than the default per-test timeout.
pytestmark = [pytest.mark.real, pytest.mark.timeout(2700)]


def start(release: Release, namespace: str, name: str, step: dict[str, Any]) -> dict[str, Any]:
    """A one-step pipeline and a run of it; the run once it finished."""
    pipeline = {"apiVersion": "headwater.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
                "spec": {"steps": [step]}}
    run = {"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": f"{name}-1"},
           "spec": {"pipelineRef": {"name": name}, "trigger": "manual"}}
    release.real.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all([pipeline, run]))
    return wait_run(release.real, namespace, f"{name}-1")


def sql_step(sql: str, **fields: Any) -> dict[str, Any]:
    return {"id": "query", "type": "sql", "connectionSecretRef": {"name": "warehouse-db", "key": "url"},
            "sql": sql, **fields}


def test_sql_syntax_error_fails_the_step_with_the_databases_message(release: Release, namespace: str) -> None:
    run = start(release, namespace, "broken", sql_step("SELEC 1", retries=0))
    step = steps_by_name(run)["query"]
    assert run["status"]["phase"] == "Failed"
    assert step["phase"] == "Failed"
    assert 'syntax error at or near "SELEC"' in step["message"], step
    assert step["result"]["sqlstate"] == "42601", step
    # What `kubectl get plr -o yaml` shows a user.
    shown = release.real.kubectl("-n", namespace, "get", "plr", "broken-1", "-o", "yaml").stdout
    assert 'syntax error at or near \\"SELEC\\"' in shown or 'syntax error at or near "SELEC"' in shown


def test_sql_step_over_its_timeout_is_killed_with_deadline_exceeded(release: Release, namespace: str) -> None:
    run = start(release, namespace, "slow", sql_step("SELECT pg_sleep(300)", timeoutSeconds=5, retries=0))
    step = steps_by_name(run)["query"]
    assert run["status"]["phase"] == "Failed"
    assert step["reason"] == "DeadlineExceeded", step
    # Killed at once, well inside the pod's 30 s grace period: the runner ends on SIGTERM.
    # (The Job controller deletes the pod it stopped, so it may be gone already.)
    def pods_ended() -> bool:
        return all(p["status"]["phase"] == "Failed" for p in step_pods(release.real, namespace, "slow-1"))
    wait_for(pods_ended, timeout=20, message="the step's pod to end")
    # And the statement is cancelled in the server, not left sleeping.
    with bundled_database(release) as conn:
        sleeping = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                "AND query LIKE 'SELECT pg_sleep(300)%'").fetchone()
    assert sleeping == (0,)


def test_each_attempt_of_a_step_gets_its_own_timeout_and_the_step_fails_with_deadline_exceeded(
        release: Release, namespace: str) -> None:
    run = start(release, namespace, "overrun", sql_step("SELECT pg_sleep(300)", timeoutSeconds=4, retries=1))
    step = steps_by_name(run)["query"]
    assert run["status"]["phase"] == "Failed"
    # the first attempt's overrun did not use up the second's time: the kubelet ended each at 4 s
    assert (step["reason"], step["attempts"]) == ("DeadlineExceeded", 2), step
    assert "the last attempt ran out of its time" in step["message"], step
    pods = step_pods(release.real, namespace, "overrun-1")
    assert [(p["status"]["phase"], p["status"].get("reason")) for p in pods] == [
        ("Failed", "DeadlineExceeded")] * 2, json.dumps([p["status"] for p in pods])


def test_container_step_exiting_non_zero_is_retried_and_reports_its_message(release: Release, namespace: str
                                                                            ) -> None:
    script = 'echo \'{"error": "upstream file missing"}\' >/dev/termination-log; exit 3'
    step = {"id": "fetch", "type": "container", "image": release.images["headwater"],
            "command": ["sh", "-c", script], "retries": 1}
    run = start(release, namespace, "flaky", step)
    status = steps_by_name(run)["fetch"]
    assert run["status"]["phase"] == "Failed"
    assert status["attempts"] == 2, status
    assert status["reason"] == "BackoffLimitExceeded", status
    assert "upstream file missing" in status["message"], status
    pods = step_pods(release.real, namespace, "flaky-1")
    assert len(pods) == 2
    exits = [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods]
    assert exits == [3, 3], json.dumps([p["status"] for p in pods])
