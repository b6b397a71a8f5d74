"""The run engine over the in-memory Kubernetes API: the lineage finalizer, deletion, and after-finish effects
as a level (the ``Settled`` condition), applied under the operator's per-object isolation."""

from __future__ import annotations

from typing import Any

import pytest

from fakekube import JOBS, PIPELINES, RUNS, FakeKube, ManualClock
from headwater.adapters.isolation import Isolation
from headwater.adapters.metrics import Metrics
from headwater.lineage.run_records import FINALIZER
from headwater.runs.engine import RunEngine
from headwater.runs.jobs import JobSettings
from headwater.sla.monitor import SlaMonitor
from headwater.spec import constants as c
from headwater.spec.names import job_name, label_value
from manifests import pipeline, run, step

pytestmark = pytest.mark.component

NS = "data"
WH = "postgres://warehouse"
BACKOFF_OVER = 3600.0
"""Seconds after which any object's backoff is over (it is capped at 5 minutes)."""


class Notified:
    """Where the engine reports finished runs (the recorder's notify)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []

    def notify(self, namespace: str, name: str) -> None:
        self.runs.append((namespace, name))


@pytest.fixture
def kube(clock: ManualClock) -> FakeKube:
    return pipelines(FakeKube(clock))


def pipelines(kube: FakeKube, **spec: Any) -> FakeKube:
    kube.seed(pipeline("rev", [step("extract", outputs=[{"namespace": WH, "name": "raw.orders"}]),
                               step("load", "extract", inputs=[{"namespace": WH, "name": "raw.orders"}])], **spec), NS)
    return kube


def engine(kube: FakeKube, clock: ManualClock, recorder: Notified | None = None, *,
           monitor: bool = False) -> RunEngine:
    events = Events(kube)
    isolation = Isolation(events, clock=lambda: clock().timestamp())
    sla = SlaMonitor(kube, Metrics(), events, None, [NS], isolation=isolation) if monitor else None
    runs = RunEngine(kube, JobSettings("img"), events, clock=clock, recorder=recorder,
                     on_finish=sla.run_finished if sla else None, isolation=isolation)
    kube.follow_jobs(runs.jobs.saw)  # as the operator's Job watch would
    return runs


class Events:
    """Warning and Normal Events as the engine posts them, kept."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.posted: list[tuple[str, str, str, str]] = []

    def __call__(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.posted.append((obj["metadata"]["name"], type_, reason, message))


def new_run(kube: FakeKube, name: str = "rev-1") -> dict[str, Any]:
    return kube.seed(run(name, "rev"), NS)


def run_of(kube: FakeKube, name: str = "rev-1") -> dict[str, Any]:
    return kube.read(RUNS, NS, name)


def jobs(kube: FakeKube) -> list[str]:
    return kube.names(JOBS, NS)


def finish_all_jobs(kube: FakeKube, runs: RunEngine, clock: ManualClock, name: str = "rev-1",
                    succeeded: bool = True) -> None:
    """Let the Job controller finish every Job of the run, step after step, until the run ends or is gone."""
    for _ in range(5):
        for job in kube.select(JOBS, NS, f"{c.LABEL_RUN}={label_value(name)}"):
            if not (job.get("status") or {}).get("conditions"):
                clock.advance(60)
                if succeeded:
                    kube.complete_job(NS, job["metadata"]["name"])
                else:
                    kube.fail_job(NS, job["metadata"]["name"], attempts=1)
        runs.reconcile(NS, name)
        current = kube.get(RUNS, NS, name)
        if current is None or current["status"]["phase"] != "Running":
            return


def settled(kube: FakeKube, name: str = "rev-1") -> tuple[str, str] | None:
    conds = {c["type"]: c for c in run_of(kube, name)["status"].get("conditions") or []}
    cond = conds.get("Settled")
    return (cond["status"], cond["reason"]) if cond else None


def test_a_started_run_is_held_by_the_lineage_finalizer_only_when_a_store_is_configured(clock: ManualClock) -> None:
    with_store, without = pipelines(FakeKube(clock)), pipelines(FakeKube(clock))
    new_run(with_store)
    new_run(without)
    engine(with_store, clock, Notified()).reconcile(NS, "rev-1")
    engine(without, clock).reconcile(NS, "rev-1")
    assert run_of(with_store)["metadata"]["finalizers"] == [FINALIZER]
    assert run_of(with_store)["metadata"]["labels"]["headwater.dev/pipeline"] == "rev"
    assert run_of(without)["metadata"].get("finalizers") in (None, [])
    assert run_of(with_store)["status"]["phase"] == run_of(without)["status"]["phase"] == "Running"


def test_a_run_created_held_and_labelled_as_the_triggers_create_them_starts_with_one_write(
        kube: FakeKube, clock: ManualClock) -> None:
    held = run("rev-1", "rev")
    held["metadata"].update(finalizers=[FINALIZER], labels={c.LABEL_PIPELINE: "rev"})
    kube.seed(held, NS)
    engine(kube, clock, Notified()).reconcile(NS, "rev-1")
    assert kube.count("patch_run_metadata", "rev-1") == 0
    assert run_of(kube)["metadata"]["finalizers"] == [FINALIZER]
    assert run_of(kube)["status"]["phase"] == "Running"


def test_a_run_started_before_runs_were_held_gets_the_finalizer_on_its_next_reconcile(
        kube: FakeKube, clock: ManualClock) -> None:
    new_run(kube)
    engine(kube, clock).reconcile(NS, "rev-1")  # an operator without a store started it
    engine(kube, clock, Notified()).reconcile(NS, "rev-1")
    assert run_of(kube)["metadata"]["finalizers"] == [FINALIZER]


def test_a_run_deleted_while_running_is_cancelled_and_stays_until_recorded(kube: FakeKube, clock: ManualClock) -> None:
    recorder = Notified()
    runs = engine(kube, clock, recorder)
    new_run(kube)
    runs.reconcile(NS, "rev-1")
    assert jobs(kube) == [job_name("rev-1", "extract")]
    kube.delete_run(NS, "rev-1")
    assert run_of(kube)["metadata"]["deletionTimestamp"]  # held by the finalizer
    runs.saw(run_of(kube))  # the deletion's event, as the watch hands it over
    runs.reconcile(NS, "rev-1")
    held = run_of(kube)
    assert held["status"]["phase"] == "Cancelled"
    assert [s["phase"] for s in held["status"]["steps"]] == ["Cancelled", "Cancelled"]
    assert jobs(kube) == []
    assert recorder.runs == [(NS, "rev-1")]  # the recorder writes it, then lets it go


def test_a_run_deleted_before_it_started_is_let_go_at_once(kube: FakeKube, clock: ManualClock) -> None:
    new_run(kube)
    kube.patch(RUNS, NS, "rev-1", {"metadata": {"finalizers": [FINALIZER]}})  # e.g. set by an earlier operator
    kube.delete_run(NS, "rev-1")
    engine(kube, clock, Notified()).reconcile(NS, "rev-1")
    assert kube.get(RUNS, NS, "rev-1") is None
    assert jobs(kube) == []


def test_without_a_store_a_held_run_is_let_go_at_once(kube: FakeKube, clock: ManualClock) -> None:
    new_run(kube)
    engine(kube, clock, Notified()).reconcile(NS, "rev-1")
    runs = engine(kube, clock)  # the operator restarted without a lineage store
    finish_all_jobs(kube, runs, clock)
    assert run_of(kube)["metadata"].get("finalizers") in (None, [])
    kube.delete_run(NS, "rev-1")
    assert kube.get(RUNS, NS, "rev-1") is None


def test_after_finish_effects_that_fail_are_marked_and_applied_again_until_they_are_done(
        kube: FakeKube, clock: ManualClock) -> None:
    runs = engine(kube, clock, monitor=True)
    new_run(kube)
    runs.reconcile(NS, "rev-1")
    refusing = kube.fail("patch_pipeline_status", 422, times=None)
    finish_all_jobs(kube, runs, clock)  # the effects ran inline, right after the final status write; none raises
    assert run_of(kube)["status"]["phase"] == "Succeeded"
    assert settled(kube) == ("False", "EffectsFailed")
    assert "lastRun" not in (kube.read(PIPELINES, NS, "rev").get("status") or {})
    posted = runs.post_event.posted  # type: ignore[attr-defined]
    assert ("rev-1", "Warning", "EffectsFailed") in {p[:3] for p in posted}  # on the run
    assert {p[2] for p in posted if p[0] == "rev"} == {"RunEffectFailed"}  # and each failed effect on the Pipeline
    refusing.stop()
    runs.reconcile(NS, "rev-1")  # still backing off: nothing is tried
    assert settled(kube) == ("False", "EffectsFailed")
    clock.advance(BACKOFF_OVER)
    runs.reconcile(NS, "rev-1")  # what the resync does for a finished run that is not settled
    assert settled(kube) == ("True", "Settled")
    status = kube.read(PIPELINES, NS, "rev")["status"]
    assert (status["lastRun"], status["lastRunPhase"]) == ("rev-1", "Succeeded")
    assert status["datasets"][0]["lastRun"] == "rev-1"


def test_one_failing_effect_keeps_none_of_the_others_from_being_applied(kube: FakeKube, clock: ManualClock) -> None:
    runs = engine(kube, clock, monitor=True)
    new_run(kube)
    runs.reconcile(NS, "rev-1")
    kube.fail("patch_pipeline_status", 500, times=1)  # the first effect's write (lastRun) fails
    finish_all_jobs(kube, runs, clock)
    status = kube.read(PIPELINES, NS, "rev")["status"]
    assert "lastRun" not in status
    assert status["datasets"][0]["lastRun"] == "rev-1"  # the SLA monitor's effect went on regardless
    assert settled(kube) == ("False", "EffectsFailed")


def test_a_run_that_settles_after_a_newer_one_changes_neither_last_run_nor_last_updated(
        kube: FakeKube, clock: ManualClock) -> None:
    runs = engine(kube, clock, monitor=True)
    for name in ("rev-old", "rev-new"):
        new_run(kube, name)
        runs.reconcile(NS, name)
    away = kube.fail("get_pipeline", 500, times=None)
    finish_all_jobs(kube, runs, clock, "rev-old")  # finished first, but its effects could not be applied
    away.stop()
    finish_all_jobs(kube, runs, clock, "rev-new")
    assert settled(kube, "rev-old") == ("False", "EffectsFailed") and settled(kube, "rev-new") == ("True", "Settled")
    newer = kube.read(PIPELINES, NS, "rev")["status"]
    clock.advance(BACKOFF_OVER)
    runs.reconcile(NS, "rev-old")
    assert settled(kube, "rev-old") == ("True", "Settled")
    status = kube.read(PIPELINES, NS, "rev")["status"]
    assert (status["lastRun"], status["datasets"]) == (newer["lastRun"], newer["datasets"])
    assert status["datasets"][0]["lastRun"] == "rev-new"


def test_with_a_history_limit_of_zero_a_run_goes_as_soon_as_it_owes_nothing_more(clock: ManualClock) -> None:
    kube = pipelines(FakeKube(clock), successfulRunsHistoryLimit=0)
    runs = engine(kube, clock)
    new_run(kube)
    runs.reconcile(NS, "rev-1")
    finish_all_jobs(kube, runs, clock)
    assert settled(kube) == ("True", "Settled")
    runs.join_history(run_of(kube))  # what the operator does on the event of the settled run
    assert kube.get(RUNS, NS, "rev-1") is None
    assert kube.read(PIPELINES, NS, "rev")["status"]["lastRun"] == "rev-1"
