"""The periodic resync reads runs a page at a time and lets each go: thousands of finished runs never sit in
the operator's memory together (a list of all of them, every resync, kept its resident size that large)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from fakekube import FakeKube
from manifests import pipeline, run, step
from wiring import Operator

pytestmark = pytest.mark.component

NS = "data"
RUNS = 1000
PAGE = 200


class Tracked(dict[str, Any]):
    """A run as the resync receives it, weakly referenceable so that the test sees how many are alive."""


def test_the_resync_never_holds_more_than_a_page_of_finished_runs(kube: FakeKube, operator: Operator) -> None:
    kube.seed(pipeline("orders", [step("load")]), NS)
    for i in range(RUNS):
        body = run(f"orders-{i:04d}", "orders")
        body["status"] = {"phase": "Succeeded"}
        kube.seed(body, NS)
    alive = [0]
    most = 0
    paged = kube.iter_runs

    def let_go() -> None:
        alive[0] -= 1

    def tracked(namespace: str | None, selector: str | None = None, page: int = PAGE) -> Iterator[dict[str, Any]]:
        nonlocal most
        for item in paged(namespace, selector, page):
            body = Tracked(item)
            weakref.finalize(body, let_go)
            alive[0] += 1
            most = max(most, alive[0])
            yield body
            del body

    kube.iter_runs = tracked  # type: ignore[method-assign]
    operator.resync()
    assert alive[0] == 0 and most > 0
    assert most <= PAGE + 1, f"{most} runs were alive at once during the resync"
