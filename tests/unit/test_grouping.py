"""Group commit: writes to one key that arrive together are made in one round; each caller gets its outcome.
Batches: items of one key that arrive while a batch is worked on make the next, their callers never waiting."""

from __future__ import annotations

import threading

import pytest

from headwater.adapters.grouping import Batches, GroupCommit
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


class Writer:
    """A write that records its rounds, holds the first one until released, and refuses any item "bad"."""

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self, items: list[str]) -> str:
        self.rounds.append(sorted(items))
        if len(self.rounds) == 1:
            self.inside.set()
            assert self.release.wait(10)
        if "bad" in items:
            raise ValueError("refused: bad")
        return "+".join(sorted(items))


def a_round_then_more(write: Writer, later: str | tuple[str, ...]) -> tuple[dict[str, object], dict[str, object]]:
    """Submit "a" to key orders; while its round is held, submit ``later`` and wait until each waits for the
    next round; then let the rounds go.  What each "a" and later caller got, by item."""
    group: GroupCommit[str, str] = GroupCommit()
    first, lead = in_threads({"a": lambda: group.submit("orders", "a", write)})
    assert write.inside.wait(10)
    out, waiting = in_threads({x: (lambda x=x: group.submit("orders", x, write)) for x in later})
    waiting_on(group, "orders", len(later))
    write.release.set()
    for thread in lead + waiting:
        thread.join(10)
    return first, out


def test_writes_arriving_while_a_round_is_written_wait_and_are_written_together_in_one_more_round() -> None:
    write = Writer()
    first, later = a_round_then_more(write, "bcd")
    assert write.rounds == [["a"], ["b", "c", "d"]]
    assert first == {"a": "a"} and later == {"b": "b+c+d", "c": "b+c+d", "d": "b+c+d"}


def test_a_failing_round_is_written_again_item_by_item_so_that_one_bad_item_fails_alone() -> None:
    write = Writer()
    _, later = a_round_then_more(write, ("b", "bad"))
    assert later["b"] == "b"
    assert isinstance(later["bad"], ValueError) and str(later["bad"]) == "refused: bad"
    assert write.rounds[1] == ["b", "bad"] and sorted(map(tuple, write.rounds[2:])) == [("b",), ("bad",)]


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


def test_items_added_while_a_batch_is_worked_on_return_at_once_and_make_the_next_batch() -> None:
    batches: Batches[str] = Batches()
    inside, release = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def work(batch: list[str]) -> None:
        seen.append(sorted(batch))
        if len(seen) == 1:
            inside.set()
            assert release.wait(10)

    worker = threading.Thread(target=batches.add, args=("orders", "r1", "r1", work))
    worker.start()
    assert inside.wait(10)
    for name in ("r2", "r3", "r3"):  # each returns at once; r3 twice is one item, its latest version
        batches.add("orders", name, name, work)
    batches.add("other", "x1", "x1", work)  # another key is worked on at once, by its own caller
    release.set()
    worker.join(10)
    assert seen == [["r1"], ["x1"], ["r2", "r3"]]


def test_a_failing_batch_drops_what_waited_for_its_key_and_frees_the_key() -> None:
    batches: Batches[str] = Batches()
    inside, release = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def failing(batch: list[str]) -> None:
        seen.append(batch)
        inside.set()
        assert release.wait(10)
        raise RuntimeError("api down")

    errors: list[BaseException] = []

    def first() -> None:
        try:
            batches.add("orders", "r1", "r1", failing)
        except RuntimeError as exc:
            errors.append(exc)

    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(10)
    batches.add("orders", "r2", "r2", failing)  # waits for the failing batch's key: dropped with it
    release.set()
    worker.join(10)
    assert [str(e) for e in errors] == ["api down"] and seen == [["r1"]]
    batches.add("orders", "r3", "r3", seen.append)  # the key is free again
    assert seen == [["r1"], ["r3"]]
