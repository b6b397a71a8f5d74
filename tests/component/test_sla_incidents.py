"""Incidents in the SLA monitor: a failed run puts every dataset downstream of the failed step at risk,
across pipelines, with one grouped notification; the next successful run of that pipeline clears it.

Notifications go over real HTTP (JsonPoster to a loopback receiver)."""

from __future__ import annotations

from typing import Any

import pytest

from fakekube import PIPELINES, FakeKube, ManualClock
from headwater.adapters.delivery import JsonPoster
from headwater.spec.names import job_name
from helpers import Receiver, wait_for
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"
WH = "postgres://warehouse"


def ds(name: str) -> dict[str, str]:
    return {"namespace": WH, "name": name}


@pytest.fixture
def watched(kube: FakeKube, clock: ManualClock, alerts: tuple[JsonPoster, Receiver]) -> Operator:
    """orders writes raw.orders; revenue reads it and writes analytics.revenue; finance reads that;
    marketing stands apart. Each has its owner."""
    for name, owner, steps in [
        ("orders", "ingest@company.com", [step("load", outputs=[ds("raw.orders")])]),
        ("revenue", "analytics@company.com", [step("build", inputs=[ds("raw.orders")],
                                                   outputs=[ds("analytics.revenue")])]),
        ("finance", "finance@company.com", [step("report", inputs=[ds("analytics.revenue")],
                                                 outputs=[ds("finance.monthly")])]),
        ("marketing", "growth@company.com", [step("leads", outputs=[ds("mkt.leads")])]),
    ]:
        kube.seed(pipeline(name, steps, owner=owner), NS)
    operator = Operator(kube, clock, alerts=alerts[0], namespaces=(NS,))
    operator.deliver()
    return operator


def run_orders(kube: FakeKube, operator: Operator, name: str, succeed: bool) -> None:
    operator.run_one_step(NS, name, "orders", "load", None if succeed else "relation raw.orders is locked")
    assert operator.errors == []


def datasets(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for p in kube.select(PIPELINES, NS) for d in p["status"].get("datasets") or []}


def at_risk_condition(kube: FakeKube, name: str) -> tuple[str, str]:
    conditions = {c["type"]: c for c in kube.read(PIPELINES, NS, name)["status"]["conditions"]}
    return conditions["AtRisk"]["status"], conditions["AtRisk"]["reason"]


def test_a_failed_run_marks_every_downstream_dataset_at_risk_with_one_notification_and_a_success_clears_it(
        kube: FakeKube, clock: ManualClock, watched: Operator, alerts: tuple[JsonPoster, Receiver]) -> None:
    poster, receiver = alerts
    run_orders(kube, watched, "orders-1", succeed=False)

    marked = datasets(kube)
    cause = ("orders/load failed in run data/orders-1: relation raw.orders is locked (BackoffLimitExceeded: Job has "
             "reached the specified backoff limit)")
    for name in ("raw.orders", "analytics.revenue", "finance.monthly"):
        assert (marked[name].get("atRisk"), marked[name].get("atRiskSource")) == (cause, "data/orders"), name
    assert "mkt.leads" not in marked  # a Pipeline nothing puts at risk is neither read nor written
    untouched = kube.read(PIPELINES, NS, "marketing")["status"]
    assert "datasets" not in untouched and "AtRisk" not in {c["type"] for c in untouched["conditions"]}
    for name in ("orders", "revenue", "finance"):
        assert at_risk_condition(kube, name) == ("True", "UpstreamIncident")

    wait_for(lambda: receiver.events, timeout=10, interval=0.02, message="the notification")
    incident = receiver.events[0]["incident"]
    assert incident["cause"] == cause and incident["source"] == "data/orders"
    assert [d["name"] for d in incident["affectedDatasets"]] == ["raw.orders", "analytics.revenue", "finance.monthly"]
    assert incident["owners"] == ["analytics@company.com", "finance@company.com", "ingest@company.com"]

    clock.advance(3600)
    run_orders(kube, watched, "orders-2", succeed=True)
    cleared = datasets(kube)
    assert not any(d.get("atRisk") or d.get("atRiskSource") for d in cleared.values())
    for name in ("orders", "revenue", "finance"):
        assert at_risk_condition(kube, name) == ("False", "NoIncident")
    assert (cleared["raw.orders"]["lastRun"], cleared["raw.orders"]["lastUpdated"]) == \
        ("orders-2", "2026-11-23T07:00:00Z")

    # the poster delivers in order: once this marker arrives, any second notification would have too
    poster.send({"marker": True})
    wait_for(lambda: len(receiver.events) >= 2, timeout=10, interval=0.02, message="the marker")
    assert receiver.events[1:] == [{"marker": True}]


def test_a_failed_step_without_declared_outputs_raises_no_incident(
        kube: FakeKube, clock: ManualClock, alerts: tuple[JsonPoster, Receiver]) -> None:
    poster, receiver = alerts
    kube.seed(pipeline("cleanup", [step("vacuum")]), NS)
    operator = Operator(kube, clock, alerts=poster, namespaces=(NS,))
    kube.seed(run("cleanup-1", "cleanup"), NS)
    operator.deliver()
    kube.fail_job(NS, job_name("cleanup-1", "vacuum"))
    operator.deliver()
    assert at_risk_condition(kube, "cleanup") == ("False", "NoIncident")
    poster.send({"marker": True})
    wait_for(lambda: receiver.events, timeout=10, interval=0.02, message="the marker")
    assert receiver.events == [{"marker": True}]
