"""The newest version seen of each run (runs/latest.py): what a reconcile pass starts from instead of a GET."""

from __future__ import annotations

import json
from typing import Any

from headwater.runs.latest import LatestRuns, is_newer


def _run(name: str, version: str, uid: str = "u1", phase: str = "Running", namespace: str = "ns") -> dict[str, Any]:
    return {"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun",
            "metadata": {"namespace": namespace, "name": name, "uid": uid, "resourceVersion": version},
            "spec": {"pipelineRef": {"name": "p"}}, "status": {"phase": phase}}


def test_a_version_compares_as_the_integer_etcd_gives_it() -> None:
    assert is_newer("10", "9")
    assert not is_newer("9", "10")
    assert not is_newer("10", "10")


def test_a_version_that_is_not_an_integer_counts_as_newer_whenever_it_differs() -> None:
    assert is_newer("a2", "a1")
    assert is_newer("a1", "a2")
    assert not is_newer("a1", "a1")


def test_the_newest_version_is_kept_whatever_order_the_versions_arrive_in() -> None:
    latest = LatestRuns()
    latest.saw(_run("r", "5", phase="Pending"))
    latest.saw(_run("r", "7", phase="Running"))
    latest.saw(_run("r", "6", phase="Pending"))  # e.g. an event trailing the answer to a later write
    kept = latest.get("ns", "r")
    assert kept is not None
    assert kept["metadata"]["resourceVersion"] == "7"
    assert kept["status"]["phase"] == "Running"


def test_each_get_is_a_copy_that_the_caller_may_change() -> None:
    latest = LatestRuns()
    latest.saw(_run("r", "5"))
    first = latest.get("ns", "r")
    assert first is not None
    first["status"]["phase"] = "Failed"
    again = latest.get("ns", "r")
    assert again is not None and again["status"]["phase"] == "Running"


def test_a_run_created_again_under_its_name_replaces_the_old_one_whatever_its_version() -> None:
    latest = LatestRuns()
    latest.saw(_run("r", "50", uid="old"))
    latest.saw(_run("r", "8", uid="new"))
    kept = latest.get("ns", "r")
    assert kept is not None and kept["metadata"]["uid"] == "new"
    assert latest.get("ns", "r", uid="old") is None
    assert latest.get("ns", "r", uid="new") is not None


def test_runs_are_told_apart_by_namespace_and_name() -> None:
    latest = LatestRuns()
    latest.saw(_run("r", "5", namespace="a"))
    latest.saw(_run("r", "6", namespace="b", phase="Pending"))
    a, b = latest.get("a", "r"), latest.get("b", "r")
    assert a is not None and a["status"]["phase"] == "Running"
    assert b is not None and b["status"]["phase"] == "Pending"
    assert latest.get("c", "r") is None


def test_a_dropped_run_is_read_again() -> None:
    latest = LatestRuns()
    latest.saw(_run("r", "5"))
    latest.drop("ns", "r")
    assert latest.get("ns", "r") is None
    assert latest.size == 0
    latest.drop("ns", "r")  # dropping what is not kept is nothing


def test_a_run_without_a_version_is_not_kept() -> None:
    latest = LatestRuns()
    latest.saw({"metadata": {"namespace": "ns", "name": "r", "uid": "u1"}})  # e.g. a Job's owner reference
    assert latest.get("ns", "r") is None


def test_past_its_bound_the_least_recently_seen_runs_are_dropped_first() -> None:
    one = len(json.dumps(_run("r0", "10"), separators=(",", ":")))  # every run here: the same size
    latest = LatestRuns(max_bytes=3 * one)
    for i in range(3):
        latest.saw(_run(f"r{i}", str(10 + i)))
    latest.saw(_run("r0", "20"))  # seen again: now the most recent
    latest.saw(_run("r3", "21"))
    assert latest.get("ns", "r1") is None
    assert [latest.get("ns", n) is not None for n in ("r0", "r2", "r3")] == [True, True, True]
    assert latest.size <= 3 * one
    assert len(latest) == 3
