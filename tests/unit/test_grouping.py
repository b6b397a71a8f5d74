"""Group commit: writes to one key that arrive together are made in one round; each caller gets its outcome."""

from __future__ import annotations

import threading

import pytest

from headwater.adapters.grouping import GroupCommit
from helpers import wait_for

pytestmark = pytest.mark.unit


def waiting_on(group: GroupCommit[str, str], key: str, count: int) -> None:
    wait_for(lambda: len(group._pending.get(key, [])) == count, timeout=10, message=f"{count} writes to wait")


def in_threads(calls: dict[str, object]) -> tuple[dict[str, object], list[threading.Thread]]:
    """Start each call in a thread of its own; what each returned or raised, by name, and the threads."""
    out: dict[str, object] = {}

    def run(name: str, call: object) -> None:
        try:
            out[name] = call()  # type: ignore[operator]
        except Exception as exc:
            out[name] = exc

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in calls.items()]
    for thread in threads:
        thread.start()
    return out, threads


def test_writes_arriving_while_a_round_is_written_wait_and_are_written_together_in_one_more_round() -> None:
    group: GroupCommit[str, str] = GroupCommit()
    inside, release = threading.Event(), threading.Event()
    rounds: list[list[str]] = []

    def write(items: list[str]) -> str:
        rounds.append(sorted(items))
        if len(rounds) == 1:
            inside.set()
            assert release.wait(10)
        return "+".join(sorted(items))

    first, lead = in_threads({"a": lambda: group.submit("orders", "a", write)})
    assert inside.wait(10)
    later, waiting = in_threads({x: (lambda x=x: group.submit("orders", x, write)) for x in "bcd"})
    waiting_on(group, "orders", 3)  # they wait for their round's outcome
    release.set()
    for thread in lead + waiting:
        thread.join(10)
    assert rounds == [["a"], ["b", "c", "d"]]
    assert first == {"a": "a"} and later == {"b": "b+c+d", "c": "b+c+d", "d": "b+c+d"}


def test_a_failing_round_is_written_again_item_by_item_so_that_one_bad_item_fails_alone() -> None:
    group: GroupCommit[str, str] = GroupCommit()
    inside, release = threading.Event(), threading.Event()
    rounds: list[list[str]] = []

    def write(items: list[str]) -> str:
        rounds.append(sorted(items))
        if len(rounds) == 1:
            inside.set()
            assert release.wait(10)
        if "bad" in items:
            raise ValueError("refused: bad")
        return "+".join(sorted(items))

    _, lead = in_threads({"a": lambda: group.submit("orders", "a", write)})
    assert inside.wait(10)
    later, waiting = in_threads({x: (lambda x=x: group.submit("orders", x, write)) for x in ("b", "bad")})
    waiting_on(group, "orders", 2)
    release.set()
    for thread in lead + waiting:
        thread.join(10)
    assert later["b"] == "b"
    assert isinstance(later["bad"], ValueError) and str(later["bad"]) == "refused: bad"
    assert rounds[1] == ["b", "bad"] and sorted(map(tuple, rounds[2:])) == [("b",), ("bad",)]


def test_keys_never_wait_for_each_other() -> None:
    group: GroupCommit[str, str] = GroupCommit()
    inside, release = threading.Event(), threading.Event()

    def slow(items: list[str]) -> str:
        inside.set()
        assert release.wait(10)
        return "slow"

    _, lead = in_threads({"a": lambda: group.submit("orders", "a", slow)})
    assert inside.wait(10)
    assert group.submit("customers", "x", lambda items: "at once") == "at once"
    release.set()
    for thread in lead:
        thread.join(10)
