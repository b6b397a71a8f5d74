"""Fixtures of the component tier: a fake Kubernetes API, a clock that moves only when told, and the
operator's parts wired to both."""

from __future__ import annotations

import pytest

from fakekube import FakeKube, ManualClock
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
