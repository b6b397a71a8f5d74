"""Runs looked at again later: each once per plan, after its delay, on a bounded number of threads and at a
bounded total rate however many wait."""

from __future__ import annotations

import threading
import time

import pytest

from headwater.runs.rechecks import Rechecks
from helpers import wait_for

pytestmark = pytest.mark.unit


def test_a_recheck_runs_once_after_its_delay_even_when_planned_twice() -> None:
    done: list[tuple[str, float]] = []
    rechecks: Rechecks[str] = Rechecks(lambda key: done.append((key, time.monotonic())), max_per_second=1000)
    start = time.monotonic()
    assert rechecks.later("a", 0.3) >= 0.3
    assert rechecks.later("a", 0.0) == 0.0  # already planned: keeps its time
    wait_for(lambda: done, timeout=10, message="the recheck")
    assert [key for key, _ in done] == ["a"] and done[0][1] - start >= 0.3
    assert rechecks.waiting == 0
    rechecks.later("a", 0.0)  # done: it can be planned again
    wait_for(lambda: len(done) == 2, timeout=10, message="the second recheck")


def test_the_more_runs_wait_the_later_each_is_rechecked() -> None:
    rechecks: Rechecks[int] = Rechecks(lambda key: None, max_per_second=10)
    delays = [rechecks.later(n, 3.0) for n in range(1000)]
    assert delays[0] == 3.0 and delays[29] == 3.0  # few waiting: the delay asked for
    assert delays[999] == pytest.approx(100.0)  # 1,000 waiting at 10 a second
    assert rechecks.waiting == 1000


def test_a_thousand_waiting_runs_take_a_handful_of_threads_and_a_failing_recheck_stops_none() -> None:
    done: set[int] = set()
    lock = threading.Lock()

    def work(key: int) -> None:
        if key == 7:
            raise RuntimeError("a bug in one recheck")
        with lock:
            done.add(key)

    before = threading.active_count()
    rechecks: Rechecks[int] = Rechecks(work, workers=2, max_per_second=1_000_000)
    for n in range(1000):  # due only after the loop, however slow the machine: no worker yet below
        rechecks.later(n, 1.0)
    assert threading.active_count() - before <= 1  # the timer thread; the workers start as work comes
    wait_for(lambda: len(done) == 999, timeout=30, message="every recheck but the failing one")
    assert threading.active_count() - before <= 3
