"""One tenant's mistake never stops anyone else: bad schedules, long names and refused pods."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, wait_run
from headwater.spec.names import label_value
from helpers import Cluster, wait_for
from manifests import failing_pods, pipeline, run, step
from test_openlineage_out import Receiver, receiver  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

WH = "postgres://warehouse"


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    """A second fresh namespace: another tenant."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    conditions = (cluster.get("pipeline", name, namespace).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def runs_of(cluster: Cluster, namespace: str, pipeline_name: str) -> list[dict[str, Any]]:
    return cluster.list("pipelineruns", namespace, f"headwater.dev/pipeline={label_value(pipeline_name)}")


def test_a_pipeline_the_operator_cannot_schedule_stops_no_other_tenants_schedule_history_or_alerts(
        cluster: Cluster, namespace: str, other_namespace: str, tmp_path: Path,
        receiver: Receiver) -> None:  # noqa: F811
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/alerts"
    # tenant A is listed first: its pipelines come before B's in every pass
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log", other_namespace,
                               HEADWATER_ALERT_WEBHOOK_URL=url, HEADWATER_FRESHNESS_INTERVAL_SECONDS="2")
    operator.start()
    try:
        # admitted (the apiserver cannot tell), but the operator cannot run them
        cluster.apply(pipeline("mars", [step("a")], schedule="* * * * *", timeZone="Mars"),
                      pipeline("february-30", [step("a")], schedule="0 0 31 2 *"), namespace=namespace)
        cluster.apply(pipeline("minutely", [
            step("load", retries=0, podMetadata=failing_pods(),
                 outputs=[{"namespace": WH, "name": "raw.minutely", "freshness": {"maxAge": "1d"}}])],
            schedule="* * * * *", successfulRunsHistoryLimit=1, failedRunsHistoryLimit=1),
            namespace=other_namespace)
        mars = wait_for(lambda: (r := ready(cluster, namespace, "mars")) and r["status"] == "False" and r,
                        timeout=60, message="Pipeline mars to be Ready=False")
        assert mars["reason"] == "InvalidTimeZone"
        assert "unknown time zone 'Mars'" in mars["message"]
        february = wait_for(lambda: (r := ready(cluster, namespace, "february-30")) and r["status"] == "False" and r,
                            timeout=60, message="Pipeline february-30 to be Ready=False")
        assert february["reason"] == "InvalidSchedule"
        assert "never fires" in february["message"]

        seen: list[str] = []

        def second_run_finished() -> bool:
            for r in runs_of(cluster, other_namespace, "minutely"):
                if r["metadata"]["name"] not in seen:
                    seen.append(r["metadata"]["name"])
            return len(seen) >= 2 and any(
                r["metadata"]["name"] == seen[1] and (r.get("status") or {}).get("phase") == "Failed"
                for r in runs_of(cluster, other_namespace, "minutely"))

        wait_for(second_run_finished, timeout=200, interval=1, message="two scheduled runs of minutely")
        wait_for(lambda: seen[0] not in {r["metadata"]["name"] for r in runs_of(cluster, other_namespace, "minutely")},
                 timeout=60, message=f"{seen[0]} to be trimmed (failedRunsHistoryLimit 1)")
        alert = wait_for(lambda: next((e for e in receiver.events if "minutely/load failed" in e.get("text", "")),
                                      None), timeout=60, message="the alert about minutely's failing step")
        assert [d["name"] for d in alert["incident"]["affectedDatasets"]] == ["raw.minutely"]
        for name in ("mars", "february-30"):
            assert not runs_of(cluster, namespace, name)
    finally:
        operator.stop()
    logs = operator.logs()
    assert "periodic schedule failed" not in logs and "periodic evaluate_all failed" not in logs, logs[-5000:]


def test_a_pipeline_with_a_70_character_name_runs_by_hand_and_on_schedule(
        cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    name = "nightly-revenue-by-region-and-product-line-for-the-finance-team-v12-eu"
    assert len(name) == 70
    cluster.apply(pipeline(name, [step("extract"), step("load", "extract")], schedule="* * * * *"),
                  namespace=namespace)
    manual = f"{name}-by-hand"
    cluster.apply(run(manual, name), namespace=namespace)
    done = wait_run(cluster, namespace, manual)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    jobs = cluster.list("jobs", namespace, f"headwater.dev/run={label_value(manual)}")
    assert len(jobs) == 2 and all(len(j["metadata"]["name"]) <= 63 for j in jobs)

    def scheduled() -> dict[str, Any] | None:
        return next((r for r in runs_of(cluster, namespace, name) if r["spec"].get("trigger") == "schedule"), None)

    first = wait_for(scheduled, timeout=90, interval=1, message="a scheduled run of the long-named pipeline")
    assert first["metadata"]["name"].startswith(f"{name}-")
    assert wait_run(cluster, namespace, first["metadata"]["name"])["status"]["phase"] == "Succeeded"


def test_a_step_refused_by_pod_security_shows_the_violation_and_fails_naming_it(
        cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # Steps run restricted-compliant by default: this one asks for what the namespace refuses.
    escalating = {"allowPrivilegeEscalation": True}
    cluster.apply(pipeline("guarded", [step("extract", retries=0, timeoutSeconds=20, securityContext=escalating)]),
                  run("guarded-1", "guarded"), namespace=namespace)

    def extract() -> dict[str, Any]:
        status = cluster.get("pipelinerun", "guarded-1", namespace).get("status") or {}
        return next(s for s in status.get("steps") or [] if s["name"] == "extract")

    blocked = wait_for(lambda: (s := extract()).get("reason") == "FailedCreate" and s, timeout=60, interval=0.5,
                       message="the step to say why its pod cannot be created")
    assert blocked["phase"] == "Pending"
    assert "violates PodSecurity" in blocked["message"]
    done = wait_run(cluster, namespace, "guarded-1")
    assert done["status"]["phase"] == "Failed"
    failed = extract()
    assert failed["reason"] == "FailedCreate"
    assert "DeadlineExceeded" in failed["message"] and "violates PodSecurity" in failed["message"]
    succeeded = next(c for c in done["status"]["conditions"] if c["type"] == "Succeeded")
    assert succeeded["message"] == "failed steps: extract (FailedCreate)"
