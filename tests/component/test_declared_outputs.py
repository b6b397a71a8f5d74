"""Outputs a Ready Pipeline declares are in the lineage store before its first run: the lineage API explains
a dataset that a Pipeline declares and that was never written, and still answers 404 for one nobody declares.

Component tests that also need a PostgreSQL server (the throwaway one of the integration tier)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api_support import get
from fakekube import PIPELINES, FakeKube
from headwater.lineage.recorder import Recorder
from headwater.lineage.store import LineageStore
from helpers import fresh_database
from manifests import pipeline, step
from wiring import Operator

pytestmark = [pytest.mark.component, pytest.mark.integration]

NS = "data"
WH = "postgres://warehouse"


@pytest.fixture
def store(database_url: str) -> Iterator[LineageStore]:
    with fresh_database(database_url) as url, LineageStore.open(url) as opened:
        yield opened


@pytest.fixture
def recorder(kube: FakeKube, store: LineageStore) -> Iterator[Recorder]:
    recording = Recorder(lambda: store, kube, [NS])
    recording.store = store  # passes run here, not on the thread
    yield recording


def ds(name: str) -> dict[str, str]:
    return {"namespace": WH, "name": name}


def revenue(*transform_outputs: str) -> dict[str, Any]:
    return pipeline("revenue", [step("extract", outputs=[ds("raw.payments")]),
                                step("transform", "extract", inputs=[ds("raw.payments")],
                                     outputs=[ds(o) for o in transform_outputs])])


def reasons(store: LineageStore, dataset: str) -> tuple[int, list[str]]:
    status, body = get(store, f"/v1/explain/{dataset}")
    if status != 200:
        return status, []
    root = next(n for n in body["nodes"] if n["dataset"]["name"] == dataset)
    return status, [r["message"] for r in root["reasons"]]


def test_explain_names_the_step_of_a_ready_pipeline_that_declares_a_dataset_never_written(
        kube: FakeKube, operator: Operator, store: LineageStore, recorder: Recorder) -> None:
    kube.seed(revenue("analytics.revenue"), NS)
    operator.deliver()
    recorder.run_pass()
    assert reasons(store, "analytics.revenue") == (
        200, ["declared by pipeline revenue step transform, never written: no run yet"])
    assert reasons(store, "raw.payments") == (
        200, ["declared by pipeline revenue step extract, never written: no run yet"])
    status, body = get(store, "/v1/explain/analytics.nobody")
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_a_pipeline_not_ready_declares_nothing_and_explain_still_answers_404(
        kube: FakeKube, operator: Operator, store: LineageStore, recorder: Recorder) -> None:
    broken = revenue("analytics.revenue")
    broken["spec"]["steps"][1]["dependsOn"] = ["nowhere"]
    kube.seed(broken, NS)
    operator.deliver()
    conditions = kube.read(PIPELINES, NS, "revenue")["status"]["conditions"]
    assert [c["status"] for c in conditions if c["type"] == "Ready"] == ["False"]
    recorder.run_pass()
    assert reasons(store, "analytics.revenue") == (404, [])


def test_an_output_a_pipeline_stops_declaring_is_no_longer_explained_as_waiting_for_its_first_run(
        kube: FakeKube, operator: Operator, store: LineageStore, recorder: Recorder) -> None:
    kube.seed(revenue("analytics.revenue"), NS)
    operator.deliver()
    recorder.run_pass()
    kube.patch(PIPELINES, NS, "revenue", {"spec": {"steps": revenue("analytics.daily")["spec"]["steps"]}})
    operator.deliver()
    recorder.run_pass()
    assert reasons(store, "analytics.daily") == (
        200, ["declared by pipeline revenue step transform, never written: no run yet"])
    assert reasons(store, "analytics.revenue") == (200, [])


def test_a_deleted_pipeline_no_longer_declares_what_it_never_wrote(
        kube: FakeKube, operator: Operator, store: LineageStore, recorder: Recorder) -> None:
    kube.seed(revenue("analytics.revenue"), NS)
    operator.deliver()
    recorder.run_pass()
    kube.delete(PIPELINES, NS, "revenue")
    recorder.run_pass()
    assert reasons(store, "analytics.revenue") == (200, [])
