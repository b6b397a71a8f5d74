"""FailedCreate Events read once per namespace for every Job that asks (runs/failed_creates.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from headwater.runs.failed_creates import FailedCreates


def _event(job: str, uid: str | None = None, message: str = "exceeded quota") -> dict[str, Any]:
    involved: dict[str, Any] = {"kind": "Job", "name": job}
    if uid is not None:
        involved["uid"] = uid
    return {"reason": "FailedCreate", "message": message, "involvedObject": involved}


def _job(name: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid}}


class Reads:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.calls: list[str] = []

    def __call__(self, namespace: str) -> list[dict[str, Any]]:
        self.calls.append(namespace)
        return list(self.events)


def test_each_job_gets_only_the_events_about_it() -> None:
    reads = Reads([_event("a", "u1"), _event("a", "older-job-of-that-name"), _event("b"), _event("a")])
    found = FailedCreates(reads, clock=lambda: 0.0).of("ns", _job("a", "u1"))
    assert found == [_event("a", "u1"), _event("a")]


def test_one_read_serves_every_job_of_the_namespace_while_it_is_fresh() -> None:
    now = [100.0]
    reads = Reads([_event("a")])
    shared = FailedCreates(reads, fresh_seconds=2.0, clock=lambda: now[0])
    for name in ("a", "b", "c"):
        shared.of("ns", _job(name))
    shared.of("other", _job("a"))
    assert reads.calls == ["ns", "other"]
    now[0] += 2.0
    reads.events.append(_event("b"))
    assert shared.of("ns", _job("b")) == [_event("b")]
    assert reads.calls == ["ns", "other", "ns"]


def test_jobs_that_ask_while_a_read_is_in_flight_wait_for_its_answer() -> None:
    release, entered = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow(namespace: str) -> list[dict[str, Any]]:
        calls.append(namespace)
        entered.set()
        assert release.wait(10)
        return [_event("b")]

    shared = FailedCreates(slow, clock=lambda: 0.0)
    answers: list[list[dict[str, Any]]] = []
    first = threading.Thread(target=lambda: answers.append(shared.of("ns", _job("a"))))
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=lambda: answers.append(shared.of("ns", _job("b"))))
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert calls == ["ns"]
    assert sorted(answers, key=len) == [[], [_event("b")]]


def test_a_read_that_fails_is_not_kept_and_the_next_job_reads_again() -> None:
    answers: list[Any] = [ConnectionError("apiserver away"), [_event("a")]]

    def flaky(namespace: str) -> list[dict[str, Any]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    shared = FailedCreates(flaky, clock=lambda: 0.0)
    with pytest.raises(ConnectionError):
        shared.of("ns", _job("a"))
    assert shared.of("ns", _job("a")) == [_event("a")]
