"""The start gate: new runs start after a burst of trigger creates, never held past its bound."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from headwater.controller.start_gate import StartGate
from helpers import wait_for

pytestmark = pytest.mark.unit


def run(name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "data", "name": name}}


class Started:
    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, run: dict[str, Any]) -> None:
        with self._lock:
            self.names.append(run["metadata"]["name"])


def test_a_run_arriving_outside_a_burst_is_not_held() -> None:
    started = Started()
    gate = StartGate(started)
    assert gate.hold(run("a")) is False
    gate.close()
    assert started.names == []


def test_runs_arriving_during_a_burst_start_once_each_when_it_ends() -> None:
    started = Started()
    gate = StartGate(started, max_hold=60)
    gate.burst_begins()
    assert gate.hold(run("a")) and gate.hold(run("b")) and gate.hold(run("a"))
    assert gate.held == 2
    assert started.names == []
    gate.burst_ends()
    wait_for(lambda: len(started.names) == 2, timeout=10, interval=0.01, message="both held runs to start")
    assert sorted(started.names) == ["a", "b"]
    assert gate.held == 0
    assert gate.hold(run("c")) is False  # the burst is over
    gate.close()
    assert sorted(started.names) == ["a", "b"]


def test_held_runs_wait_for_every_overlapping_burst() -> None:
    started = Started()
    gate = StartGate(started, max_hold=60)
    gate.burst_begins()
    gate.burst_begins()
    gate.hold(run("a"))
    gate.burst_ends()
    assert gate.held == 1 and started.names == []
    gate.burst_ends()
    wait_for(lambda: started.names == ["a"], timeout=10, interval=0.01, message="the held run to start")
    gate.close()


def test_a_burst_that_goes_on_holds_a_run_no_longer_than_the_bound() -> None:
    started = Started()
    gate = StartGate(started, max_hold=0.2)
    gate.burst_begins()
    gate.hold(run("a"))
    wait_for(lambda: started.names == ["a"], timeout=10, interval=0.01, message="the bound to start the run")
    # the burst still goes on: a run arriving now is held afresh, with a bound of its own
    assert gate.hold(run("b"))
    wait_for(lambda: started.names == ["a", "b"], timeout=10, interval=0.01, message="the second bound")
    gate.burst_ends()
    gate.close()
    assert started.names == ["a", "b"]


def test_closing_starts_what_is_held_and_holds_nothing_after() -> None:
    started = Started()
    gate = StartGate(started, max_hold=60)
    gate.burst_begins()
    gate.hold(run("a"))
    gate.close()
    assert started.names == ["a"]
    assert gate.hold(run("b")) is False
