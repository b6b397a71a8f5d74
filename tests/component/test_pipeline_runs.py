"""Whole runs driven by events: the handlers and the engine create each step's Job once its dependencies
succeeded, as the Job controller completes or fails them."""

from __future__ import annotations

import threading

import pytest

from fakekube import JOBS, PIPELINES, RUNS, FakeKube, ManualClock
from headwater.runs.engine import RECHECK_MAX_SECONDS
from headwater.runs.jobs import PROBE_AFTER_SECONDS
from headwater.spec.names import job_name
from manifests import IMAGE, pipeline, run, step
from wiring import STEP_IMAGE, Operator

pytestmark = pytest.mark.component

J_ONE_1_COUNT = job_name("one-1", "count")
J_REVENUE_1_CUSTOMERS = job_name("revenue-1", "customers")
J_REVENUE_1_ORDERS = job_name("revenue-1", "orders")
J_REVENUE_1_REVENUE = job_name("revenue-1", "revenue")

NS = "data"
WH = "postgres://warehouse"


@pytest.fixture
def revenue(kube: FakeKube, operator: Operator) -> None:
    """Pipeline revenue: orders and customers load independently; revenue joins them. Run revenue-1."""
    kube.seed(pipeline("revenue", [
        step("orders", outputs=[{"namespace": WH, "name": "raw.orders"}]),
        step("customers", outputs=[{"namespace": WH, "name": "raw.customers"}]),
        step("revenue", dependsOn=["orders", "customers"],
             inputs=[{"namespace": WH, "name": "raw.orders"}, {"namespace": WH, "name": "raw.customers"}],
             outputs=[{"namespace": WH, "name": "analytics.revenue"}]),
    ]), NS)
    kube.seed(run("revenue-1", "revenue"), NS)
    operator.deliver()


def jobs(kube: FakeKube) -> list[str]:
    return kube.names(JOBS, NS)


def phases(kube: FakeKube) -> dict[str, str]:
    return {s["name"]: s["phase"] for s in kube.read(RUNS, NS, "revenue-1")["status"]["steps"]}


