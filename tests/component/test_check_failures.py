"""Checks driven by events: a blocking check failure holds the extract's version back, skips exactly what
depends on it in the run (reason CheckFailed), and raises one alert naming the check, the observed value, the
baseline and every downstream dataset and owner, across pipelines; a warning only tells.

Baselines come from a plain mapping here (the lineage store's are tested on PostgreSQL); alerts go over real
HTTP to a loopback receiver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from fakekube import EVENTS, JOBS, PIPELINES, RUNS, FakeKube, ManualClock
from headwater.adapters.delivery import JsonPoster
from headwater.runs.checks import Baseline
from headwater.spec.names import job_name
from helpers import Receiver, wait_for
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"
WH = "postgres://warehouse"
PAYMENTS = f"{WH}/raw.payments"


def ds(name: str) -> dict[str, str]:
    return {"namespace": WH, "name": name}


@pytest.fixture
def watched(kube: FakeKube, clock: ManualClock, alerts: tuple[JsonPoster, Receiver]) -> Operator:
    """revenue: extract (checked) -> transform -> aggregate, and orders beside them; reporting reads
    analytics.revenue in a pipeline of its own, with another owner."""
    checked = {**ds("raw.payments"), "checks": [
        {"name": "no-drop", "change": {"maxDropPercent": 30}},
        {"name": "plenty", "severity": "warn", "rowCount": {"min": 45000}}]}
    kube.seed(pipeline("revenue", [
        step("extract", outputs=[checked]),
        step("orders", outputs=[ds("raw.orders")]),
        step("transform", "extract", "orders", inputs=[ds("raw.payments"), ds("raw.orders")],
             outputs=[ds("analytics.revenue")]),
        step("aggregate", "transform", inputs=[ds("analytics.revenue")], outputs=[ds("analytics.metrics")]),
    ], owner="revenue@company.com"), NS)
    kube.seed(pipeline("reporting", [step("dashboard", inputs=[ds("analytics.revenue")],
                                          outputs=[ds("reporting.dashboard")])], owner="bi@company.com"), NS)
    history: Mapping[str, Baseline] = {PAYMENTS: Baseline(rows=(48000, 47800, 48100))}
    operator = Operator(kube, clock, alerts=alerts[0], namespaces=(NS,),
                        baselines=lambda wanted: {w: history[w] for w in wanted})
    operator.deliver()
    return operator


def steps(kube: FakeKube, name: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in kube.read(RUNS, NS, name)["status"]["steps"]}


def run_day(kube: FakeKube, operator: Operator, name: str, payments: int) -> None:
    kube.seed(run(name, "revenue"), NS)
    operator.deliver()
    kube.complete_job(NS, job_name(name, "orders"), '{"rowsAffected": 5000}')
    kube.complete_job(NS, job_name(name, "extract"), f'{{"rowsAffected": {payments}}}')
    operator.deliver()


def test_a_blocking_check_failure_skips_the_downstream_closure_and_alerts_every_downstream_owner(
        kube: FakeKube, watched: Operator, alerts: tuple[JsonPoster, Receiver]) -> None:
    run_day(kube, watched, "revenue-2", 28800)
    state = steps(kube, "revenue-2")
    assert {n: (s["phase"], s.get("reason")) for n, s in state.items()} == {
        "extract": ("Failed", "CheckFailed"), "orders": ("Succeeded", "Completed"),
        "transform": ("Skipped", "CheckFailed"), "aggregate": ("Skipped", "CheckFailed")}
    assert sorted(kube.names(JOBS, NS)) == [job_name("revenue-2", "extract"), job_name("revenue-2", "orders")]
    verdicts = {c["name"]: (c["outcome"], c.get("observed")) for c in state["extract"]["checks"]}
    assert verdicts == {"no-drop": ("Failed", "28800 rows (40.0% below)"), "plenty": ("Failed", "28800 rows")}
    assert kube.read(RUNS, NS, "revenue-2")["status"]["phase"] == "Failed"

    receiver = alerts[1]
    wait_for(lambda: receiver.events, timeout=10, message="the alert")
    # every incident is in the Pipeline's status before it is sent: the held-back version is announced once,
    # its failed warning with it (warnings alone are for published versions)
    assert len(kube.read(PIPELINES, NS, "revenue")["status"]["alerts"]) == 1
    [blocked] = receiver.events
    cause = blocked["incident"]["cause"]
    assert "check no-drop (change, error) on postgres://warehouse/raw.payments failed" in cause
    assert "28800 rows, 40.0% below the median 48000 rows of the last 3 published version(s)" in cause
    assert [d["name"] for d in blocked["incident"]["affectedDatasets"]] == [
        "raw.payments", "analytics.revenue", "analytics.metrics", "reporting.dashboard"]
    assert blocked["incident"]["owners"] == ["bi@company.com", "revenue@company.com"]
    events = [(e["reason"], e["message"]) for e in kube.select(EVENTS, NS)]
    assert any(reason == "CheckWarning" and "plenty" in message for reason, message in events)
    assert watched.errors == []


def test_a_passing_check_lets_the_run_go_on_and_counts_its_verdicts(kube: FakeKube, watched: Operator) -> None:
    run_day(kube, watched, "revenue-3", 47000)
    state = steps(kube, "revenue-3")
    assert state["extract"]["phase"] == "Succeeded"
    assert state["transform"]["phase"] == "Pending" and state["transform"]["job"]
    sample = watched.metrics.registry.get_sample_value(
        "headwater_checks_total", {"pipeline": "revenue", "dataset": PAYMENTS, "check": "no-drop",
                                   "severity": "error", "outcome": "Passed"})
    assert sample == 1.0


def test_a_warning_check_failure_does_not_skip_anything(kube: FakeKube, watched: Operator) -> None:
    run_day(kube, watched, "revenue-4", 40000)  # 16.7% below the median: no-drop passes; plenty (warn) fails
    state = steps(kube, "revenue-4")
    assert state["extract"]["phase"] == "Succeeded"
    assert [c["outcome"] for c in state["extract"]["checks"]] == ["Passed", "Failed"]
    assert state["transform"]["job"]


def test_checks_wait_for_their_baseline_while_the_store_is_away_and_are_evaluated_once_it_is_back(
        kube: FakeKube, clock: ManualClock) -> None:
    away = [True]

    def baselines(wanted: list[str]) -> Mapping[str, Baseline]:
        if away[0]:
            raise ConnectionError("the lineage store cannot be reached")
        return {w: Baseline(rows=(48000,)) for w in wanted}

    kube.seed(pipeline("revenue", [
        step("extract", outputs=[{**ds("raw.payments"), "checks": [{"name": "no-drop",
                                                                    "change": {"maxDropPercent": 30}}]}]),
        step("transform", "extract")]), NS)
    operator = Operator(kube, clock, namespaces=(NS,), baselines=baselines)
    kube.seed(run("revenue-5", "revenue"), NS)
    operator.deliver()
    kube.complete_job(NS, job_name("revenue-5", "extract"), '{"rowsAffected": 20000}')
    operator.deliver()
    # not judged without its baseline
    assert steps(kube, "revenue-5")["extract"]["phase"] not in ("Succeeded", "Failed")
    assert "ReconcileFailed" in [reason for _, reason, _ in kube.events_about("revenue-5")]
    assert job_name("revenue-5", "transform") not in kube.names(JOBS, NS)

    away[0] = False
    clock.advance(10)
    operator.reconcile(kube.read(RUNS, NS, "revenue-5"))  # the resync after the back-off
    operator.deliver()
    extract = steps(kube, "revenue-5")["extract"]
    assert (extract["phase"], extract["reason"]) == ("Failed", "CheckFailed")
    assert steps(kube, "revenue-5")["transform"]["reason"] == "CheckFailed"
