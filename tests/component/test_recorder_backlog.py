"""The lineage recorder's backlog is the finished runs without Recorded=True: one pass writes each of them
to the store and marks it, skips what is recorded or unfinished, and survives the store failing mid-pass.

Component tier: the store is :class:`KeptRecords`, an in-memory stand-in with the two calls the
recorder makes (``record`` and ``close``); the PostgreSQL store's writes have their own integration tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from fakekube import RUNS, FakeKube, ManualClock
from headwater.lineage.recorder import Recorder
from headwater.lineage.records import Record, RunRecord
from headwater.lineage.run_records import CONDITION_RECORDED, is_recorded, run_id
from headwater.spec.names import job_name
from helpers import wait_for
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

NAMESPACES = ("data", "ops")
PHASES = ("Succeeded", "Failed", "Cancelled")
EARLIER = {"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "all 1 steps succeeded",
           "lastTransitionTime": "2026-11-23T05:00:00Z"}


class KeptRecords:
    """The lineage store as the recorder uses it, in memory; the ``fail_at``-th write loses its connection."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.records: list[Record] = []
        self.writes = 0
        self.fail_at = fail_at
        self.closed = False

    def record(self, *records: Record) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        self.records.extend(records)

    def close(self) -> None:
        self.closed = True

    def runs(self) -> list[str]:
        return sorted(r.run_id for r in self.records if isinstance(r, RunRecord))


def finished_run(name: str, phase: str, recorded: bool) -> dict[str, Any]:
    body = run(name, "orders")
    conditions = [EARLIER]
    if recorded:
        conditions.append({"type": CONDITION_RECORDED, "status": "True", "reason": "Recorded",
                           "message": "in the store", "lastTransitionTime": "2026-11-23T05:30:00Z"})
    body["status"] = {
        "phase": phase, "startedAt": "2026-11-23T05:00:00Z", "finishedAt": "2026-11-23T05:01:00Z",
        "pipelineSpec": {"steps": [step("load",
                                        outputs=[{"namespace": "postgres://warehouse", "name": "raw.orders"}])]},
        "steps": [{"name": "load", "phase": "Succeeded" if phase == "Succeeded" else "Failed", "attempts": 1,
                   "startedAt": "2026-11-23T05:00:00Z", "finishedAt": "2026-11-23T05:01:00Z"}],
        "conditions": conditions,
    }
    return body


@pytest.fixture
def backlog(kube: FakeKube) -> list[str]:
    """50 finished runs over two namespaces, every third already recorded, and 3 unfinished runs;
    returns the ids of the 33 finished runs not recorded yet."""
    waiting = []
    for i in range(50):
        namespace, recorded = NAMESPACES[i % 2], i % 3 == 0
        uid = kube.seed(finished_run(f"orders-{i:02d}", PHASES[i % 3], recorded), namespace)["metadata"]["uid"]
        if not recorded:
            waiting.append(run_id(namespace, f"orders-{i:02d}", uid))
    for i in range(3):
        unfinished = run(f"running-{i}", "orders")
        unfinished["status"] = {"phase": "Running"}
        kube.seed(unfinished, "data")
    return sorted(waiting)


@pytest.fixture
def recorder_of(kube: FakeKube) -> Iterator[list[Recorder]]:
    """Recorders started by the test, stopped after it."""
    started: list[Recorder] = []
    yield started
    for recorder in started:
        recorder.stop()


def start_recorder(kube: FakeKube, store: KeptRecords, started: list[Recorder]) -> Recorder:
    # a rescan far beyond the test's waits: what is recorded comes from the first pass or from notify
    recorder = Recorder(lambda: store, kube, [None], rescan_seconds=300)
    started.append(recorder)
    recorder.start()
    return recorder


def recorded(kube: FakeKube) -> list[str]:
    return sorted(run_id(r["metadata"]["namespace"], r["metadata"]["name"], r["metadata"]["uid"])
                  for r in kube.select(RUNS) if is_recorded(r))


def test_one_pass_writes_every_finished_unrecorded_run_and_marks_it_recorded(
        kube: FakeKube, backlog: list[str], recorder_of: list[Recorder]) -> None:
    store = KeptRecords()
    before = {r["metadata"]["name"]: r for r in kube.select(RUNS)}
    recorder = start_recorder(kube, store, recorder_of)
    wait_for(lambda: len(recorded(kube)) == 50, timeout=10, interval=0.02, message="50 runs recorded")
    assert store.runs() == backlog  # each once; those recorded before are not written again
    assert recorder.backlog == 0
    for obj in kube.select(RUNS):
        name, conditions = obj["metadata"]["name"], obj["status"].get("conditions") or []
        if name.startswith("running-"):
            assert conditions == [], name
        elif run_id(obj["metadata"]["namespace"], name, obj["metadata"]["uid"]) in backlog:
            assert [c["type"] for c in conditions] == ["Succeeded", CONDITION_RECORDED], name
            assert conditions[0] == EARLIER
        else:
            assert obj == before[name]  # untouched
    recorder_of.remove(recorder)
    recorder.stop()
    assert store.closed


def test_a_store_write_failing_mid_pass_is_retried_and_every_run_is_still_recorded_once(
        kube: FakeKube, backlog: list[str], recorder_of: list[Recorder]) -> None:
    store = KeptRecords(fail_at=10)
    start_recorder(kube, store, recorder_of)
    wait_for(lambda: len(recorded(kube)) == 50, timeout=10, interval=0.05, message="50 runs recorded")
    assert store.writes == len(backlog) + 1
    assert store.runs() == backlog


def test_a_run_the_engine_finishes_is_recorded_without_waiting_for_the_next_scan(
        kube: FakeKube, clock: ManualClock, recorder_of: list[Recorder]) -> None:
    store = KeptRecords()
    recorder = start_recorder(kube, store, recorder_of)
    operator = Operator(kube, clock, recorder=recorder)
    kube.seed(pipeline("orders", [step("load")]), "data")
    uid = kube.seed(run("orders-1", "orders"), "data")["metadata"]["uid"]
    operator.deliver()
    kube.complete_job("data", job_name("orders-1", "load"))
    operator.deliver()
    lineage_id = run_id("data", "orders-1", uid)
    wait_for(lambda: recorded(kube) == [lineage_id], timeout=10, interval=0.02, message="the run recorded")
    assert store.runs() == [lineage_id]
    assert operator.errors == []
