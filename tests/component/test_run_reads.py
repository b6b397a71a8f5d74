"""A reconcile pass starts from the newest version of the run seen (its watch events, the answers to the
engine's own writes), not from a GET, and from its Jobs as seen, not from a LIST; a pass planned on a version
the apiserver has moved past conflicts, reads the run afresh and plans again; the resync lists the namespace's
Jobs once for every run."""

from __future__ import annotations

import pytest

from fakekube import JOBS, PODS, RUNS, FakeKube, ManualClock
from headwater.spec import constants as c
from headwater.spec.names import job_name
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"
J_EXTRACT = job_name("orders-1", "extract")
J_TRANSFORM = job_name("orders-1", "transform")
J_LOAD = job_name("orders-1", "load")


@pytest.fixture
def orders(kube: FakeKube, operator: Operator) -> None:
    """Pipeline orders (extract -> transform -> load) and its run orders-1, started through its events."""
    kube.seed(pipeline("orders", [step("extract"), step("transform", "extract"), step("load", "transform")]), NS)
    kube.seed(run("orders-1", "orders"), NS)
    operator.deliver()
    assert kube.names(JOBS, NS) == [J_EXTRACT]


def phase(kube: FakeKube) -> str:
    return str((kube.read(RUNS, NS, "orders-1").get("status") or {}).get("phase"))


@pytest.mark.usefixtures("orders")
def test_a_run_driven_by_its_events_is_never_read_back_from_the_apiserver(kube: FakeKube, operator: Operator) -> None:
    for job in (J_EXTRACT, J_TRANSFORM, J_LOAD):
        kube.complete_job(NS, job)
        operator.deliver()
    assert phase(kube) == "Succeeded"
    assert kube.count("get_run", "orders-1") == 0
    assert kube.count("list_jobs") == 0  # started by this operator: every Job of it was seen made
    assert operator.errors == []


@pytest.mark.usefixtures("orders")
def test_a_pass_planned_on_an_old_version_conflicts_and_plans_again_on_the_run_read_afresh(
        kube: FakeKube, operator: Operator) -> None:
    kube.complete_job(NS, J_EXTRACT)
    operator.engine.jobs.saw(kube.read(JOBS, NS, J_EXTRACT))  # the Job's event
    kube.patch(RUNS, NS, "orders-1", {"spec": {"cancel": True}})  # its event not delivered yet
    # the Job's event comes first: the pass plans on the version seen, without the cancel, and its
    # status write conflicts; read afresh, the run is cancelled
    operator.engine.reconcile(NS, "orders-1")
    assert kube.count("get_run", "orders-1") == 1
    assert phase(kube) == "Cancelled"
    assert J_TRANSFORM not in kube.names(JOBS, NS)  # created on the old version, deleted on the new one
    operator.deliver()
    assert phase(kube) == "Cancelled"
    assert operator.errors == []


@pytest.mark.usefixtures("orders")
def test_a_run_deleted_while_a_pass_planned_on_the_version_seen_is_forgotten_without_an_error(
        kube: FakeKube, operator: Operator) -> None:
    kube.complete_job(NS, J_EXTRACT)
    operator.engine.jobs.saw(kube.read(JOBS, NS, J_EXTRACT))  # the Job's event
    kube.delete(RUNS, NS, "orders-1")  # its event not delivered yet
    assert operator.engine.reconcile(NS, "orders-1") is None  # its status write: 404, and then gone
    assert operator.metrics.reconcile_errors.labels("PipelineRun")._value.get() == 0
    assert operator.engine.latest.get(NS, "orders-1") is None
    assert "ReconcileFailed" not in [reason for _, reason, _ in kube.events_about("orders-1")]


@pytest.mark.usefixtures("orders")
def test_a_run_that_left_the_watch_is_read_again_when_a_pass_needs_it(kube: FakeKube, operator: Operator) -> None:
    kube.patch(RUNS, NS, "orders-1", {"metadata": {"labels": {c.LABEL_SETTLED: "true"}}})
    operator.deliver()  # out of the selector: one deletion, and the version seen is dropped
    assert operator.engine.latest.get(NS, "orders-1") is None
    kube.patch(RUNS, NS, "orders-1", {"metadata": {"labels": {c.LABEL_SETTLED: None}}})
    kube.complete_job(NS, J_EXTRACT)
    operator.engine.reconcile(NS, "orders-1")
    assert kube.count("get_run", "orders-1") == 1
    assert J_TRANSFORM in kube.names(JOBS, NS)


