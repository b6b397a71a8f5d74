"""Every alert of the chart's PrometheusRule fires on the series it is meant for, and stays quiet otherwise.

The rules are the chart's own (``helm template``); promtool (built by hack/build-tools.sh) evaluates them
over synthetic series with ``promtool test rules``: for each alert a case where it fires, with its labels
and annotations as Prometheus renders them, and cases where it does not (healthy series, or not yet for
its ``for:``). A new alert without cases fails the first test.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_alert_rules import _promtool
from test_chart import EVERYTHING, of_kind, render

pytestmark = pytest.mark.unit

DATASET = "data/warehouse.orders"
TARGET = {"job": "headwater-metrics", "instance": "10.0.0.5:9090"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}" if inner else name, "values": values}


def fires(at: str, *alerts: dict[str, str]) -> dict[str, Any]:
    """The alert is firing at ``at`` with exactly these labels (each dict: the alert's own labels)."""
    return {"eval_time": at, "alerts": list(alerts)}


def quiet(at: str) -> dict[str, Any]:
    """No firing alert at ``at`` (a pending one is not firing)."""
    return {"eval_time": at, "alerts": []}


# alert -> (firing cases, quiet cases); a case is (input series, checks, {label: $value} for annotations).
# The chart's defaults for `for:` hold: stale 5m, operator down 5m, no leader 2m, backlog 15m, triggers failing
# 15m, undelivered 30m, others 0s.
CASES: dict[str, dict[str, list[tuple[list[dict[str, str]], list[dict[str, Any]], str]]]] = {
    "HeadwaterDatasetStale": {
        "firing": [([series("headwater_dataset_stale", "0 1x10", dataset=DATASET)],
                    [fires("6m", {"dataset": DATASET})], "1")],
        "quiet": [([series("headwater_dataset_stale", "0x10", dataset=DATASET)], [quiet("10m")], ""),
                  # stale since 1m: pending until its `for:` of 5m has passed
                  ([series("headwater_dataset_stale", "0 1x10", dataset=DATASET)], [quiet("5m")], "")],
    },
    "HeadwaterRunsFailing": {
        "firing": [([series("headwater_runs_total", "0 0 1 1 1", pipeline="revenue", phase="Failed"),
                     series("headwater_runs_total", "0 1 2 3 4", pipeline="revenue", phase="Succeeded")],
                    [fires("3m", {"pipeline": "revenue"})], "1")],
        "quiet": [([series("headwater_runs_total", "0x10", pipeline="revenue", phase="Failed"),
                    series("headwater_runs_total", "0+1x10", pipeline="revenue", phase="Succeeded")],
                   [quiet("10m")], ""),
                  # the failure is more than an hour old
                  ([series("headwater_runs_total", "0 1x80", pipeline="revenue", phase="Failed")],
                   [quiet("75m")], "")],
    },
    "HeadwaterOperatorDown": {
        "firing": [([series("up", "0x10", **TARGET)], [fires("6m", dict(TARGET))], ""),
                   # never scraped at all: absent()
                   ([series("up", "1x10", job="node", instance="10.0.0.9:9100")], [fires("6m", {})], "")],
        "quiet": [([series("up", "1x10", **TARGET)], [quiet("10m")], ""),
                  ([series("up", "0x10", **TARGET)], [quiet("4m")], "")],
    },
    "HeadwaterNoLeader": {  # one shard by default: one pod must lead
        "firing": [([series("headwater_leader", "0x10", pod="headwater-a"),
                     series("headwater_leader", "0x10", pod="headwater-b")], [fires("3m", {})], "0")],
        "quiet": [([series("headwater_leader", "1x10", pod="headwater-a"),
                    series("headwater_leader", "0x10", pod="headwater-b")], [quiet("10m")], ""),
                  # no leader for 1m, a handover: pending until its `for:` of 2m has passed
                  ([series("headwater_leader", "0x10", pod="headwater-a")], [quiet("1m")], "")],
    },
    "HeadwaterLineageBacklogGrowing": {
        "firing": [([series("headwater_lineage_backlog", "0+1x30")], [fires("20m", {})], "20")],
        "quiet": [([series("headwater_lineage_backlog", "5x30")], [quiet("20m")], ""),
                  ([series("headwater_lineage_backlog", "30-1x30")], [quiet("20m")], ""),
                  ([series("headwater_lineage_backlog", "0+1x30")], [quiet("10m")], "")],
    },
    "HeadwaterRunNotRecorded": {
        "firing": [([series("headwater_lineage_record_failures_total", "0 0 1 1", reason="RecordFailed")],
                    [fires("3m", {"reason": "RecordFailed"})], "1")],
        "quiet": [([series("headwater_lineage_record_failures_total", "0x20", reason="RecordFailed"),
                    series("headwater_lineage_record_failures_total", "0+1x20", reason="StoreUnavailable")],
                   [quiet("20m")], ""),
                  ([series("headwater_lineage_record_failures_total", "0 1x30", reason="RecordFailed")],
                   [quiet("25m")], "")],
    },
    "HeadwaterTriggersFailing": {  # failed evaluations back off up to 5m: a 10m window sees each one that persists
        "firing": [([series("headwater_trigger_failures_total", "0+1x40", namespace="data", pipeline="reporting")],
                    [fires("20m", {"namespace": "data", "pipeline": "reporting"})], ""),
                   # failing every 5 minutes, at the longest back-off
                   ([series("headwater_trigger_failures_total", "0x4 1x4 2x4 3x4 4x4 5x4 6x4", namespace="data",
                            pipeline="reporting")],
                    [fires("25m", {"namespace": "data", "pipeline": "reporting"})], "")],
        "quiet": [([series("headwater_trigger_failures_total", "0x40", namespace="data", pipeline="reporting")],
                   [quiet("30m")], ""),
                  # one failure, then it works again: pending for less than its `for:` of 15m
                  ([series("headwater_trigger_failures_total", "0x5 1x40", namespace="data", pipeline="reporting")],
                   [quiet("14m"), quiet("30m")], ""),
                  # failing since 1m: pending until its `for:` has passed
                  ([series("headwater_trigger_failures_total", "0+1x40", namespace="data", pipeline="reporting")],
                   [quiet("12m")], "")],
    },
    "HeadwaterAlertsUndelivered": {
        "firing": [([series("headwater_alerts_pending", "2x40")], [fires("31m", {})], "2")],
        "quiet": [([series("headwater_alerts_pending", "0x40")], [quiet("40m")], ""),
                  ([series("headwater_alerts_pending", "2x40")], [quiet("29m")], "")],
    },
}


def chart_alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in chart_groups() for r in group["rules"]}


