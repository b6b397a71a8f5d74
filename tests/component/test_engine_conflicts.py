"""The run engine against status write conflicts and failed writes: it re-reads and re-plans, gives up
after three tries, and never lets a failed pass make it drop the next event."""

from __future__ import annotations

import pytest

from fakekube import JOBS, RUNS, FakeKube, ManualClock
from headwater.spec import constants as c
from headwater.spec.names import job_name
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

J_ORDERS_1_EXTRACT = job_name("orders-1", "extract")
J_ORDERS_1_TRANSFORM = job_name("orders-1", "transform")

NS = "data"


@pytest.fixture
def orders(kube: FakeKube) -> None:
    """Pipeline orders (extract -> transform -> load) and its run orders-1, labelled as schedules label
    runs (so starting it is one write), not started yet."""
    kube.seed(pipeline("orders", [step("extract"), step("transform", dependsOn=["extract"]),
                                  step("load", dependsOn=["transform"])]), NS)
    labelled = run("orders-1", "orders")
    labelled["metadata"]["labels"] = {c.LABEL_PIPELINE: "orders"}
    kube.seed(labelled, NS)


def steps(kube: FakeKube, name: str) -> dict[str, tuple[str, str | None]]:
    status = kube.read(RUNS, NS, name).get("status") or {}
    return {s["name"]: (s["phase"], s.get("job")) for s in status.get("steps") or []}


def someone_annotates(kube: FakeKube) -> None:
    kube.patch(RUNS, NS, "orders-1", {"metadata": {"annotations": {"example.com/seen": str(kube.count("get_run"))}}})


@pytest.mark.usefixtures("orders")
def test_a_status_write_that_conflicts_once_is_re_read_and_re_planned_and_the_run_converges(
        kube: FakeKube, operator: Operator) -> None:
    writer = kube.before("replace_run_status", lambda: someone_annotates(kube))
    plan = operator.engine.reconcile(NS, "orders-1")
    assert writer.hits == 1
    assert plan is not None and [m["metadata"]["name"] for m in plan.create] == [J_ORDERS_1_EXTRACT]
    assert kube.names(JOBS, NS) == [J_ORDERS_1_EXTRACT]
    assert steps(kube, "orders-1") == {"extract": ("Pending", J_ORDERS_1_EXTRACT), "transform": ("Pending", None),
                                       "load": ("Pending", None)}
    after = kube.read(RUNS, NS, "orders-1")
    assert after["status"]["phase"] == "Running"
    assert "example.com/seen" in after["metadata"]["annotations"]  # the other writer's change survives
    assert [reason for _, reason, _ in kube.events_about("orders-1")].count("Started") == 1


@pytest.mark.usefixtures("orders")
def test_a_conflict_after_the_jobs_were_created_does_not_create_them_again(
        kube: FakeKube, operator: Operator) -> None:
    operator.engine.reconcile(NS, "orders-1")
    kube.complete_job(NS, J_ORDERS_1_EXTRACT)
    operator.engine.jobs.saw(kube.read(JOBS, NS, J_ORDERS_1_EXTRACT))  # the Job's event
    writer = kube.before("replace_run_status", lambda: someone_annotates(kube))
    operator.engine.reconcile(NS, "orders-1")
    assert writer.hits == 1
    assert kube.count("create_job", J_ORDERS_1_TRANSFORM) == 1
    assert kube.names(JOBS, NS) == [J_ORDERS_1_EXTRACT, J_ORDERS_1_TRANSFORM]
    assert steps(kube, "orders-1")["extract"][0] == "Succeeded"
    assert steps(kube, "orders-1")["transform"] == ("Pending", J_ORDERS_1_TRANSFORM)
    reasons = [reason for _, reason, _ in kube.events_about("orders-1")]
    assert reasons.count("StepSucceeded") == 1
    assert reasons.count("JobCreated") == 2  # extract's, then transform's, each once


@pytest.mark.usefixtures("orders")
def test_a_status_that_keeps_conflicting_gives_up_after_three_tries_and_the_next_pass_converges(
        kube: FakeKube, operator: Operator) -> None:
    writer = kube.before("replace_run_status", lambda: someone_annotates(kube), times=None)
    with pytest.raises(RuntimeError, match="orders-1: status kept conflicting"):
        operator.engine.reconcile(NS, "orders-1")
    assert writer.hits == 3
    assert "status" not in kube.read(RUNS, NS, "orders-1")
    assert kube.names(JOBS, NS) == []
    writer.stop()
    operator.engine.reconcile(NS, "orders-1")
    assert kube.names(JOBS, NS) == [J_ORDERS_1_EXTRACT]


@pytest.mark.usefixtures("orders")
def test_a_run_whose_plan_failed_to_apply_is_forgotten_so_its_next_event_is_reconciled(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    kube.fail("create_job", 500, name=J_ORDERS_1_EXTRACT)
    # the run's ADDED event: the start is written, then the Job create is refused; the only run event
    # left is the start write's own, which the engine would drop as its echo had it kept the failed pass
    operator.deliver()
    assert "ReconcileFailed" in [reason for _, reason, _ in kube.events_about("orders-1")]
    assert kube.count("create_job", J_ORDERS_1_EXTRACT) == 1  # the run backs off its next events ...
    clock.advance(10)
    operator.reconcile(kube.read(RUNS, NS, "orders-1"))  # ... until the resync after the backoff
    operator.deliver()
    assert kube.count("label_run") == 0
    assert kube.count("create_job", J_ORDERS_1_EXTRACT) == 2
    assert kube.names(JOBS, NS) == [J_ORDERS_1_EXTRACT]
    assert steps(kube, "orders-1")["extract"] == ("Pending", J_ORDERS_1_EXTRACT)
