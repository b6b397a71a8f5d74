"""A schedule slot due while the run of an earlier slot is unfinished: Replace cancels that run and starts
the new one, Forbid skips the slot, Allow runs both."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fakekube import JOBS, PIPELINES, RUNS, FakeKube, ManualClock
from headwater.pipelines.scheduler import schedule_pipeline
from headwater.pipelines.scheduling import Action
from headwater.spec.names import job_name
from manifests import pipeline, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"
FIRST, SECOND = "orders-202611230610", "orders-202611230620"


def schedule(kube: FakeKube, operator: Operator, clock: ManualClock, at: datetime) -> Action:
    """One pass of the schedule loop at ``at``, then the events it caused."""
    clock.now = at
    decision = schedule_pipeline(kube, kube.read(PIPELINES, NS, "orders"), now=at, post_event=operator.events)
    operator.deliver()
    return decision.action


def start(kube: FakeKube, operator: Operator, clock: ManualClock, policy: str) -> None:
    """Pipeline orders every ten minutes under ``policy``; the 06:10 slot's run is running its Job."""
    kube.seed(pipeline("orders", [step("load")], schedule="*/10 * * * *", concurrencyPolicy=policy), NS)
    operator.deliver()  # Ready=True, which the scheduler waits for
    assert schedule(kube, operator, clock, datetime(2026, 11, 23, 6, 10, 5, tzinfo=UTC)) == Action.RUN
    kube.start_job(NS, job_name(FIRST, "load"))
    operator.deliver()
    assert kube.read(RUNS, NS, FIRST)["status"]["phase"] == "Running"


def phase(kube: FakeKube, name: str) -> str:
    return str(kube.read(RUNS, NS, name)["status"]["phase"])


def reasons(kube: FakeKube, name: str) -> list[str]:
    return [reason for _, reason, _ in kube.events_about(name)]


def test_replace_cancels_the_unfinished_run_of_the_earlier_slot_and_starts_the_new_one(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    start(kube, operator, clock, "Replace")
    assert schedule(kube, operator, clock, datetime(2026, 11, 23, 6, 20, 5, tzinfo=UTC)) == Action.REPLACE
    earlier = kube.read(RUNS, NS, FIRST)
    assert earlier["spec"]["cancel"] is True
    assert earlier["status"]["phase"] == "Cancelled"
    assert [(s["phase"], s["reason"]) for s in earlier["status"]["steps"]] == [("Cancelled", "Cancelled")]
    assert kube.names(JOBS, NS) == [job_name(SECOND, "load")]  # the earlier run's Job is deleted
    assert phase(kube, SECOND) == "Running"
    assert reasons(kube, "orders") == ["ScheduledRun", "ReplacedRun", "ScheduledRun"]
    assert kube.read(PIPELINES, NS, "orders")["status"]["lastScheduleTime"] == "2026-11-23T06:20:00Z"
    assert operator.errors == []


def test_forbid_skips_the_slot_while_the_earlier_run_is_unfinished_and_runs_the_next_one_after(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    start(kube, operator, clock, "Forbid")
    assert schedule(kube, operator, clock, datetime(2026, 11, 23, 6, 20, 5, tzinfo=UTC)) == Action.SKIP
    assert kube.names(RUNS, NS) == [FIRST]
    assert phase(kube, FIRST) == "Running"
    assert reasons(kube, "orders") == ["ScheduledRun", "SkippedSchedule"]
    assert kube.read(PIPELINES, NS, "orders")["status"]["lastScheduleTime"] == "2026-11-23T06:20:00Z"
    kube.complete_job(NS, job_name(FIRST, "load"))
    operator.deliver()
    assert schedule(kube, operator, clock, datetime(2026, 11, 23, 6, 30, 5, tzinfo=UTC)) == Action.RUN
    assert kube.names(RUNS, NS) == [FIRST, "orders-202611230630"]
    assert phase(kube, "orders-202611230630") == "Running"


def test_allow_starts_the_new_slot_beside_the_unfinished_run(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    start(kube, operator, clock, "Allow")
    assert schedule(kube, operator, clock, datetime(2026, 11, 23, 6, 20, 5, tzinfo=UTC)) == Action.RUN
    assert (phase(kube, FIRST), phase(kube, SECOND)) == ("Running", "Running")
    assert kube.names(JOBS, NS) == [job_name(FIRST, "load"), job_name(SECOND, "load")]


def test_a_slot_already_handled_is_not_run_again(kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    start(kube, operator, clock, "Allow")
    assert schedule(kube, operator, clock, datetime(2026, 11, 23, 6, 15, tzinfo=UTC)) == Action.NONE
    assert kube.names(RUNS, NS) == [FIRST]


@pytest.mark.parametrize("policy", ["Replace", "Forbid"])
def test_a_slot_whose_run_exists_but_was_not_recorded_as_scheduled_keeps_that_run(
        kube: FakeKube, operator: Operator, clock: ManualClock, policy: str) -> None:
    """The run was created but writing lastScheduleTime failed: the next pass must not treat the slot's own
    run as an earlier one (Replace would cancel it and start nothing; Forbid would call the slot skipped)."""
    kube.seed(pipeline("orders", [step("load")], schedule="*/10 * * * *", concurrencyPolicy=policy), NS)
    operator.deliver()
    kube.fail("patch_pipeline_status", 500, name="orders")
    at = datetime(2026, 11, 23, 6, 10, 5, tzinfo=UTC)
    with pytest.raises(Exception, match="500"):
        schedule(kube, operator, clock, at)
    assert kube.names(RUNS, NS) == [FIRST]
    assert schedule(kube, operator, clock, at) == Action.RUN
    assert kube.names(RUNS, NS) == [FIRST]
    assert not kube.read(RUNS, NS, FIRST)["spec"].get("cancel")
    assert phase(kube, FIRST) == "Running"
    assert "ReplacedRun" not in reasons(kube, "orders") and "SkippedSchedule" not in reasons(kube, "orders")
    assert kube.read(PIPELINES, NS, "orders")["status"]["lastScheduleTime"] == "2026-11-23T06:10:00Z"