def expand(template: str, labels: dict[str, str], value: str) -> str:
    """The annotation as Prometheus renders it, for the few template forms the chart uses."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    text = text.replace("{{ $value | humanize }}", value).replace("{{ $value }}", value)
    assert "{{" not in text, f"an annotation form this test does not render: {template}"
    return text


def promtool_test(groups: list[dict[str, Any]], alert: str, cases: list[tuple[list[dict[str, str]],
                  list[dict[str, Any]], str]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    promtool = _promtool()
    if not promtool.exists():
        pytest.skip(f"promtool is not built ({promtool} is missing): run hack/build-tools.sh")
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == alert)
    tests = []
    for i, (input_series, checks, value) in enumerate(cases):
        alert_tests = []
        for check in checks:
            expected = []
            for own in check["alerts"]:
                labels = {**rule.get("labels", {}), **own}
                annotations = {k: expand(v, own, value) for k, v in rule.get("annotations", {}).items()}
                expected.append({"exp_labels": labels, "exp_annotations": annotations})
            alert_tests.append({"eval_time": check["eval_time"], "alertname": alert, "exp_alerts": expected})
        tests.append({"name": f"{alert} case {i}", "interval": "1m", "input_series": input_series,
                      "alert_rule_test": alert_tests})
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run([str(promtool), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, check=False, timeout=60)


@cache
def chart_groups() -> list[dict[str, Any]]:
    """The chart's PrometheusRule groups with its default values (rendered once: the tests only read them)."""
    [rule] = of_kind(render(*EVERYTHING), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def test_every_alert_of_the_chart_has_a_firing_and_a_quiet_case() -> None:
    assert set(chart_alerts()) == set(CASES)
    for alert, cases in CASES.items():
        assert cases["firing"] and cases["quiet"], alert
        assert all(check["alerts"] for _, checks, _ in cases["firing"] for check in checks), alert
        assert all(not check["alerts"] for _, checks, _ in cases["quiet"] for check in checks), alert


@pytest.mark.parametrize("alert", sorted(CASES))
def test_the_alert_fires_on_its_series(alert: str, tmp_path: Path) -> None:
    proc = promtool_test(chart_groups(), alert, CASES[alert]["firing"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize("alert", sorted(CASES))
def test_the_alert_stays_quiet_otherwise(alert: str, tmp_path: Path) -> None:
    proc = promtool_test(chart_groups(), alert, CASES[alert]["quiet"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_a_firing_case_expected_quiet_fails(tmp_path: Path) -> None:
    """The cases can fail: the stale dataset's firing series, expected quiet, is reported by promtool."""
    [(input_series, _, _)] = CASES["HeadwaterDatasetStale"]["firing"]
    proc = promtool_test(chart_groups(), "HeadwaterDatasetStale", [(input_series, [quiet("6m")], "")], tmp_path)
    assert proc.returncode != 0
    assert "HeadwaterDatasetStale" in proc.stdout + proc.stderr