def test_a_pass_that_starts_a_run_creates_its_first_jobs_without_listing_jobs(
        kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("orders", [step("extract"), step("transform", "extract")]), NS)
    kube.seed(run("orders-1", "orders"), NS)
    operator.engine.reconcile(NS, "orders-1")
    assert kube.names(JOBS, NS) == [J_EXTRACT]
    assert kube.count("list_jobs") == 0  # a run just started has no Job yet
    operator.deliver()
    assert phase(kube) == "Running"
    assert operator.errors == []


@pytest.mark.usefixtures("orders")
def test_a_job_deletion_the_watch_never_delivered_is_found_by_the_resync(kube: FakeKube, operator: Operator) -> None:
    kube.delete(JOBS, NS, J_EXTRACT)
    kube.take_changes()  # lost: a watch restarted after the Job was gone shows no deletion
    operator.engine.reconcile(NS, "orders-1")
    assert kube.count("list_jobs") == 0 and phase(kube) == "Running"  # planned on the Jobs seen
    operator.resync()
    operator.deliver()
    assert (kube.count("iter_step_jobs"), kube.count("list_jobs")) == (1, 0)  # the namespace's Jobs, listed once
    extract = kube.read(RUNS, NS, "orders-1")["status"]["steps"][0]
    assert (extract["phase"], extract["reason"]) == ("Failed", "JobDeleted")
    assert operator.errors == []


def test_the_resync_corrects_every_run_in_flight_with_one_list_of_the_jobs_not_one_per_run(
        kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("orders", [step("extract"), step("transform", "extract")]), NS)
    runs = [f"orders-{i}" for i in range(1, 6)]
    for name in runs:
        kube.seed(run(name, "orders"), NS)
    operator.deliver()
    for name in runs[:2]:  # their Jobs deleted, the deletions lost
        kube.delete(JOBS, NS, job_name(name, "extract"))
    kube.take_changes()
    kube.complete_job(NS, job_name("orders-3", "extract"))  # its event lost too
    kube.take_changes()
    operator.resync()
    operator.deliver()
    assert (kube.count("iter_step_jobs"), kube.count("list_jobs")) == (1, 0)
    steps = {name: kube.read(RUNS, NS, name)["status"]["steps"] for name in runs}
    assert [(s[0]["phase"], s[0].get("reason")) for s in (steps["orders-1"], steps["orders-2"])] == \
        [("Failed", "JobDeleted")] * 2
    assert steps["orders-3"][0]["phase"] == "Succeeded" and job_name("orders-3", "transform") in kube.names(JOBS, NS)
    assert [kube.read(RUNS, NS, name)["status"]["phase"] for name in runs[3:]] == ["Running", "Running"]
    assert [steps[name][0]["phase"] for name in runs[3:]] == ["Pending", "Pending"]  # as they were
    assert operator.errors == []


@pytest.mark.usefixtures("orders")
def test_a_job_that_already_existed_when_created_makes_the_next_pass_list_the_jobs(
        kube: FakeKube, operator: Operator) -> None:
    kube.complete_job(NS, J_EXTRACT)
    operator.deliver()
    assert kube.count("list_jobs") == 0
    kube.complete_job(NS, J_TRANSFORM)
    transform = kube.read(JOBS, NS, J_TRANSFORM)
    meta = transform["metadata"]
    kube.create(JOBS, NS, {**transform, "metadata": {  # the load Job, made by someone else and not seen
        "name": J_LOAD, "labels": {**meta["labels"], c.LABEL_STEP: "load"},
        "ownerReferences": meta["ownerReferences"]}})
    kube.take_changes()
    operator.engine.jobs.saw(transform)  # transform's event
    operator.engine.reconcile(NS, "orders-1")  # its create of load answers 409
    assert kube.count("create_job", J_LOAD) == 1 and kube.count("list_jobs") == 0
    operator.engine.reconcile(NS, "orders-1")
    assert kube.count("list_jobs") == 1


