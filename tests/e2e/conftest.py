"""The operator as a real process against the local control plane, one per test namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest_e2e import OperatorProcess
from helpers import Cluster


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
             ) -> Iterator[OperatorProcess]:
    """A running operator watching the test's namespace; its log is printed when the test fails."""
    proc = OperatorProcess(cluster, namespace, tmp_path / "operator.log")
    proc.start()
    yield proc
    proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ({proc.log_path}) ---\n{proc.logs()[-20000:]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
