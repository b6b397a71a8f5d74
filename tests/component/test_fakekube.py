"""The fake Kubernetes API answers the operator's calls the way the apiserver and KubeClient do."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes.client.exceptions import ApiException, ConflictException, NotFoundException

from fakekube import JOBS, PODS, RUNS, FakeKube, ManualClock, matches
from headwater.runs.jobs import observe_job
from headwater.spec import constants as c
from headwater.spec.models import StepPhase
from manifests import run

pytestmark = pytest.mark.component

NS = "data"


def job(name: str, run_name: str = "orders-1", backoff_limit: int = 2, owner_uid: str = "") -> dict[str, object]:
    owners = [{"apiVersion": c.API_VERSION, "kind": c.PIPELINERUN_KIND, "name": run_name, "uid": owner_uid,
               "controller": True}] if owner_uid else []
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NS, "ownerReferences": owners,
                         "labels": {c.LABEL_RUN: run_name, c.LABEL_MANAGED_BY: c.MANAGER}},
            "spec": {"backoffLimit": backoff_limit,
                     "template": {"metadata": {"labels": {c.LABEL_RUN: run_name}},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": "step"}]}}}}


def test_every_write_bumps_one_global_resource_version_and_a_create_sets_uid_time_and_generation(
        kube: FakeKube, clock: ManualClock) -> None:
    assert kube.create_run(NS, run("orders-1"))
    first = kube.get_run(NS, "orders-1")
    assert first is not None
    meta = first["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["namespace"] == NS
    assert meta["creationTimestamp"] == "2026-11-23T06:00:00Z"
    assert kube.create_job(job("orders-1-extract"))
    kube.label_run(NS, "orders-1", {"team": "data"})
    labelled = kube.get_run(NS, "orders-1")
    assert labelled is not None
    job_version = kube.read(JOBS, NS, "orders-1-extract")["metadata"]["resourceVersion"]
    assert int(meta["resourceVersion"]) < int(job_version) < int(labelled["metadata"]["resourceVersion"])
    assert labelled["metadata"]["generation"] == 1  # metadata is not spec


def test_a_write_that_changes_nothing_writes_nothing(kube: FakeKube) -> None:
    kube.create_run(NS, run("orders-1"))
    kube.label_run(NS, "orders-1", {"team": "data"})
    before = kube.read(RUNS, NS, "orders-1")
    kube.take_changes()
    kube.label_run(NS, "orders-1", {"team": "data"})
    assert kube.read(RUNS, NS, "orders-1")["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert kube.take_changes() == []


def test_a_status_replace_of_a_stale_version_is_a_conflict_and_changes_nothing(kube: FakeKube) -> None:
    kube.create_run(NS, run("orders-1"))
    stale = kube.read(RUNS, NS, "orders-1")
    written = kube.replace_run_status(stale, {"phase": "Running"})
    assert written["status"] == {"phase": "Running"}
    with pytest.raises(ConflictException) as caught:
        kube.replace_run_status(stale, {"phase": "Failed"})
    assert caught.value.status == 409
    assert kube.read(RUNS, NS, "orders-1") == written
    without_version = {**written, "metadata": {k: v for k, v in written["metadata"].items() if k != "resourceVersion"}}
    with pytest.raises(ApiException) as unconditional:
        kube.replace_run_status(without_version, {"phase": "Failed"})
    assert unconditional.value.status == 422


def test_a_run_deleted_and_created_again_under_its_name_refuses_a_status_written_for_the_first(
        kube: FakeKube) -> None:
    kube.create_run(NS, run("orders-1"))
    first = kube.read(RUNS, NS, "orders-1")
    kube.delete_run(NS, "orders-1")
    kube.create_run(NS, run("orders-1"))
    first["metadata"]["resourceVersion"] = kube.read(RUNS, NS, "orders-1")["metadata"]["resourceVersion"]
    with pytest.raises(ConflictException):
        kube.replace_run_status(first, {"phase": "Running"})


def test_status_changes_only_through_the_status_calls_and_a_spec_change_bumps_the_generation(
        kube: FakeKube) -> None:
    kube.create_run(NS, {**run("orders-1"), "status": {"phase": "Succeeded"}})
    created = kube.read(RUNS, NS, "orders-1")
    assert "status" not in created  # dropped on create, as with a status subresource
    kube.patch_run_status(NS, "orders-1", {"phase": "Running", "progress": "0/3"})
    kube.patch(RUNS, NS, "orders-1", {"status": {"phase": "Failed"}})
    kube.patch_run_spec(NS, "orders-1", {"cancel": True})
    after = kube.read(RUNS, NS, "orders-1")
    assert after["status"] == {"phase": "Running", "progress": "0/3"}
    assert after["spec"]["cancel"] is True
    assert after["metadata"]["generation"] == 2
    kube.patch_run_status(NS, "orders-1", {"progress": None})  # null removes a key (merge patch)
    assert kube.read(RUNS, NS, "orders-1")["status"] == {"phase": "Running"}


def test_creating_a_taken_name_is_a_conflict_which_create_run_and_create_job_answer_with_false(
        kube: FakeKube) -> None:
    assert kube.create_run(NS, run("orders-1"))
    assert not kube.create_run(NS, run("orders-1"))
    assert kube.create_job(job("orders-1-extract"))
    assert not kube.create_job(job("orders-1-extract"))
    with pytest.raises(ConflictException):
        kube.create(RUNS, NS, run("orders-1"))
    assert kube.names(JOBS, NS) == ["orders-1-extract"]


def test_a_missing_object_is_none_from_the_getters_ignored_by_the_deletes_and_404_from_the_writes(
        kube: FakeKube) -> None:
    assert kube.get_run(NS, "nope") is None
    assert kube.get_pipeline(NS, "nope") is None
    kube.delete_run(NS, "nope")
    kube.delete_job(NS, "nope")
    writes: list[Callable[[], object]] = [
        lambda: kube.patch_run_status(NS, "nope", {}),
        lambda: kube.patch_pipeline_status(NS, "nope", {}),
        lambda: kube.label_run(NS, "nope", {"a": "b"}),
        lambda: kube.patch_run_spec(NS, "nope", {}),
        lambda: kube.replace_run_status({"metadata": {"namespace": NS, "name": "nope", "resourceVersion": "1"}}, {}),
    ]
    for write in writes:
        with pytest.raises(NotFoundException) as caught:
            write()
        assert caught.value.status == 404
    assert kube.list_runs(NS) == [] and kube.list_jobs(NS, "nope") == []


@pytest.mark.parametrize(("selector", "expected"), [
    ("team=data", ["a", "b"]),
    ("team==data,tier=gold", ["a"]),
    ("team!=data", ["c", "d"]),
    ("tier in (gold, silver)", ["a", "c"]),
    ("tier notin (gold)", ["b", "c", "d"]),
    ("tier", ["a", "c"]),
    ("!tier", ["b", "d"]),
    ("", ["a", "b", "c", "d"]),
])
def test_label_selectors_choose_the_objects_a_list_returns(selector: str, expected: list[str]) -> None:
    labels = {"a": {"team": "data", "tier": "gold"}, "b": {"team": "data"}, "c": {"team": "web", "tier": "silver"},
              "d": {}}
    assert sorted(name for name, have in labels.items() if matches(selector, have)) == expected


def test_runs_come_in_pages_that_all_show_the_list_as_of_the_first_page(kube: FakeKube) -> None:
    for i in range(5):
        kube.create_run(NS, {**run(f"orders-{i}"), "metadata": {"name": f"orders-{i}", "labels": {"p": "orders"}}})
    kube.create_run("other", run("orders-9"))
    pages = kube.iter_runs(NS, "p=orders", page=2)
    seen = [next(pages)["metadata"]["name"]]
    kube.delete_run(NS, "orders-4")  # after the first page: a continued list still shows it
    seen += [r["metadata"]["name"] for r in pages]
    assert seen == [f"orders-{i}" for i in range(5)]
    assert kube.count("iter_runs") == 3
    assert [r["metadata"]["namespace"] for r in kube.iter_runs(None)] == ["data"] * 4 + ["other"]


def test_deleting_a_run_deletes_its_jobs_and_their_pods(kube: FakeKube) -> None:
    kube.create_run(NS, run("orders-1"))
    uid = kube.read(RUNS, NS, "orders-1")["metadata"]["uid"]
    kube.create_job(job("orders-1-extract", owner_uid=uid))
    kube.create_job(job("unowned"))
    kube.start_job(NS, "orders-1-extract")
    assert len(kube.list_job_pods(NS, "orders-1-extract")) == 1
    kube.delete_run(NS, "orders-1")
    assert kube.names(JOBS, NS) == ["unowned"]
    assert kube.names(PODS, NS) == []


def test_an_injected_failure_answers_only_the_requests_it_names_and_then_stops(kube: FakeKube) -> None:
    kube.create_run(NS, run("orders-1"))
    kube.create_run(NS, run("orders-2"))
    kube.fail("get_run", 503, name="orders-2")
    kube.fail("create_job", 409)
    assert kube.get_run(NS, "orders-1") is not None
    with pytest.raises(ApiException) as caught:
        kube.get_run(NS, "orders-2")
    assert caught.value.status == 503
    assert kube.get_run(NS, "orders-2") is not None
    assert not kube.create_job(job("orders-1-extract"))  # refused as taken, and nothing created
    assert kube.names(JOBS, NS) == []
    assert kube.create_job(job("orders-1-extract"))
    missing = kube.fail("get_run", 404, times=None)
    assert kube.get_run(NS, "orders-1") is None
    assert kube.get_run(NS, "orders-2") is None
    missing.stop()
    assert kube.get_run(NS, "orders-1") is not None


def test_another_writer_acting_just_before_a_status_write_makes_it_conflict(kube: FakeKube) -> None:
    kube.create_run(NS, run("orders-1"))
    read = kube.read(RUNS, NS, "orders-1")
    kube.before("replace_run_status", lambda: kube.label_run(NS, "orders-1", {"someone": "else"}))
    with pytest.raises(ConflictException):
        kube.replace_run_status(read, {"phase": "Running"})
    again = kube.read(RUNS, NS, "orders-1")
    assert kube.replace_run_status(again, {"phase": "Running"})["metadata"]["labels"] == {"someone": "else"}


def test_the_job_controller_moves_read_back_as_the_engine_reads_a_job(kube: FakeKube, clock: ManualClock) -> None:
    for name in ("ok", "bad", "once", "interim"):
        kube.create_job(job(name))
    assert observe_job(kube.read(JOBS, NS, "ok"), []).phase == StepPhase.PENDING
    kube.start_job(NS, "ok")
    assert observe_job(kube.read(JOBS, NS, "ok"), []).phase == StepPhase.RUNNING
    clock.advance(30)
    kube.complete_job(NS, "ok", '{"rowsAffected": 42}')
    done = observe_job(kube.read(JOBS, NS, "ok"), kube.list_job_pods(NS, "ok"))
    assert (done.phase, done.attempts, done.result, done.finished_at) == \
        (StepPhase.SUCCEEDED, 1, {"rowsAffected": 42}, "2026-11-23T06:00:30Z")

    kube.fail_job(NS, "bad", "relation raw.orders is locked")
    failed = observe_job(kube.read(JOBS, NS, "bad"), kube.list_job_pods(NS, "bad"))
    assert (failed.phase, failed.attempts, failed.reason) == (StepPhase.FAILED, 3, "BackoffLimitExceeded")
    assert failed.message == "Job has reached the specified backoff limit; last attempt: relation raw.orders is locked"

    kube.fail_job(NS, "once", attempts=1, reason="DeadlineExceeded")
    assert observe_job(kube.read(JOBS, NS, "once"), []).attempts == 1

    kube.complete_job(NS, "interim", terminal=False)
    interim = kube.read(JOBS, NS, "interim")
    assert [cond["type"] for cond in interim["status"]["conditions"]] == ["SuccessCriteriaMet"]
    assert observe_job(interim, []).phase == StepPhase.SUCCEEDED


def test_a_deleted_object_with_finalizers_is_held_until_the_last_one_is_removed_and_takes_no_new_ones(
        kube: FakeKube) -> None:
    kube.create_run(NS, run("orders-1"))
    held = kube.patch_run_metadata(NS, "orders-1", {"finalizers": ["example.com/a", "example.com/b"]})
    assert held is not None
    owner_uid = held["metadata"]["uid"]
    kube.create_job(job("orders-1-extract", owner_uid=owner_uid))
    kube.delete_run(NS, "orders-1")
    marked = kube.read(RUNS, NS, "orders-1")
    assert marked["metadata"]["deletionTimestamp"] == "2026-11-23T06:00:00Z"
    assert kube.names(JOBS, NS) == ["orders-1-extract"]  # its dependents go with it, not before
    with pytest.raises(ApiException) as refused:
        kube.patch_run_metadata(NS, "orders-1", {"finalizers": ["example.com/a", "example.com/b", "example.com/c"]})
    assert refused.value.status == 422
    assert kube.patch_run_metadata(NS, "orders-1", {"finalizers": ["example.com/b"]}) is not None
    assert kube.patch_run_metadata(NS, "orders-1", {"finalizers": []}) is None  # the last one: gone
    assert kube.get_run(NS, "orders-1") is None
    assert kube.names(JOBS, NS) == []


def test_a_metadata_patch_carrying_a_stale_resource_version_is_a_conflict_and_changes_nothing(kube: FakeKube) -> None:
    kube.create_run(NS, run("orders-1"))
    version = kube.read(RUNS, NS, "orders-1")["metadata"]["resourceVersion"]
    kube.label_run(NS, "orders-1", {"someone": "else"})
    with pytest.raises(ConflictException):
        kube.patch_run_metadata(NS, "orders-1", {"finalizers": ["example.com/a"]}, version)
    assert "finalizers" not in kube.read(RUNS, NS, "orders-1")["metadata"]
    assert kube.patch_run_metadata(NS, "gone", {"finalizers": []}) is None
