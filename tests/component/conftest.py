"""Fixtures of the component tier: a fake Kubernetes API, a clock that moves only when told, and the
operator's parts wired to both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakekube import FakeKube, ManualClock
from headwater.adapters.delivery import JsonPoster
from helpers import Receiver, receiving
from wiring import Operator


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def kube(clock: ManualClock) -> FakeKube:
    return FakeKube(clock)


@pytest.fixture
def operator(kube: FakeKube, clock: ManualClock) -> Operator:
    """The engine, SLA monitor and handlers, without a recorder or an alert endpoint."""
    return Operator(kube, clock)


@pytest.fixture
def alerts() -> Iterator[tuple[JsonPoster, Receiver]]:
    """An alert sender posting to a real HTTP receiver on loopback, and that receiver."""
    with receiving() as receiver:
        poster = JsonPoster(f"http://127.0.0.1:{receiver.server_address[1]}/alerts", name="alerts", first_delay=0.05)
        poster.start()
        try:
            yield poster, receiver
        finally:
            poster.stop()
