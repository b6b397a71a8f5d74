"""Skipping redundant reconciles: one pass in flight per run, and events that cannot change a run."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from headwater.runs.dedup import Coalescer, RunMemory
from headwater.spec import constants as c
from headwater.spec.models import PipelineRunStatus, RunPhase, StepPhase, StepStatus

pytestmark = pytest.mark.unit


def test_a_request_during_a_pass_returns_at_once_and_folds_into_one_more_pass() -> None:
    passes = Coalescer()
    inside, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def work() -> int:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            inside.set()
            assert release.wait(10)
        return len(calls)

    first: list[int | None] = []
    worker = threading.Thread(target=lambda: first.append(passes.run("run-a", work)))
    worker.start()
    assert inside.wait(10)
    # three requests while the first pass runs: each returns None at once, together they cost one pass
    assert [passes.run("run-a", work) for _ in range(3)] == [None, None, None]
    release.set()
    worker.join(10)
    assert calls == [1, 2]
    assert first == [2]


def test_other_keys_are_not_held_up_by_a_busy_key() -> None:
    passes = Coalescer()
    inside, release = threading.Event(), threading.Event()

    def slow() -> str:
        inside.set()
        assert release.wait(10)
        return "a"

    worker = threading.Thread(target=passes.run, args=("run-a", slow))
    worker.start()
    assert inside.wait(10)
    assert passes.run("run-b", lambda: "b") == "b"
    release.set()
    worker.join(10)


def test_a_failing_pass_frees_its_key() -> None:
    passes = Coalescer()

    def boom() -> None:
        raise RuntimeError("api down")

    with pytest.raises(RuntimeError):
        passes.run("run-a", boom)
    assert passes.run("run-a", lambda: "again") == "again"


def test_every_request_is_covered_by_a_pass_that_started_after_it() -> None:
    passes = Coalescer()
    lock = threading.Lock()
    requested = 0
    covered: list[int] = []  # for each pass: how many requests had been made when it started
    inside, most_inside = 0, 0

    def work() -> None:
        nonlocal inside, most_inside
        with lock:
            covered.append(requested)
            inside += 1
            most_inside = max(most_inside, inside)
        with lock:
            inside -= 1

    def request() -> None:
        nonlocal requested
        with lock:
            requested += 1
        passes.run("run-a", work)

    threads = [threading.Thread(target=request) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert max(covered) == 200
    assert most_inside == 1
    assert passes.run("run-a", lambda: "free") == "free"


def _run(resource_version: str, *steps: StepStatus, phase: RunPhase = RunPhase.RUNNING) -> tuple[
        dict[str, Any], PipelineRunStatus]:
    run = {"metadata": {"namespace": "ns", "name": "rev-1", "resourceVersion": resource_version}}
    return run, PipelineRunStatus(phase=phase, steps=list(steps))


def _job(step: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"rev-1-{step}", "labels": {c.LABEL_RUN: "rev-1", c.LABEL_STEP: step}},
            "status": status}


def test_the_echo_of_a_reconciled_version_is_known_and_a_newer_version_is_not() -> None:
    memory = RunMemory()
    memory.remember(*_run("41"))
    assert memory.is_known("ns", "rev-1", "41")
    assert not memory.is_known("ns", "rev-1", "42")
    assert not memory.is_known("ns", "rev-2", "41")
    memory.forget("ns", "rev-1")
    assert not memory.is_known("ns", "rev-1", "41")


def test_the_echo_of_an_earlier_write_of_the_same_pass_is_known_when_it_arrives_late() -> None:
    memory = RunMemory()
    for version in ("50", "51", "52", "53"):  # read, first status, the pass's status, the label
        memory.remember(*_run(version))
    assert all(memory.is_known("ns", "rev-1", v) for v in ("50", "51", "52", "53"))
    memory.remember(*_run("60"))
    assert not memory.is_known("ns", "rev-1", "50")  # only the latest few are kept
    assert memory.is_known("ns", "rev-1", "60")


def test_job_events_that_leave_the_step_as_recorded_are_dropped() -> None:
    memory = RunMemory()
    memory.remember(*_run("7", StepStatus(name="a", phase=StepPhase.RUNNING, job="rev-1-a", attempts=1),
                          StepStatus(name="b", phase=StepPhase.PENDING, job="rev-1-b")))
    # the pod became ready; a succeeded pod the Job controller has not counted yet
    assert not memory.job_changes_run("ns", "rev-1", _job("a", active=1, ready=1))
    assert not memory.job_changes_run("ns", "rev-1", _job("a", uncountedTerminatedPods={"succeeded": ["u"]}))
    # b's own creation and its start time
    assert not memory.job_changes_run("ns", "rev-1", _job("b"))
    assert not memory.job_changes_run("ns", "rev-1", _job("b", startTime="2026-11-23T06:00:00Z"))


def test_job_events_that_change_the_step_reach_the_engine() -> None:
    memory = RunMemory()
    memory.remember(*_run("7", StepStatus(name="a", phase=StepPhase.RUNNING, job="rev-1-a", attempts=1),
                          StepStatus(name="b", phase=StepPhase.PENDING, job="rev-1-b")))
    done = [{"type": "SuccessCriteriaMet", "status": "True"}]
    assert memory.job_changes_run("ns", "rev-1", _job("a", conditions=done, succeeded=1))
    assert memory.job_changes_run("ns", "rev-1", _job("a", failed=1, active=1))  # a retry
    assert memory.job_changes_run("ns", "rev-1", _job("b", active=1))
    assert memory.job_changes_run("ns", "rev-1", _job("a", active=1), deleted=True)
    assert memory.job_changes_run("ns", "rev-1", _job("c", active=1))  # a step the memory does not know
    assert memory.job_changes_run("ns", "rev-2", _job("a", active=1))  # a run the memory does not know


def test_job_events_after_the_step_or_the_run_finished_are_dropped() -> None:
    memory = RunMemory()
    memory.remember(*_run("9", StepStatus(name="a", phase=StepPhase.SUCCEEDED, job="rev-1-a", attempts=1),
                          StepStatus(name="b", phase=StepPhase.RUNNING, job="rev-1-b", attempts=1)))
    assert not memory.job_changes_run("ns", "rev-1", _job("a", active=1), deleted=True)
    memory.remember(*_run("10", StepStatus(name="a", phase=StepPhase.SUCCEEDED, job="rev-1-a", attempts=1),
                          StepStatus(name="b", phase=StepPhase.CANCELLED, job="rev-1-b", attempts=1),
                          phase=RunPhase.CANCELLED))
    assert not memory.job_changes_run("ns", "rev-1", _job("b", active=1), deleted=True)
