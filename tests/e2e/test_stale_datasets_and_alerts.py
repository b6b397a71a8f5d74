"""Freshness SLAs flip on the operator's freshness loop; a failing source sends one grouped alert."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, free_port, scrape, wait_run
from headwater.spec.times import parse_time
from helpers import Cluster, wait_for
from manifests import failing_pods, pipeline, run, step
from test_openlineage_out import Receiver, receiver  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

WH = "postgres://warehouse"
INTERVAL = 1.0


def ds(name: str, **extra: Any) -> dict[str, Any]:
    return {"namespace": WH, "name": name, **extra}


def datasets(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    status = cluster.get("pipeline", name, namespace).get("status") or {}
    return {d["name"]: d for d in status.get("datasets") or []}


def fresh_pipeline(max_age: str) -> dict[str, Any]:
    return pipeline("fresh", [step("load", outputs=[ds("analytics.events", freshness={"maxAge": max_age})])])


def test_a_dataset_past_its_sla_turns_stale_on_the_freshness_loop_and_never_before(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log",
                               HEADWATER_FRESHNESS_INTERVAL_SECONDS=str(INTERVAL),
                               HEADWATER_METRICS_PORT=str(metrics_port))
    operator.start()
    try:
        cluster.apply(fresh_pipeline("1h"), namespace=namespace)
        wait_for(lambda: datasets(cluster, namespace, "fresh").get("analytics.events", {}).get("stale"),
                 timeout=120, message="a never-written dataset to be stale")
        cluster.apply(run("fresh-1", "fresh"), namespace=namespace)
        assert wait_run(cluster, namespace, "fresh-1")["status"]["phase"] == "Succeeded"
        # an hour's SLA: the dataset stays fresh however long the operator or this test take to look
        fresh = wait_for(lambda: (d := datasets(cluster, namespace, "fresh")["analytics.events"]).get("stale") is False
                         and d, timeout=120, message="the dataset to be fresh after the run")
        written = parse_time(fresh["lastUpdated"])
        # tighten the SLA so that the write expires a few seconds from now: from then on only time passes,
        # and only the freshness loop can notice
        max_age = math.ceil(time.time() - written.timestamp()) + 5
        deadline = written + timedelta(seconds=max_age)
        cluster.apply(fresh_pipeline(f"{max_age}s"), namespace=namespace)
        stale = wait_for(lambda: datasets(cluster, namespace, "fresh")["analytics.events"].get("stale"),
                         timeout=120, message="the dataset to turn stale")
        assert stale is True
        conds = {c["type"]: c for c in cluster.get("pipeline", "fresh", namespace)["status"]["conditions"]}
        assert conds["Fresh"]["status"] == "False"
        assert "postgres://warehouse/analytics.events" in conds["Fresh"]["message"]
        assert parse_time(conds["Fresh"]["lastTransitionTime"]) >= deadline  # never before the SLA is missed
        series = 'headwater_dataset_stale{dataset="postgres://warehouse/analytics.events"}'
        assert wait_for(lambda: scrape(metrics_port).get(series) == 1.0, timeout=120,
                        message="the stale metric to follow the status")
        wait_for(lambda: f"analytics.events is past its freshness SLA (must be at most {max_age}s old)"
                 in cluster.kubectl("-n", namespace, "get", "events", "--field-selector", "reason=DatasetStale",
                                    "-o", "jsonpath={.items[*].message}").stdout,
                 timeout=120, message="the DatasetStale Event")
    finally:
        operator.stop()


def test_a_failing_source_sends_one_grouped_notification_naming_every_downstream_dataset(
        cluster: Cluster, namespace: str, tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/alerts"
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_ALERT_WEBHOOK_URL=url,
                               HEADWATER_FRESHNESS_INTERVAL_SECONDS="600")
    operator.start()
    try:
        cluster.apply(
            pipeline("revenue", [
                step("extract-payments", retries=0, podMetadata=failing_pods(), outputs=[ds("raw.stripe_payments")]),
                step("transform", "extract-payments", inputs=[ds("raw.stripe_payments")],
                     outputs=[ds("analytics.daily_revenue")])]),
            pipeline("reporting", [step("report", inputs=[ds("analytics.daily_revenue")],
                                        outputs=[ds("reporting.finance_daily")])],
                     owner="finance@example.com"),
            namespace=namespace)
        cluster.apply(run("revenue-1", "revenue"), namespace=namespace)
        assert wait_run(cluster, namespace, "revenue-1")["status"]["phase"] == "Failed"
        wait_for(lambda: receiver.events, timeout=120, message="the alert")
        at_risk = wait_for(lambda: datasets(cluster, namespace, "reporting")["reporting.finance_daily"].get("atRisk"),
                           timeout=120, message="the reporting dataset to be marked at risk")
        assert "revenue/extract-payments failed" in at_risk
        conds = {c["type"]: c for c in cluster.get("pipeline", "reporting", namespace)["status"]["conditions"]}
        assert (conds["AtRisk"]["status"], conds["AtRisk"]["reason"]) == ("True", "UpstreamIncident")
        operator.stop()  # nothing more can arrive from this operator: exactly one message was sent
    finally:
        operator.stop()
    assert len(receiver.events) == 1
    incident = receiver.events[0]["incident"]
    assert [d["name"] for d in incident["affectedDatasets"]] == [
        "raw.stripe_payments", "analytics.daily_revenue", "reporting.finance_daily"]
    assert incident["owners"] == ["data-team@example.com", "finance@example.com"]
    assert "revenue/extract-payments failed in run" in receiver.events[0]["text"]


def test_an_alert_still_pending_when_the_operator_is_killed_is_delivered_by_the_next_one(
        cluster: Cluster, namespace: str, tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    receiver.answer = 503  # the webhook is away when the run fails
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/alerts"
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_ALERT_WEBHOOK_URL=url,
                               HEADWATER_FRESHNESS_INTERVAL_SECONDS="2")
    operator.start()
    try:
        cluster.apply(pipeline("revenue", [step("extract", retries=0, podMetadata=failing_pods(),
                                                outputs=[ds("raw.stripe_payments")])],
                               notifications={"slackChannel": "#revenue"}),
                      run("revenue-1", "revenue"), namespace=namespace)
        assert wait_run(cluster, namespace, "revenue-1")["status"]["phase"] == "Failed"
        wait_for(lambda: receiver.refused, timeout=30, message="a first attempt, refused")
        [pending] = cluster.get("pipeline", "revenue", namespace)["status"]["alerts"]
        assert "notifiedAt" not in pending
        operator.kill()  # its sender dies with the alert in memory
        receiver.answer = 201
        operator.start()
        notified = wait_for(lambda: cluster.get("pipeline", "revenue", namespace)["status"]["alerts"][0]
                            .get("notifiedAt"), timeout=60, message="the alert to be delivered and acknowledged")
        assert notified
    finally:
        operator.stop()
    [message] = receiver.events
    assert message["incident"]["id"] == pending["id"]
    assert message["incident"]["channel"] == "#revenue"
    assert "revenue/extract failed in run" in message["text"]
