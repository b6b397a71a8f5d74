"""Reads that serve every Job of a namespace for a moment (runs/namespace_reads.py), and picking one Job's
Events and pods out of them (runs/jobs.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from headwater.runs.jobs import events_about, pods_of
from headwater.runs.namespace_reads import NamespaceReads


def _event(job: str, uid: str | None = None) -> dict[str, Any]:
    involved: dict[str, Any] = {"kind": "Job", "name": job}
    if uid is not None:
        involved["uid"] = uid
    return {"reason": "FailedCreate", "message": "exceeded quota", "involvedObject": involved}


def _pod(job: str, uid: str | None = "u1") -> dict[str, Any]:
    labels = {"batch.kubernetes.io/job-name": job}
    if uid is not None:
        labels["batch.kubernetes.io/controller-uid"] = uid
    return {"metadata": {"name": f"{job}-x", "labels": labels}, "status": {"phase": "Pending"}}


def _job(name: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid}}


class Reads:
    def __init__(self, answer: list[str]) -> None:
        self.answer = answer
        self.calls: list[str] = []

    def __call__(self, namespace: str) -> list[str]:
        self.calls.append(namespace)
        return list(self.answer)


def test_a_job_gets_only_the_events_and_pods_about_it() -> None:
    events = [_event("a", "u1"), _event("a", "an-older-job-of-that-name"), _event("b"), _event("a")]
    assert events_about(events, _job("a", "u1")) == [_event("a", "u1"), _event("a")]
    pods = [_pod("a"), _pod("a", "an-older-job-of-that-name"), _pod("b"), _pod("a", None)]
    assert pods_of(pods, _job("a", "u1")) == [_pod("a"), _pod("a", None)]


def test_one_read_serves_every_job_of_the_namespace_while_it_is_fresh() -> None:
    now = [100.0]
    reads = Reads(["first"])
    shared = NamespaceReads(reads, fresh_seconds=2.0, clock=lambda: now[0])
    assert [shared.get("ns") for _ in range(3)] == [["first"]] * 3
    shared.get("other")
    assert reads.calls == ["ns", "other"]
    now[0] += 2.0
    reads.answer = ["second"]
    assert shared.get("ns") == ["second"]
    assert reads.calls == ["ns", "other", "ns"]


def test_jobs_that_ask_while_a_read_is_in_flight_wait_for_its_answer() -> None:
    release, entered = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow(namespace: str) -> str:
        calls.append(namespace)
        entered.set()
        assert release.wait(10)
        return "answer"

    shared = NamespaceReads(slow, clock=lambda: 0.0)
    answers: list[str] = []
    first = threading.Thread(target=lambda: answers.append(shared.get("ns")))
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=lambda: answers.append(shared.get("ns")))
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert calls == ["ns"] and answers == ["answer", "answer"]


def test_a_read_that_fails_is_not_kept_and_the_next_job_reads_again() -> None:
    answers: list[Any] = [ConnectionError("apiserver away"), "answer"]

    def flaky(namespace: str) -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    shared = NamespaceReads(flaky, clock=lambda: 0.0)
    with pytest.raises(ConnectionError):
        shared.get("ns")
    assert shared.get("ns") == "answer"