def test_jobs_refused_their_pods_are_told_apart_with_one_read_of_the_namespace_events(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    kube.seed(pipeline("fanout", [step("a"), step("b"), step("c")]), NS)
    kube.seed(run("fanout-1", "fanout"), NS)
    operator.deliver()
    refused = kube.read(JOBS, NS, job_name("fanout-1", "b"))
    kube.seed({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "b.1"}, "reason": "FailedCreate",
               "type": "Warning", "message": 'pods "fanout-1-b" is forbidden: exceeded quota: steps',
               "involvedObject": {"kind": "Job", "name": refused["metadata"]["name"],
                                  "uid": refused["metadata"]["uid"]}}, NS)
    clock.advance(5)  # no Job has a pod: each is looked into
    operator.engine.reconcile(NS, "fanout-1")
    steps = {s["name"]: s for s in kube.read(RUNS, NS, "fanout-1")["status"]["steps"]}
    assert steps["b"]["reason"] == "FailedCreate" and "exceeded quota" in steps["b"]["message"]
    assert "FailedCreate" not in (steps["a"].get("reason"), steps["c"].get("reason"))
    assert kube.count("list_failed_creates") == 1  # one read for the three Jobs


def _pending_pod(kube: FakeKube, job: str, waiting: str) -> None:
    """The Job controller made ``job``'s pod, which waits (``waiting``) and is counted active, not ready."""
    made = kube.read(JOBS, NS, job)
    pod = f"{job}-x1y2z"
    kube.create(PODS, NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "labels": {
        **made["spec"]["template"]["metadata"]["labels"], "batch.kubernetes.io/job-name": job,
        "batch.kubernetes.io/controller-uid": made["metadata"]["uid"]}}, "spec": made["spec"]["template"]["spec"]})
    kube.write_status(PODS, NS, pod, {"phase": "Pending", "containerStatuses": [{
        "name": "step", "ready": False, "state": {"waiting": {"reason": waiting, "message": f"{waiting}: step"}}}]})
    kube.write_status(JOBS, NS, job, {**made.get("status", {}), "active": 1, "ready": 0})


def test_pods_that_do_not_start_are_told_apart_with_one_read_of_the_namespace_pending_pods(
        kube: FakeKube, operator: Operator, clock: ManualClock) -> None:
    kube.seed(pipeline("fanout", [step("a"), step("b"), step("c")]), NS)
    kube.seed(run("fanout-1", "fanout"), NS)
    operator.deliver()
    for name, waiting in (("a", "ContainerCreating"), ("b", "ImagePullBackOff"), ("c", "ContainerCreating")):
        _pending_pod(kube, job_name("fanout-1", name), waiting)
    operator.deliver()
    clock.advance(5)  # no pod is ready: each Job's pods are looked into
    operator.engine.reconcile(NS, "fanout-1")
    steps = {s["name"]: s for s in kube.read(RUNS, NS, "fanout-1")["status"]["steps"]}
    assert steps["b"]["reason"] == "ImagePullBackOff"
    assert "ImagePullBackOff" not in (steps["a"].get("reason"), steps["c"].get("reason"))
    assert kube.count("list_pending_step_pods") == 1 and kube.count("list_job_pods") == 0  # one read for three


@pytest.mark.usefixtures("orders")
def test_a_resync_whose_list_of_jobs_fails_still_plans_every_run(kube: FakeKube, operator: Operator) -> None:
    kube.patch(RUNS, NS, "orders-1", {"spec": {"cancel": True}})
    kube.take_changes()  # its event lost: only the resync's pass can see the cancel
    kube.fail("iter_step_jobs", 503)
    operator.resync()
    operator.deliver()
    assert kube.count("iter_step_jobs") == 1
    assert phase(kube) == "Cancelled"  # planned on the Jobs seen, the list's failure kept to itself
    assert "ListFailed" in [reason for _, reason, _ in kube.events_about("(all namespaces)")]
