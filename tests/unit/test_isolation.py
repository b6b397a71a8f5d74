"""Per-object isolation: one object's error is reported once, backs off, and never stops the others."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.adapters.backoff import BackoffTracker
from headwater.adapters.isolation import Isolation

pytestmark = pytest.mark.unit

KEY = ("Pipeline", "a", "broken")


def test_backoff_doubles_after_each_failure_in_a_row_up_to_its_cap() -> None:
    tracker = BackoffTracker(base=5, cap=30)
    delays = [tracker.failed(KEY, "boom", 0)[0].delay for _ in range(5)]
    assert delays == [5, 10, 20, 30, 30]
    assert not tracker.due(KEY, 29)
    assert tracker.due(KEY, 30)


def test_a_failure_is_news_the_first_time_and_when_its_message_changes() -> None:
    tracker = BackoffTracker()
    assert tracker.failed(KEY, "boom", 0)[1]
    assert not tracker.failed(KEY, "boom", 1)[1]
    assert tracker.failed(KEY, "bang", 2)[1]
    assert tracker.succeeded(KEY) is not None
    assert tracker.due(KEY, 0) and len(tracker) == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def obj(name: str) -> dict[str, Any]:
    return {"kind": "Pipeline", "metadata": {"namespace": "a", "name": name}}


def test_one_failing_object_is_reported_once_backs_off_and_the_others_go_on() -> None:
    events: list[tuple[str, str, str, str]] = []
    conditions: list[str | None] = []
    clock = Clock()
    isolation = Isolation(lambda o, t, r, m: events.append((o["metadata"]["name"], t, r, m)),
                          BackoffTracker(base=10, cap=60), clock)
    done: list[str] = []

    def work(name: str) -> None:
        if name == "broken":
            raise ValueError("unknown time zone 'Mars'")
        done.append(name)

    def one_pass() -> None:
        for name in ("first", "broken", "last"):
            isolation.run(obj(name), "scheduling", lambda name=name: work(name), reason="ScheduleFailed",  # type: ignore[misc]
                          on_failure=conditions.append, on_recovery=lambda: conditions.append(None))

    one_pass()
    assert done == ["first", "last"]
    assert events == [("broken", "Warning", "ScheduleFailed",
                       "scheduling failed: ValueError: unknown time zone 'Mars'")]
    assert conditions == ["scheduling failed: ValueError: unknown time zone 'Mars'"]
    clock.now = 5
    one_pass()  # backing off: not tried, nothing reported again
    assert done == ["first", "last"] * 2 and len(events) == 1
    clock.now = 10
    one_pass()  # tried again, same error: not reported again
    assert len(events) == 1 and len(conditions) == 1
    assert isolation.failing(("Pipeline", "a", "broken")) is not None
    assert isolation.failing(("Pipeline", "a", "broken")).attempts == 2  # type: ignore[union-attr]


def test_the_first_success_after_failures_clears_the_condition() -> None:
    clock = Clock()
    isolation = Isolation(None, BackoffTracker(base=1), clock)
    outcomes = iter([RuntimeError("down"), None])
    cleared: list[bool] = []

    def work() -> str:
        error = next(outcomes)
        if error:
            raise error
        return "ok"

    assert isolation.run(obj("p"), "work", work, reason="Failed", on_recovery=lambda: cleared.append(True)) is None
    clock.now = 1
    assert isolation.run(obj("p"), "work", work, reason="Failed", on_recovery=lambda: cleared.append(True)) == "ok"
    assert cleared == [True]


def test_effects_that_must_not_be_skipped_run_even_while_backing_off() -> None:
    isolation = Isolation(None, BackoffTracker(base=100), Clock())
    calls: list[int] = []

    def effect() -> None:
        calls.append(1)
        raise RuntimeError("SLA store down")

    for _ in range(3):
        isolation.run(obj("p"), "the run's SLA effects", effect, reason="RunEffectFailed", respect_backoff=False)
    assert len(calls) == 3


def test_a_failure_to_report_the_failure_does_not_escape() -> None:
    def broken_condition(_: str) -> None:
        raise RuntimeError("apiserver down")

    isolation = Isolation(None, BackoffTracker(), Clock())
    assert isolation.run(obj("p"), "work", lambda: 1 / 0, reason="Failed", on_failure=broken_condition) is None
