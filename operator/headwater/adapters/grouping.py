"""Work on one object by one thread at a time, the requests that arrive meanwhile taken together.

:class:`GroupCommit` (the caller waits for its outcome): writes to one object that arrive together are made
together, and each caller learns the outcome.

A Pipeline's status is one object that every finished run of it writes (its datasets, risks, alerts). One
thread at a time per key writes: the caller that finds the key free writes its change and then, round after
round, the changes that arrived meanwhile, all of one round in one read and one write; the others wait for
their round's outcome.  A busy Pipeline costs one write per round instead of one per run, and Pipelines never
wait for each other.  A round that fails is tried again item by item, so one bad change fails alone.

:class:`Batches` (the caller never waits): the items of one key that arrive while a batch is worked on
make the next batch (the runs joining one Pipeline's history); a failed batch drops what waited, which
level-based work brings back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Batches", "GroupCommit"]

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")
V = TypeVar("V")


@dataclass
class _Entry(Generic[I, R]):
    item: I
    done: threading.Event = field(default_factory=threading.Event)
    result: R | None = None
    error: BaseException | None = None


class GroupCommit(Generic[I, R]):
    """``submit(key, item, work)``: ``work(items)`` for a round of items of one key; the round's result, or
    its error, to each of its callers."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._pending: dict[Hashable, list[_Entry[I, R]]] = {}
        self._busy: set[Hashable] = set()

    def submit(self, key: Hashable, item: I, work: Callable[[list[I]], R]) -> R | None:
        """Have ``item`` written in the next round of ``key``; its round's result, or its error raised."""
        entry: _Entry[I, R] = _Entry(item)
        with self._guard:
            self._pending.setdefault(key, []).append(entry)
            leads = key not in self._busy
            self._busy.add(key)
        if leads:
            self._lead(key, work)
        entry.done.wait()
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _lead(self, key: Hashable, work: Callable[[list[I]], R]) -> None:
        while True:
            with self._guard:
                round_ = self._pending.pop(key, [])
                if not round_:
                    self._busy.discard(key)
                    return
            try:
                self._write(round_, work)
            finally:
                for entry in round_:
                    entry.done.set()

    @staticmethod
    def _write(round_: list[_Entry[I, R]], work: Callable[[list[I]], R]) -> None:
        try:
            result = work([e.item for e in round_])
        except BaseException as exc:
            if len(round_) == 1 or not isinstance(exc, Exception):
                for entry in round_:
                    entry.error = exc
                return
            for entry in round_:  # one bad item fails alone
                try:
                    entry.result = work([entry.item])
                except Exception as alone:
                    entry.error = alone
            return
        for entry in round_:
            entry.result = result


class Batches(Generic[V]):
    """Items gathered per key and worked on a batch at a time, by one thread per key; never waits on a lock."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._pending: dict[Hashable, dict[Hashable, V]] = {}
        self._busy: set[Hashable] = set()

    def add(self, key: Hashable, item_id: Hashable, item: V, work: Callable[[list[V]], object]) -> None:
        """Add ``item`` (the latest one for ``item_id``) to the next batch of ``key``; unless another thread is
        working on ``key`` (it takes the item in its next batch), call ``work`` with batches until none is left.

        When ``work`` raises, the items still waiting for ``key`` are dropped and the error goes to the caller:
        the work must be level-based, its items brought back by whatever brought them the first time.
        """
        with self._guard:
            self._pending.setdefault(key, {})[item_id] = item
            if key in self._busy:
                return
            self._busy.add(key)
        try:
            while True:
                with self._guard:
                    batch = self._pending.pop(key, None)
                    if not batch:
                        self._busy.discard(key)
                        return
                work(list(batch.values()))
        except BaseException:
            with self._guard:
                self._busy.discard(key)
                self._pending.pop(key, None)
            raise
