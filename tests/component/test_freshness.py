"""Freshness in the SLA monitor: a dataset turns stale at the first evaluation past its SLA, and says so once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fakekube import PIPELINES, FakeKube
from headwater.adapters.metrics import Metrics
from headwater.sla.monitor import SlaMonitor
from manifests import pipeline, step
from wiring import Operator

pytestmark = pytest.mark.component

WH = "postgres://warehouse"
WRITTEN = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)


def test_a_dataset_turns_stale_at_the_first_evaluation_past_its_max_age_and_says_so_once() -> None:
    kube = FakeKube()
    obj = pipeline("fresh", [step("load", outputs=[{"namespace": WH, "name": "analytics.events",
                                                     "freshness": {"maxAge": "6s"}}])])
    obj["status"] = {"datasets": [{"namespace": WH, "name": "analytics.events", "lastUpdated": "2026-11-23T07:30:00Z"}]}
    kube.seed(obj, "data")
    events: list[tuple[str, str]] = []
    monitor = SlaMonitor(kube=kube, metrics=Metrics(), post_event=lambda *e: events.append((e[2], e[3])), alerts=None,
                         scopes=[None])

    def status() -> dict[str, object]:
        return dict(kube.read(PIPELINES, "data", "fresh")["status"])

    def stale() -> bool:
        return bool(status()["datasets"][0].get("stale"))  # type: ignore[index]

    monitor.evaluate_all(WRITTEN + timedelta(seconds=6))  # exactly maxAge old: still fresh
    assert not stale()
    assert [c["status"] for c in status()["conditions"] if c["type"] == "Fresh"] == ["True"]  # type: ignore[attr-defined]
    monitor.evaluate_all(WRITTEN + timedelta(seconds=6, milliseconds=1))  # the first evaluation past it
    assert stale()
    fresh = next(c for c in status()["conditions"] if c["type"] == "Fresh")  # type: ignore[attr-defined]
    assert (fresh["status"], fresh["lastTransitionTime"]) == ("False", "2026-11-23T07:30:06Z")
    monitor.evaluate_all(WRITTEN + timedelta(seconds=7))
    assert events == [("DatasetStale", "postgres://warehouse/analytics.events is past its freshness SLA "
                                       "(must be at most 6s old)")]


def test_the_operators_freshness_board_shows_what_the_monitor_wrote_in_the_namespaces_it_watches() -> None:
    kube = FakeKube()
    for namespace in ("data", "other"):
        obj = pipeline("fresh", [step("load", outputs=[{"namespace": WH, "name": f"{namespace}.events",
                                                         "freshness": {"maxAge": "6s"}}])])
        obj["status"] = {"datasets": [{"namespace": WH, "name": f"{namespace}.events",
                                       "lastUpdated": "2026-11-23T07:30:00Z"}]}
        kube.seed(obj, namespace)
    operator = Operator(kube, lambda: WRITTEN, namespaces=("data",))
    operator.sla.evaluate_all(WRITTEN + timedelta(seconds=7))
    board = operator.freshness_board()
    rows = [(d["name"], d["state"], d["sla"]) for d in board["datasets"]]
    assert rows == [("data.events", "stale", {"maxAge": "6s"})]
