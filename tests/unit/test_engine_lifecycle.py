"""The run engine over an in-memory Kubernetes API: the lineage finalizer, deletion, and after-finish effects."""

from __future__ import annotations

import contextlib
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from fake_kube import FakeKube
from headwater.adapters.metrics import Metrics
from headwater.lineage.run_records import FINALIZER
from headwater.runs.engine import RunEngine
from headwater.runs.jobs import JobSettings
from headwater.sla.monitor import SlaMonitor

pytestmark = pytest.mark.unit

NS = "data"
STEPS = [{"id": "extract", "type": "container", "image": "busybox",
          "outputs": [{"namespace": "postgres://warehouse", "name": "raw.orders"}]},
         {"id": "load", "type": "container", "image": "busybox", "dependsOn": ["extract"],
          "inputs": [{"namespace": "postgres://warehouse", "name": "raw.orders"}]}]


class Notified:
    """Where the engine reports finished runs (the recorder's notify)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []

    def notify(self, namespace: str, name: str) -> None:
        self.runs.append((namespace, name))


def cluster(**pipeline: Any) -> FakeKube:
    kube = FakeKube()
    kube.add_pipeline(NS, "rev", {"steps": STEPS, **pipeline})
    return kube


def engine(kube: FakeKube, recorder: Notified | None = None, **kwargs: Any) -> RunEngine:
    return RunEngine(kube, JobSettings("img"), lambda *_: None, recorder=recorder, **kwargs)  # type: ignore[arg-type]


def new_run(kube: FakeKube, name: str = "rev-1") -> dict[str, Any]:
    return kube.add_run({"metadata": {"name": name, "namespace": NS}, "spec": {"pipelineRef": {"name": "rev"}}})


def run_of(kube: FakeKube, name: str = "rev-1") -> dict[str, Any]:
    return kube.runs[(NS, name)]


def finish_all_jobs(kube: FakeKube, runs: RunEngine, name: str = "rev-1", succeeded: bool = True) -> None:
    """Let the Job controller finish every Job, step after step, until the run ends."""
    for _ in range(5):
        for (ns, job), obj in list(kube.jobs.items()):
            if not obj["status"]:
                kube.finish_job(ns, job, succeeded)
        runs.reconcile(NS, name)
        if run_of(kube, name)["status"]["phase"] != "Running":
            return


def test_a_started_run_is_held_by_the_lineage_finalizer_only_when_a_store_is_configured() -> None:
    with_store, without = cluster(), cluster()
    new_run(with_store)
    new_run(without)
    engine(with_store, Notified()).reconcile(NS, "rev-1")
    engine(without).reconcile(NS, "rev-1")
    assert run_of(with_store)["metadata"]["finalizers"] == [FINALIZER]
    assert run_of(with_store)["metadata"]["labels"]["headwater.dev/pipeline"] == "rev"
    assert run_of(without)["metadata"].get("finalizers") in (None, [])
    assert run_of(with_store)["status"]["phase"] == run_of(without)["status"]["phase"] == "Running"


def test_a_run_started_before_runs_were_held_gets_the_finalizer_on_its_next_reconcile() -> None:
    kube = cluster()
    new_run(kube)
    engine(kube).reconcile(NS, "rev-1")  # an operator without a store started it
    engine(kube, Notified()).reconcile(NS, "rev-1")
    assert run_of(kube)["metadata"]["finalizers"] == [FINALIZER]


def test_a_run_deleted_while_running_is_cancelled_and_stays_until_recorded() -> None:
    kube, recorder = cluster(), Notified()
    runs = engine(kube, recorder)
    new_run(kube)
    runs.reconcile(NS, "rev-1")
    assert list(kube.jobs) == [(NS, "rev-1-extract")]
    kube.delete_run(NS, "rev-1")
    runs.reconcile(NS, "rev-1")
    run = run_of(kube)
    assert run["status"]["phase"] == "Cancelled"
    assert [s["phase"] for s in run["status"]["steps"]] == ["Cancelled", "Cancelled"]
    assert kube.jobs == {}
    assert recorder.runs == [(NS, "rev-1")]  # the recorder writes it, then lets it go


def test_a_run_deleted_before_it_started_is_let_go_at_once() -> None:
    kube = cluster()
    new_run(kube)
    kube.runs[(NS, "rev-1")]["metadata"]["finalizers"] = [FINALIZER]  # e.g. set by an earlier operator
    kube.delete_run(NS, "rev-1")
    engine(kube, Notified()).reconcile(NS, "rev-1")
    assert (NS, "rev-1") not in kube.runs
    assert kube.jobs == {}


def test_without_a_store_a_held_run_is_let_go_at_once() -> None:
    kube = cluster()
    new_run(kube)
    engine(kube, Notified()).reconcile(NS, "rev-1")
    runs = engine(kube)  # the operator restarted without a lineage store
    finish_all_jobs(kube, runs)
    assert run_of(kube)["metadata"]["finalizers"] == []
    kube.delete_run(NS, "rev-1")
    assert (NS, "rev-1") not in kube.runs


def settled(kube: FakeKube, name: str = "rev-1") -> tuple[str, str] | None:
    conds = {c["type"]: c for c in run_of(kube, name)["status"].get("conditions") or []}
    cond = conds.get("Settled")
    return (cond["status"], cond["reason"]) if cond else None


def test_after_finish_effects_that_fail_are_marked_and_applied_again_until_they_are_done() -> None:
    kube = cluster()
    monitor = SlaMonitor(kube, Metrics(), lambda *_: None, None, [NS])  # type: ignore[arg-type]
    runs = engine(kube, on_finish=monitor.run_finished)
    new_run(kube)
    runs.reconcile(NS, "rev-1")
    kube.fail["patch_pipeline_status"] = lambda: ApiException(status=422, reason="Unprocessable")
    with contextlib.suppress(ApiException):  # the effects ran inline, right after the final status write
        finish_all_jobs(kube, runs)
    assert run_of(kube)["status"]["phase"] == "Succeeded"
    assert settled(kube) == ("False", "EffectsFailed")
    assert "lastRun" not in kube.pipelines[(NS, "rev")]["status"]
    del kube.fail["patch_pipeline_status"]
    runs._settle_retries.succeeded(run_of(kube)["metadata"]["uid"])  # as if its back-off had passed
    runs.reconcile(NS, "rev-1")  # what the resync does for a finished run that is not settled
    assert settled(kube) == ("True", "Settled")
    status = kube.pipelines[(NS, "rev")]["status"]
    assert (status["lastRun"], status["lastRunPhase"]) == ("rev-1", "Succeeded")
    assert status["datasets"][0]["lastRun"] == "rev-1"


def test_a_run_that_settles_after_a_newer_one_changes_neither_last_run_nor_last_updated() -> None:
    kube = cluster()
    monitor = SlaMonitor(kube, Metrics(), lambda *_: None, None, [NS])  # type: ignore[arg-type]
    clock = iter(datetime(2026, 11, 23, 6, minute, tzinfo=UTC) for minute in range(60))
    runs = engine(kube, on_finish=monitor.run_finished, clock=lambda: next(clock))
    for name in ("rev-old", "rev-new"):
        new_run(kube, name)
        runs.reconcile(NS, name)
    kube.fail["get_pipeline"] = lambda: ApiException(status=500, reason="apiserver away")
    finish_all_jobs(kube, runs, "rev-old")  # finished first, but its effects could not be applied
    del kube.fail["get_pipeline"]
    finish_all_jobs(kube, runs, "rev-new")
    assert settled(kube, "rev-old") == ("False", "Pending") and settled(kube, "rev-new") == ("True", "Settled")
    newer = copy.deepcopy(kube.pipelines[(NS, "rev")]["status"])
    runs._settle_retries.succeeded(run_of(kube, "rev-old")["metadata"]["uid"])
    runs.reconcile(NS, "rev-old")
    assert settled(kube, "rev-old") == ("True", "Settled")
    status = kube.pipelines[(NS, "rev")]["status"]
    assert (status["lastRun"], status["datasets"]) == (newer["lastRun"], newer["datasets"])
    assert status["datasets"][0]["lastRun"] == "rev-new"


def test_with_a_history_limit_of_zero_a_run_goes_as_soon_as_its_outcome_is_applied() -> None:
    kube = cluster(successfulRunsHistoryLimit=0)
    runs = engine(kube)
    new_run(kube)
    runs.reconcile(NS, "rev-1")
    finish_all_jobs_until_gone(kube, runs)
    assert (NS, "rev-1") not in kube.runs
    assert kube.pipelines[(NS, "rev")]["status"]["lastRun"] == "rev-1"


def finish_all_jobs_until_gone(kube: FakeKube, runs: RunEngine, name: str = "rev-1") -> None:
    for _ in range(5):
        for (ns, job), obj in list(kube.jobs.items()):
            if not obj["status"]:
                kube.finish_job(ns, job)
        runs.reconcile(NS, name)
        if (NS, name) not in kube.runs:
            return
