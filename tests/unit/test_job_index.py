"""The Jobs of the runs in flight as the watch shows them (runs/jobindex.py): what a pass plans from instead of
a LIST."""

from __future__ import annotations

from typing import Any

from headwater.runs.jobindex import JobIndex, slim

NS = "data"


def _job(name: str, version: str, run: str = "orders-1", uid: str = "run-uid", succeeded: int = 0,
         job_uid: str | None = None) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"namespace": NS, "name": name, "uid": job_uid or f"{name}-uid", "resourceVersion": version,
                         "creationTimestamp": "2026-12-03T07:00:00Z", "labels": {"headwater.dev/step": name},
                         "managedFields": [{"manager": "kube-controller-manager"}],
                         "ownerReferences": [{"kind": "PipelineRun", "name": run, "uid": uid, "controller": True}]},
            "spec": {"template": {"spec": {"containers": [{"name": "step", "image": "x" * 1000}]}}},
            "status": {"succeeded": succeeded}}


def _tracked(index: JobIndex, jobs: list[dict[str, Any]] | None = None, run: str = "orders-1") -> None:
    listing = index.begin(NS, run, "run-uid")
    assert listing is not None
    index.listed(NS, run, listing, jobs or [])


def _succeeded(index: JobIndex, run: str = "orders-1") -> dict[str, int]:
    return {j["metadata"]["name"]: j["status"]["succeeded"] for j in index.jobs(NS, run, "run-uid") or []}


def test_a_run_not_listed_yet_has_no_jobs_known_and_its_jobs_events_are_not_kept() -> None:
    index = JobIndex()
    index.saw(_job("extract", "5"))
    assert index.jobs(NS, "orders-1", "run-uid") is None
    assert index.size == 0


def test_a_run_started_here_is_known_with_no_job_and_keeps_the_jobs_it_is_shown() -> None:
    index = JobIndex()
    index.started(NS, "orders-1", "run-uid")
    assert index.jobs(NS, "orders-1", "run-uid") == []
    index.saw(_job("extract", "5"))
    assert _succeeded(index) == {"extract": 0}


def test_each_job_is_kept_at_the_newest_version_whatever_order_its_events_arrive_in() -> None:
    index = JobIndex()
    _tracked(index)
    index.saw(_job("extract", "7", succeeded=1))
    index.saw(_job("extract", "6"))  # an older version, late
    assert _succeeded(index) == {"extract": 1}


def test_events_that_arrive_while_the_jobs_are_listed_are_merged_with_the_list_newest_first() -> None:
    index = JobIndex()
    listing = index.begin(NS, "orders-1", "run-uid")
    assert listing is not None
    assert index.jobs(NS, "orders-1", "run-uid") is None  # not complete while listing
    index.saw(_job("extract", "9", succeeded=1))  # newer than the list's answer
    index.saw(_job("gone", "3"))
    index.saw(_job("gone", "8"), deleted=True)  # deleted after the list's snapshot
    index.listed(NS, "orders-1", listing, [_job("extract", "6"), _job("gone", "3"), _job("load", "4")])
    assert _succeeded(index) == {"extract": 1, "load": 0}
    assert index.size == 2


def test_a_listing_dropped_while_it_was_made_is_not_completed() -> None:
    index = JobIndex()
    listing = index.begin(NS, "orders-1", "run-uid")
    assert listing is not None
    index.drop(NS, "orders-1")  # the resync's drop, during the list
    index.listed(NS, "orders-1", listing, [_job("extract", "6")])
    assert index.jobs(NS, "orders-1", "run-uid") is None


def test_a_job_made_again_under_its_name_replaces_the_deleted_one() -> None:
    index = JobIndex()
    _tracked(index, [_job("extract", "5")])
    index.saw(_job("extract", "6"), deleted=True)
    assert _succeeded(index) == {}
    index.saw(_job("extract", "9", job_uid="second", succeeded=1))
    assert _succeeded(index) == {"extract": 1}
    assert index.size == 1


