"""Outputs a Ready Pipeline declares are in the lineage store before its first run: the lineage API explains
a dataset that a Pipeline declares and that was never written, and still answers 404 for one nobody declares.

Component tests that also need a PostgreSQL server (the throwaway one of the integration tier)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api_support import get
from fakekube import PIPELINES, FakeKube
from headwater.adapters.metrics import Metrics
from headwater.lineage import recorder as recorder_module
from headwater.lineage.declarations import Declaration
from headwater.lineage.recorder import Recorder
from headwater.lineage.store import LineageStore
from headwater.lineage.writes import write_declaration
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


def test_same_named_pipelines_in_two_namespaces_declare_their_own_outputs_and_lose_only_their_own(
        kube: FakeKube, operator: Operator, store: LineageStore) -> None:
    recorder = Recorder(lambda: store, kube, ["team-a", "team-b"])
    recorder.store = store  # passes run here, not on the thread
    for namespace, table in [("team-a", "analytics.a"), ("team-b", "analytics.b")]:
        kube.seed(revenue(table), namespace)
    operator.deliver()
    recorder.run_pass()
    waiting = ["declared by pipeline revenue step transform, never written: no run yet"]
    assert (reasons(store, "analytics.a"), reasons(store, "analytics.b")) == ((200, waiting), (200, waiting))
    kube.delete(PIPELINES, "team-b", "revenue")
    recorder.run_pass()
    assert (reasons(store, "analytics.a"), reasons(store, "analytics.b")) == ((200, waiting), (200, []))


def test_a_declaration_the_store_refuses_gets_an_event_and_a_backoff_and_the_other_pipelines_are_declared(
        kube: FakeKube, operator: Operator, store: LineageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    kube.seed(revenue("analytics.revenue"), NS)
    kube.seed(pipeline("broken", [step("load", outputs=[ds("analytics.broken")])]), NS)
    operator.deliver()

    def refusing(conn: Any, declaration: Declaration) -> None:  # the store refuses this one Pipeline's rows
        if declaration.pipeline == "broken":
            conn.execute("SELECT 1 / 0")
        write_declaration(conn, declaration)

    monkeypatch.setattr(recorder_module, "write_declaration", refusing)
    events: list[tuple[Any, ...]] = []
    metrics, clock = Metrics(), [1000.0]
    recorder = Recorder(lambda: store, kube, [NS], metrics=metrics, post_event=lambda *e: events.append(e),
                        clock=lambda: clock[0])
    recorder.store = store

    def failures() -> float | None:
        return metrics.registry.get_sample_value("headwater_lineage_record_failures_total",
                                                 {"reason": "DeclarationFailed"})

    recorder.run_pass()
    assert reasons(store, "analytics.revenue") == (
        200, ["declared by pipeline revenue step transform, never written: no run yet"])
    assert reasons(store, "analytics.broken") == (404, [])
    assert [(e[0]["metadata"]["name"], e[1], e[2]) for e in events] == [("broken", "Warning", "DeclarationFailed")]
    assert "declared outputs not in the lineage store: DivisionByZero" in events[0][3]
    assert failures() == 1
    recorder.run_pass()  # backed off: not tried again at once
    assert failures() == 1
    clock[0] += 2.5
    recorder.run_pass()  # due again: tried, refused again; the same error is not posted twice
    assert failures() == 2
    assert len(events) == 1
    monkeypatch.undo()
    clock[0] += 4.5
    recorder.run_pass()  # the store takes it now
    assert reasons(store, "analytics.broken") == (
        200, ["declared by pipeline broken step load, never written: no run yet"])
    assert failures() == 2
