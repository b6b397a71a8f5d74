"""Checks on a real control plane with the operator as a process, a lineage store on PostgreSQL and an alert
webhook: a bad day is stopped at the extract's check, the next good day flows again; the held-back version
triggers no Pipeline downstream; explain answers for the outputs a failed run never wrote."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, free_port, wait_run
from helpers import Cluster, Receiver, fresh_database, receiving, wait_for
from manifests import pipeline, run, step
from test_dataset_triggers_on_a_cluster import inputs_of, ready, triggered, wait_triggered
from test_lineage_recording import READ_TOKEN, headwater, recorded, start_recording_operator

pytestmark = pytest.mark.e2e

WH = "postgres://warehouse"
MESSAGE = "headwater.dev/test-termination-message"


def ds(name: str, **extra: Any) -> dict[str, Any]:
    return {"namespace": WH, "name": name, **extra}


@pytest.fixture
def lineage_url(database_url: str) -> Iterator[str]:
    with fresh_database(database_url) as url:
        yield url


@pytest.fixture
def alerts() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


@pytest.fixture
def checks_operator(cluster: Cluster, namespace: str, tmp_path: Path, lineage_url: str, alerts: Receiver
                    ) -> Iterator[OperatorProcess]:
    """An operator with the lineage store (runs recorded every 2 s) and alerts sent to ``alerts``."""
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_DATABASE_URL=lineage_url,
                               HEADWATER_RECORD_RESCAN_SECONDS="2",
                               HEADWATER_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{alerts.server_address[1]}/alerts")
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def reporting(result: dict[str, Any]) -> dict[str, Any]:
    return {"annotations": {MESSAGE: json.dumps(result)}}


def revenue(payments: int) -> dict[str, Any]:
    """extract (an error check on the drop, a warning on the count) and orders -> transform -> aggregate."""
    checked = ds("raw.payments", checks=[{"name": "no-drop", "change": {"maxDropPercent": 30, "versions": 7}},
                                        {"name": "plenty", "severity": "warn", "rowCount": {"min": 45000}}])
    return pipeline("revenue", [
        step("extract", outputs=[checked], podMetadata=reporting({"rowsAffected": payments})),
        step("orders", outputs=[ds("raw.orders")]),
        step("transform", "extract", "orders", inputs=[ds("raw.payments"), ds("raw.orders")],
             outputs=[ds("analytics.revenue")]),
        step("aggregate", "transform", inputs=[ds("analytics.revenue")], outputs=[ds("analytics.metrics")]),
    ], owner="revenue@example.com")


def day(cluster: Cluster, namespace: str, name: str, payments: int) -> dict[str, Any]:
    cluster.apply(revenue(payments), namespace=namespace)
    cluster.apply(run(name, "revenue"), namespace=namespace)
    done = wait_run(cluster, namespace, name)
    wait_for(lambda: recorded(cluster, namespace, name), timeout=120, message=f"{name} to be recorded")
    return done


def steps(done: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {s["name"]: (s["phase"], s.get("reason")) for s in done["status"]["steps"]}


def last_updated(cluster: Cluster, namespace: str, dataset: str) -> str | None:
    status = cluster.get("pipeline", "revenue", namespace).get("status") or {}
    return next((d.get("lastUpdated") for d in status.get("datasets") or [] if d["name"] == dataset), None)


def test_a_drop_is_stopped_at_the_check_and_the_next_good_day_flows_again(
        cluster: Cluster, namespace: str, lineage_url: str, alerts: Receiver, checks_operator: OperatorProcess
        ) -> None:
    cluster.apply(pipeline("reporting", [step("dashboard", inputs=[ds("analytics.revenue")],
                                              outputs=[ds("reporting.dashboard")])], owner="bi@example.com"),
                  namespace=namespace)
    first = day(cluster, namespace, "revenue-1", 48000)
    assert first["status"]["phase"] == "Succeeded", steps(first)
    good = wait_for(lambda: last_updated(cluster, namespace, "analytics.metrics"), timeout=60,
                    message="day 1's metrics to be recorded on the Pipeline")

    second = day(cluster, namespace, "revenue-2", 28800)  # 40 % fewer payments
    assert steps(second) == {"extract": ("Failed", "CheckFailed"), "orders": ("Succeeded", "Completed"),
                             "transform": ("Skipped", "CheckFailed"), "aggregate": ("Skipped", "CheckFailed")}
    jobs = cluster.kubectl("-n", namespace, "get", "jobs", "-l", "headwater.dev/run=revenue-2", "-o",
                           "jsonpath={.items[*].metadata.labels.headwater\\.dev/step}").stdout.split()
    assert sorted(jobs) == ["extract", "orders"]  # nothing downstream of the check ever ran
    assert last_updated(cluster, namespace, "analytics.metrics") == good  # yesterday's version stays
    blocked = wait_for(lambda: [m for m in alerts.events if "not published" in m["incident"]["cause"]],
                       timeout=60, message="the alert of the blocked version")
    incident = blocked[0]["incident"]
    assert "check no-drop (change, error) on postgres://warehouse/raw.payments failed: 28800 rows, 40.0% " \
           "below the median 48000 rows of the last 1 published version(s)" in incident["cause"]
    assert [d["name"] for d in incident["affectedDatasets"]] == [
        "raw.payments", "analytics.revenue", "analytics.metrics", "reporting.dashboard"]
    assert incident["owners"] == ["bi@example.com", "revenue@example.com"]

    third = day(cluster, namespace, "revenue-3", 40000)  # within 30 % of day 1 (day 2 is no baseline)
    assert third["status"]["phase"] == "Succeeded", steps(third)
    extract = next(s for s in third["status"]["steps"] if s["name"] == "extract")
    assert [(c["name"], c["outcome"]) for c in extract["checks"]] == [("no-drop", "Passed"), ("plenty", "Failed")]
    wait_for(lambda: "check plenty (rowCount, warn)" in cluster.kubectl(
        "-n", namespace, "get", "events", "--field-selector", "reason=CheckWarning",
        "-o", "jsonpath={.items[*].message}").stdout, timeout=60, message="the CheckWarning Event")
    wait_for(lambda: [m for m in alerts.events if "warning" in m["incident"]["cause"]], timeout=60,
             message="the warning's alert")
    assert wait_for(lambda: (t := last_updated(cluster, namespace, "analytics.metrics")) != good and t,
                    timeout=60, message="the metrics to move on")


def test_a_blocking_check_skips_the_downstream_steps_triggers_no_pipeline_and_alerts_every_downstream_owner(
        cluster: Cluster, namespace: str, lineage_url: str, alerts: Receiver, checks_operator: OperatorProcess
        ) -> None:
    # reporting reads raw.payments (extract's checked output) and runs on each new version of it
    cluster.apply(pipeline("reporting", [step("dashboard", inputs=[ds("raw.payments")],
                                              outputs=[ds("reporting.payments")])], owner="bi@example.com",
                           triggers={"datasets": {"mode": "any", "inputs": [ds("raw.payments")]}}),
                  namespace=namespace)
    ready(cluster, namespace, "reporting")
    assert day(cluster, namespace, "revenue-1", 48000)["status"]["phase"] == "Succeeded"
    assert [inputs_of(r) for r in wait_triggered(cluster, namespace, 1)] == [[("raw.payments", "revenue-1")]]

    second = day(cluster, namespace, "revenue-2", 28800)  # 40 % fewer payments: no-drop fails
    assert steps(second) == {"extract": ("Failed", "CheckFailed"), "orders": ("Succeeded", "Completed"),
                             "transform": ("Skipped", "CheckFailed"), "aggregate": ("Skipped", "CheckFailed")}
    blocked = wait_for(lambda: [m for m in alerts.events if "not published" in m["incident"]["cause"]],
                       timeout=60, message="the alert of the blocked version")
    incident = blocked[0]["incident"]
    assert "check no-drop (change, error) on postgres://warehouse/raw.payments failed" in incident["cause"]
    assert sorted(d["name"] for d in incident["affectedDatasets"]) == [
        "analytics.metrics", "analytics.revenue", "raw.payments", "reporting.payments"]
    assert incident["owners"] == ["bi@example.com", "revenue@example.com"]

    # The next good version triggers reporting; the held-back one, older in the outbox, never did.
    assert day(cluster, namespace, "revenue-3", 40000)["status"]["phase"] == "Succeeded"
    runs = wait_triggered(cluster, namespace, 2)
    assert [inputs_of(r) for r in runs] == [[("raw.payments", "revenue-1")], [("raw.payments", "revenue-3")]]
    assert len(triggered(cluster, namespace)) == 2
    assert len([m for m in alerts.events if "not published" in m["incident"]["cause"]]) == 1


def explain_status(port: int, dataset: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/explain/{dataset}",
                                     headers={"Authorization": f"Bearer {READ_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_explain_names_the_step_of_a_pipeline_that_never_ran_and_knows_nothing_of_an_undeclared_dataset(
        cluster: Cluster, namespace: str, tmp_path: Path, lineage_url: str) -> None:
    api_port = free_port()
    operator = start_recording_operator(cluster, namespace, tmp_path, lineage_url, api_port=api_port)
    try:
        cluster.apply(pipeline("revenue", [step("extract", outputs=[ds("raw.payments")])]), namespace=namespace)
        api = f"http://127.0.0.1:{api_port}"
        text = wait_for(lambda: headwater("lineage", "explain", "raw.payments", "--api", api), timeout=60,
                        message="explain raw.payments")
        assert "declared by pipeline revenue step extract, never written: no run yet" in text, text
        assert explain_status(api_port, "raw.nobody_declares_this") == 404
    finally:
        operator.stop()


def test_explain_answers_for_every_output_a_failed_middle_step_kept_from_being_written(
        cluster: Cluster, namespace: str, tmp_path: Path, lineage_url: str) -> None:
    api_port = free_port()
    operator = start_recording_operator(cluster, namespace, tmp_path, lineage_url, api_port=api_port)
    try:
        failing = {"labels": {"headwater.dev/test-fail": "true"},
                   "annotations": {MESSAGE: json.dumps({"error": "relation raw.fx_rates does not exist"})}}
        cluster.apply(pipeline("revenue", [
            step("extract", outputs=[ds("raw.payments")]),
            step("transform", "extract", retries=0, podMetadata=failing, inputs=[ds("raw.payments")],
                 outputs=[ds("analytics.revenue")]),
            step("aggregate", "transform", inputs=[ds("analytics.revenue")], outputs=[ds("analytics.metrics")]),
        ]), run("revenue-1", "revenue"), namespace=namespace)
        assert wait_run(cluster, namespace, "revenue-1")["status"]["phase"] == "Failed"
        wait_for(lambda: recorded(cluster, namespace, "revenue-1"), timeout=120, message="the run to be recorded")
        api = f"http://127.0.0.1:{api_port}"
        for dataset in ("analytics.revenue", "analytics.metrics"):
            text = wait_for(lambda d=dataset: headwater("lineage", "explain", d, "--api", api), timeout=60,
                            message=f"explain {dataset}")
            first = text.splitlines()[1]
            assert "analytics.revenue" in first, text
            assert "step transform of revenue is Failed" in text and "relation raw.fx_rates does not exist" in text
        metrics = headwater("lineage", "explain", "analytics.metrics", "--api", api)
        assert "upstream step transform failed" in metrics
    finally:
        operator.stop()
