"""Runs to look at again later: one timer thread for all of them and a few workers, at a bounded total rate.

A run whose steps wait for pods is looked at again after a delay (the Job controller says why a pod does not
start only in Events and pods, which bring no event to the run).  A ``threading.Timer`` per run was a thread
per waiting run: with thousands of runs queued behind a busy Job controller that was thousands of threads,
and their rechecks, every 30 s each, took more of the operator than the runs' own events.  Here one thread
keeps the deadlines, :data:`WORKERS` threads do the rechecks, and a recheck is never planned sooner than the
number waiting divided by :data:`MAX_PER_SECOND`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["MAX_PER_SECOND", "WORKERS", "Rechecks"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

WORKERS = 2
"""Rechecks done at once."""
MAX_PER_SECOND = 10.0
"""Rechecks per second, all runs together: with N runs waiting, each is rechecked at most every N/10 s."""


class Rechecks(Generic[K]):
    """``work(key)`` after a delay, once per key at a time; safe to call from many threads."""

    def __init__(self, work: Callable[[K], object], workers: int = WORKERS, max_per_second: float = MAX_PER_SECOND,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._work, self._clock, self._max_per_second = work, clock, max_per_second
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._workers = ThreadPoolExecutor(workers, thread_name_prefix="recheck")
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """Keys with a recheck planned."""
        with self._wake:
            return len(self._due)

    def later(self, key: K, delay: float) -> float:
        """Plan ``work(key)`` in ``delay`` seconds (later when many wait; a key already planned keeps its
        time); the delay planned, 0 when the key was planned already."""
        with self._wake:
            if key in self._due:
                return 0.0
            delay = max(delay, (len(self._due) + 1) / self._max_per_second)
            due = self._clock() + delay
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._order), key))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="rechecks", daemon=True)
                self._thread.start()
            self._wake.notify()
        return delay

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > self._clock():
                    self._wake.wait(None if not self._heap else self._heap[0][0] - self._clock())
                _, _, key = heapq.heappop(self._heap)
                del self._due[key]
            try:
                self._workers.submit(self._run, key)
            except RuntimeError:  # the interpreter is shutting down: nothing is rechecked any more
                return

    def _run(self, key: K) -> None:
        try:
            self._work(key)
        except Exception:  # the work reports its own failures; a bug in it must not end the rechecks
            log.exception("recheck of %s failed", key)
