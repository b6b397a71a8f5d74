"""The recorder against real PostgreSQL and the in-memory Kubernetes API: isolation, back-off, finalizers.

Component tests that also need a PostgreSQL server (the throwaway one of the integration tier)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from fakekube import RUNS, FakeKube
from headwater.adapters.metrics import Metrics
from headwater.lineage.recorder import Recorder
from headwater.lineage.run_records import FINALIZER
from headwater.lineage.store import LineageStore
from helpers import fresh_database, wait_for

pytestmark = [pytest.mark.component, pytest.mark.integration]

WAREHOUSE = "postgres://warehouse"


@pytest.fixture
def lineage_url(database_url: str) -> Iterator[str]:
    with fresh_database(database_url) as url:
        LineageStore.open(url).close()  # migrated
        yield url


def finished_run(name: str, message: str = "boom", finalizer: bool = True) -> dict[str, Any]:
    step = {"id": "load", "type": "container", "image": "busybox",
            "outputs": [{"namespace": WAREHOUSE, "name": "analytics.revenue"}]}
    return {
        "apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": "data", "labels": {"headwater.dev/pipeline": "rev"},
                     "finalizers": [FINALIZER] if finalizer else []},
        "spec": {"pipelineRef": {"name": "rev"}},
        "status": {"phase": "Failed", "startedAt": "2026-11-23T06:00:00Z", "finishedAt": "2026-11-23T06:01:00Z",
                   "pipelineSpec": {"steps": [step]},
                   "steps": [{"name": "load", "phase": "Failed", "attempts": 1, "reason": "BackoffLimitExceeded",
                              "message": message}]},
    }


def condition(kube: FakeKube, name: str, type_: str = "Recorded") -> dict[str, Any] | None:
    run = kube.get(RUNS, "data", name)
    conds = (run or {}).get("status", {}).get("conditions") or []
    return next((c for c in conds if c["type"] == type_), None)


def stored_runs(url: str) -> set[str]:
    with LineageStore.open(url, apply_migrations=False) as store, store.transaction() as conn:
        return {str(name) for (name,) in conn.execute("SELECT name FROM pipeline_runs")}


def test_a_run_the_store_always_refuses_is_marked_and_backed_off_and_the_runs_after_it_are_recorded(
        lineage_url: str) -> None:
    kube = FakeKube()
    kube.seed(finished_run("a-written-by-an-older-operator", message="NUL \x00 from a pod"))
    for i in range(3):
        kube.seed(finished_run(f"b-{i}"))
    metrics, events = Metrics(), []
    recorder = Recorder(lambda: LineageStore.open(lineage_url), kube, ["data"], rescan_seconds=0.2,
                        metrics=metrics, post_event=lambda *event: events.append(event))
    recorder.start()
    try:
        wait_for(lambda: stored_runs(lineage_url) == {"b-0", "b-1", "b-2"}, timeout=30,
                 message="the runs after the bad one to be recorded")
        wait_for(lambda: condition(kube, "a-written-by-an-older-operator"), timeout=30,
                 message="the bad run to be marked")
    finally:
        recorder.stop()
    bad = condition(kube, "a-written-by-an-older-operator")
    assert bad is not None and (bad["status"], bad["reason"]) == ("False", "RecordFailed")
    assert "NUL" in bad["message"]
    assert kube.read(RUNS, "data", "a-written-by-an-older-operator")["metadata"]["finalizers"] == [FINALIZER]
    assert [(e[1], e[2]) for e in events] == [("Warning", "RecordFailed")]
    failures = metrics.registry.get_sample_value("headwater_lineage_record_failures_total",
                                                 {"reason": "RecordFailed"})
    assert failures is not None and 1 <= failures <= 3  # backed off: 2 s, then 4 s, ... between attempts
    assert all(condition(kube, f"b-{i}") is not None for i in range(3))
    assert all(not kube.read(RUNS, "data", f"b-{i}")["metadata"].get("finalizers") for i in range(3))


def test_a_finished_run_deleted_before_it_is_recorded_is_held_recorded_and_then_let_go(lineage_url: str) -> None:
    kube = FakeKube()
    kube.seed(finished_run("gone-soon"))
    kube.delete_run("data", "gone-soon")
    assert kube.read(RUNS, "data", "gone-soon")["metadata"]["deletionTimestamp"]  # held by the finalizer
    recorder = Recorder(lambda: LineageStore.open(lineage_url), kube, ["data"], rescan_seconds=0.2)
    recorder.start()
    try:
        wait_for(lambda: kube.get(RUNS, "data", "gone-soon") is None, timeout=30, message="the run to be let go")
    finally:
        recorder.stop()
    assert stored_runs(lineage_url) == {"gone-soon"}


def test_a_recorded_run_that_kept_its_finalizer_after_a_crash_is_let_go_without_writing_again(
        lineage_url: str) -> None:
    kube = FakeKube()
    run = finished_run("crashed-in-between")
    run["status"]["conditions"] = [{"type": "Recorded", "status": "True", "reason": "Recorded", "message": "",
                                    "lastTransitionTime": "2026-11-23T06:02:00Z"}]
    kube.seed(run)
    recorder = Recorder(lambda: LineageStore.open(lineage_url), kube, ["data"], rescan_seconds=0.2)
    recorder.run_pass()
    recorder.stop()
    assert not kube.read(RUNS, "data", "crashed-in-between")["metadata"].get("finalizers")
    assert stored_runs(lineage_url) == set()


def test_while_the_store_is_unreachable_the_backlog_counts_the_runs_waiting_and_none_is_marked() -> None:
    kube = FakeKube()
    for i in range(3):
        kube.seed(finished_run(f"waiting-{i}"))
    metrics = Metrics()
    recorder = Recorder(lambda: LineageStore.open("postgresql://headwater@127.0.0.1:1/none", timeout=2), kube,
                        ["data"], metrics=metrics)
    with pytest.raises(psycopg.OperationalError):
        recorder.run_pass()
    assert recorder.backlog == 3
    assert all(condition(kube, f"waiting-{i}") is None for i in range(3))