@pytest.mark.usefixtures("revenue")
def test_a_join_step_starts_only_after_both_of_its_dependencies_succeeded_and_then_the_run_succeeds(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    assert jobs(kube) == [J_REVENUE_1_CUSTOMERS, J_REVENUE_1_ORDERS]
    assert kube.read(JOBS, NS, J_REVENUE_1_ORDERS)["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    kube.start_job(NS, J_REVENUE_1_ORDERS)
    kube.start_job(NS, J_REVENUE_1_CUSTOMERS)
    operator.deliver()
    assert phases(kube) == {"orders": "Running", "customers": "Running", "revenue": "Pending"}

    clock.advance(20)
    kube.complete_job(NS, J_REVENUE_1_ORDERS, '{"rowsAffected": 42}')
    operator.deliver()
    assert jobs(kube) == [J_REVENUE_1_CUSTOMERS, J_REVENUE_1_ORDERS]  # the join still waits for customers
    assert phases(kube) == {"orders": "Succeeded", "customers": "Running", "revenue": "Pending"}

    clock.advance(10)
    kube.complete_job(NS, J_REVENUE_1_CUSTOMERS)
    operator.deliver()
    assert jobs(kube) == [J_REVENUE_1_CUSTOMERS, J_REVENUE_1_ORDERS, J_REVENUE_1_REVENUE]

    clock.advance(30)
    kube.complete_job(NS, J_REVENUE_1_REVENUE)
    operator.deliver()
    assert [name for name, _ in kube.calls if name == "create_job"] == ["create_job"] * 3
    created = [on for name, on in kube.calls if name == "create_job"]
    assert set(created[:2]) == {J_REVENUE_1_ORDERS, J_REVENUE_1_CUSTOMERS} and created[2] == J_REVENUE_1_REVENUE

    status = kube.read(RUNS, NS, "revenue-1")["status"]
    assert status["phase"] == "Succeeded" and status["progress"] == "3/3"
    assert status["finishedAt"] == "2026-11-23T06:01:00Z" and status["duration"] == "1m0s"
    succeeded = {c["type"]: c for c in status["conditions"]}["Succeeded"]
    assert (succeeded["status"], succeeded["reason"]) == ("True", "Succeeded")
    by_step = {s["name"]: s for s in status["steps"]}
    assert by_step["orders"]["result"] == {"rowsAffected": 42}
    assert all(s["attempts"] == 1 for s in status["steps"])
    assert kube.events_about("revenue-1")[-1][:2] == ("Normal", "RunSucceeded")

    pipeline_status = kube.read(PIPELINES, NS, "revenue")["status"]
    assert (pipeline_status["lastRun"], pipeline_status["lastRunPhase"]) == ("revenue-1", "Succeeded")
    written = {d["name"]: d.get("lastUpdated") for d in pipeline_status["datasets"]}
    assert written == {"raw.orders": "2026-11-23T06:00:20Z", "raw.customers": "2026-11-23T06:00:30Z",
                       "analytics.revenue": "2026-11-23T06:01:00Z"}
    assert operator.errors == []


@pytest.mark.usefixtures("revenue")
def test_a_failed_step_skips_the_join_and_the_run_fails_once_its_other_branch_ends(
        kube: FakeKube, operator: Operator) -> None:
    kube.fail_job(NS, J_REVENUE_1_ORDERS, '{"error": "relation raw.orders is locked"}')
    operator.deliver()
    assert phases(kube) == {"orders": "Failed", "customers": "Pending", "revenue": "Skipped"}
    assert kube.read(RUNS, NS, "revenue-1")["status"]["phase"] == "Running"  # customers may still succeed
    kube.complete_job(NS, J_REVENUE_1_CUSTOMERS)
    operator.deliver()
    status = kube.read(RUNS, NS, "revenue-1")["status"]
    assert status["phase"] == "Failed" and status["progress"] == "1/3"
    orders = {s["name"]: s for s in status["steps"]}["orders"]
    assert orders["attempts"] == 3  # two retries by default: three pods
    assert orders["message"] == \
        "Job has reached the specified backoff limit; last attempt: relation raw.orders is locked"
    assert jobs(kube) == [J_REVENUE_1_CUSTOMERS, J_REVENUE_1_ORDERS]
    assert operator.errors == []


def test_jobs_use_the_operators_step_image_when_a_step_names_none(kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("one", [step("count", type="sql")]), NS)  # a sql step: it runs in the step image
    kube.seed(run("one-1", "one"), NS)
    operator.deliver()
    container = kube.read(JOBS, NS, J_ONE_1_COUNT)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == STEP_IMAGE
    assert container["command"] == ["headwater", "step", "sql"]


def runs_counter(operator: Operator, pipeline: str, phase: str) -> float | None:
    return operator.metrics.registry.get_sample_value("headwater_runs_total", {"pipeline": pipeline, "phase": phase})


def test_a_pipeline_s_failed_runs_counter_is_exported_at_zero_before_its_first_run_ends(
        kube: FakeKube, operator: Operator) -> None:
    """A counter born at 1 shows no increase() to Prometheus: the first failure would never alert."""
    kube.seed(pipeline("nightly", [step("load")]), NS)
    operator.deliver()
    assert runs_counter(operator, "nightly", "Failed") == 0.0
    kube.seed(pipeline("hourly", [step("load")]), NS)
    operator.kube.take_changes()  # the Pipeline's event is missed: its run's first reconcile exports it too
    kube.seed(run("hourly-1", "hourly"), NS)
    operator.deliver()
    assert kube.names(JOBS, NS) == [job_name("hourly-1", "load")]
    assert runs_counter(operator, "hourly", "Failed") == 0.0
    kube.fail_job(NS, job_name("hourly-1", "load"), attempts=1)
    operator.deliver()
    assert kube.read(RUNS, NS, "hourly-1")["status"]["phase"] == "Failed"
    assert runs_counter(operator, "hourly", "Failed") == 1.0


def seed_revenue(kube: FakeKube) -> None:
    """The revenue pipeline and its run revenue-1, not yet delivered to the operator."""
    kube.seed(pipeline("revenue", [step("orders"), step("customers"),
                                   step("revenue", dependsOn=["orders", "customers"])]), NS)
    kube.seed(run("revenue-1", "revenue"), NS)


def test_the_jobs_a_pass_starts_are_created_at_once_each_create_under_way_before_the_first_answers(
        kube: FakeKube, operator: Operator) -> None:
    seed_revenue(kube)
    both_sent = threading.Barrier(2, timeout=5)  # one create at a time never gets past it
    kube.before("create_job", both_sent.wait, times=2)
    operator.deliver()
    assert not both_sent.broken
    assert jobs(kube) == [J_REVENUE_1_CUSTOMERS, J_REVENUE_1_ORDERS]
    assert kube.count("create_job") == 2


def test_a_refused_job_create_does_not_keep_the_other_jobs_of_its_pass_from_being_created(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    seed_revenue(kube)
    kube.fail("create_job", 500, name=J_REVENUE_1_ORDERS)
    operator.deliver()
    assert jobs(kube) == [J_REVENUE_1_CUSTOMERS]
    assert "ReconcileFailed" in [reason for _, reason, _ in kube.events_about("revenue-1")]
    clock.advance(10)
    operator.reconcile(kube.read(RUNS, NS, "revenue-1"))  # the resync after the backoff
    operator.deliver()
    assert jobs(kube) == [J_REVENUE_1_CUSTOMERS, J_REVENUE_1_ORDERS]
    assert kube.count("create_job", J_REVENUE_1_ORDERS) == 2


def test_a_run_whose_jobs_stay_without_pods_is_rechecked_later_and_later_and_soon_again_once_one_starts(
        kube: FakeKube, operator: Operator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    monkeypatch.setattr(operator.engine, "_recheck_later", lambda ref, delay: delays.append(delay))
    seed_revenue(kube)
    operator.deliver()
    assert jobs(kube) == [J_REVENUE_1_CUSTOMERS, J_REVENUE_1_ORDERS]
    clock.advance(PROBE_AFTER_SECONDS)
    delays.clear()
    for _ in range(6):  # the Job controller is behind: no pod, no event, nothing new in any pass
        operator.engine.reconcile(NS, "revenue-1")
    assert delays == [min(delays[0] * 2 ** n, RECHECK_MAX_SECONDS) for n in range(6)]
    assert delays[0] <= 2 * PROBE_AFTER_SECONDS and delays[-1] == RECHECK_MAX_SECONDS
    kube.start_job(NS, J_REVENUE_1_ORDERS)
    operator.deliver()
    assert delays[-1] == PROBE_AFTER_SECONDS  # a change: customers is still waiting, and looked at soon


def test_hundreds_of_runs_waiting_for_pods_are_rechecked_without_a_thread_each(
        kube: FakeKube, operator: Operator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Time stands still for the rechecks: on a busy machine handing over 300 runs took longer than the first
    # recheck's delay, and that recheck, done, was no longer counted as waiting.
    monkeypatch.setattr(operator.engine._rechecks, "_clock", lambda: 0.0)
    kube.seed(pipeline("one", [step("count")]), NS)
    before = set(threading.enumerate())  # other tests' threads may come and go meanwhile: only new ones count
    for n in range(300):
        kube.seed(run(f"one-{n}", "one"), NS)
    operator.deliver()
    assert len(kube.select(JOBS, NS)) == 300  # every run waits for its Job's pod: each has a recheck planned
    assert operator.engine._rechecks.waiting == 300
    timers = [t for t in set(threading.enumerate()) - before if isinstance(t, threading.Timer)]
    assert len(timers) == 0, f"{len(timers)} timer threads for 300 waiting runs"
