"""Finished runs that owe nothing more leave the operator's watch: once a run is settled and its lineage
finalizer is gone, it is labelled ``headwater.dev/settled=true``, and the watch's label selector (emulated
here as the apiserver applies it) shows it once more, as a deletion, and then never again."""

from __future__ import annotations

from typing import Any

import pytest

from fakekube import JOBS, RUNS, FakeKube, ManualClock
from headwater.lineage.run_records import FINALIZER
from headwater.spec import constants as c
from headwater.spec.names import label_value
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"
BACKOFF_OVER = 3600.0
"""Seconds after which any object's backoff is over (it is capped at 5 minutes)."""


class Recorder:
    """Where finished runs held by the lineage finalizer are announced (the recorder's notify)."""

    def __init__(self) -> None:
        self.notified: list[str] = []

    def notify(self, namespace: str, name: str) -> None:
        self.notified.append(name)


def finish(kube: FakeKube, operator: Operator, clock: ManualClock, name: str) -> None:
    """Complete the run's Jobs as the Job controller would, handing every event to the handlers."""
    kube.seed(run(name, "orders"), NS)
    operator.deliver()
    for job in kube.select(JOBS, NS, f"{c.LABEL_RUN}={label_value(name)}"):
        clock.advance(30)
        kube.complete_job(NS, job["metadata"]["name"])
    operator.deliver()
    assert kube.read(RUNS, NS, name)["status"]["phase"] == "Succeeded"


def labels(kube: FakeKube, name: str) -> dict[str, Any]:
    return kube.read(RUNS, NS, name)["metadata"].get("labels") or {}


def settled(kube: FakeKube, name: str) -> str | None:
    conds = {x["type"]: x["status"] for x in kube.read(RUNS, NS, name)["status"].get("conditions") or []}
    return conds.get("Settled")


@pytest.fixture
def orders(kube: FakeKube) -> None:
    kube.seed(pipeline("orders", [step("load")]), NS)


@pytest.mark.usefixtures("orders")
def test_a_finished_settled_run_is_labelled_and_its_later_changes_no_longer_reach_the_operator(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    finish(kube, operator, clock, "orders-1")
    assert settled(kube, "orders-1") == "True"
    assert labels(kube, "orders-1")[c.LABEL_SETTLED] == "true"
    kube.label_run(NS, "orders-1", {"team": "finance"})  # a change made after it left the watch
    assert operator.deliver() == 0
    assert operator.errors == []


@pytest.mark.usefixtures("orders")
def test_a_run_whose_effects_failed_stays_watched_until_the_resync_applies_them(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    refusing = kube.fail("patch_pipeline_status", 422, times=None)
    finish(kube, operator, clock, "orders-1")
    assert settled(kube, "orders-1") == "False"
    assert c.LABEL_SETTLED not in labels(kube, "orders-1")
    refusing.stop()
    clock.advance(BACKOFF_OVER)
    operator.resync()
    operator.deliver()
    assert settled(kube, "orders-1") == "True"
    assert labels(kube, "orders-1")[c.LABEL_SETTLED] == "true"


@pytest.mark.usefixtures("orders")
def test_a_run_held_by_the_lineage_finalizer_is_labelled_only_once_the_recorder_lets_it_go(
        kube: FakeKube, clock: ManualClock) -> None:
    recorder = Recorder()
    operator = Operator(kube, clock, recorder=recorder)  # type: ignore[arg-type]
    finish(kube, operator, clock, "orders-1")
    held = kube.read(RUNS, NS, "orders-1")
    assert held["metadata"]["finalizers"] == [FINALIZER] and settled(kube, "orders-1") == "True"
    assert c.LABEL_SETTLED not in labels(kube, "orders-1") and "orders-1" in recorder.notified
    kube.patch(RUNS, NS, "orders-1", {"metadata": {"finalizers": []}})  # recorded and let go
    operator.deliver()
    assert labels(kube, "orders-1")[c.LABEL_SETTLED] == "true"


@pytest.mark.usefixtures("orders")
def test_the_resync_labels_runs_settled_before_the_label_existed_and_leaves_labelled_ones_alone(
        kube: FakeKube, operator: Operator) -> None:
    for name, extra in (("orders-old", {}), ("orders-done", {c.LABEL_SETTLED: "true"})):
        body = run(name, "orders")
        body["metadata"].setdefault("labels", {}).update(extra)
        body["status"] = {"phase": "Succeeded",
                          "conditions": [{"type": "Settled", "status": "True", "reason": "Settled"}]}
        kube.seed(body, NS)
    operator.resync()
    assert labels(kube, "orders-old")[c.LABEL_SETTLED] == "true"
    assert kube.count("patch_run_metadata", "orders-old") == 1
    assert kube.count("patch_run_metadata", "orders-done") == 0
    assert kube.count("get_run", "orders-done") == 0


@pytest.mark.usefixtures("orders")
def test_a_run_still_running_is_never_labelled(kube: FakeKube, operator: Operator) -> None:
    kube.seed(run("orders-1", "orders"), NS)
    operator.deliver()
    assert kube.read(RUNS, NS, "orders-1")["status"]["phase"] == "Running"
    operator.resync()
    operator.deliver()
    assert c.LABEL_SETTLED not in labels(kube, "orders-1")