def test_jobs_of_another_run_with_the_same_name_are_not_kept() -> None:
    index = JobIndex()
    _tracked(index)
    index.saw(_job("extract", "5", uid="an-earlier-run-of-that-name"))
    assert _succeeded(index) == {}
    assert index.jobs(NS, "orders-1", "another-uid") is None


def test_a_job_is_kept_without_its_pod_template_or_managed_fields() -> None:
    kept = slim(_job("extract", "5"))
    assert set(kept) == {"metadata", "status"}
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["labels"] == {"headwater.dev/step": "extract"}


def test_once_the_index_holds_its_bound_new_runs_are_not_tracked_and_are_listed_each_pass() -> None:
    index = JobIndex(max_jobs=2)
    _tracked(index, [_job("extract", "5"), _job("load", "6")])
    assert index.begin(NS, "orders-2", "run-uid") is None
    index.started(NS, "orders-2", "run-uid")
    assert index.jobs(NS, "orders-2", "run-uid") is None
    index.drop(NS, "orders-1")  # finished: its Jobs go, and room is made
    assert index.size == 0 and len(index) == 0
    index.started(NS, "orders-2", "run-uid")
    assert index.jobs(NS, "orders-2", "run-uid") == []


def test_a_relist_of_the_namespace_drops_a_job_whose_deletion_the_watch_never_showed() -> None:
    index = JobIndex()
    _tracked(index, [_job("extract", "5", succeeded=1), _job("transform", "6")])
    relist = index.relist_begin(NS)
    index.relisted(relist, [_job("extract", "5", succeeded=1)])  # transform was deleted, unseen
    index.relist_end(relist)
    assert _succeeded(index) == {"extract": 1}
    assert index.size == 1


def test_a_relist_keeps_what_the_watch_showed_while_it_was_made_and_passes_plan_meanwhile() -> None:
    index = JobIndex()
    _tracked(index, [_job("extract", "5"), _job("transform", "6")])
    relist = index.relist_begin(NS)
    index.saw(_job("load", "9"))  # made after the list's snapshot: not in it
    index.saw(_job("transform", "8"), deleted=True)  # deleted after the snapshot: in it, older
    index.saw(_job("extract", "10", succeeded=1))  # newer than the list's
    assert _succeeded(index) == {"extract": 1, "load": 0}  # a pass meanwhile plans from the Jobs kept
    index.relisted(relist, [_job("extract", "7"), _job("transform", "6")])
    index.relist_end(relist)
    assert _succeeded(index) == {"extract": 1, "load": 0}
    assert index.size == 2


def test_a_relist_leaves_runs_of_other_namespaces_other_owners_and_those_listed_again_meanwhile() -> None:
    index = JobIndex()
    _tracked(index, [_job("extract", "5")])
    _tracked(index, [_job("extract-2", "5", run="orders-2")], run="orders-2")
    relist = index.relist_begin("elsewhere")
    assert relist.runs == {}
    relist = index.relist_begin(NS)
    _tracked(index, [_job("extract-2", "5", run="orders-2")], run="orders-2")  # listed again meanwhile
    index.relisted(relist, [_job("extract", "5", uid="another-run-uid")])  # a Job of another run of that name
    index.relist_end(relist)
    assert _succeeded(index) == {}
    assert _succeeded(index, "orders-2") == {"extract-2": 0}
    assert index.size == 1


def test_a_relist_that_failed_leaves_the_jobs_kept_and_the_watch_keeps_them_as_before() -> None:
    index = JobIndex()
    _tracked(index, [_job("extract", "5")])
    relist = index.relist_begin(NS)
    index.relist_end(relist)  # its list failed
    index.saw(_job("extract", "6", succeeded=1))
    assert _succeeded(index) == {"extract": 1}
    assert all(listing.next is None for listing in relist.runs.values())
