"""New runs start after a burst of runs that dataset triggers create, not in the middle of it.

A burst (100 upstream completions at once) is 100 PipelineRun creates, and the apiserver that serves them
shares a few cores with everything else.  Each run that starts meanwhile costs that apiserver a status write,
its first Jobs and Events, and the Job controller's and the nodes' work on those: the later creates of the
burst wait behind them.  So while a trigger pass creates its runs, the runs that arrive unstarted are held, and
all of them start together when the pass's creates are done: every run of the burst exists first.

Holding is bounded: a run is held at most ``MAX_HOLD_SECONDS`` (creates that go on longer, a stream of passes,
never starve the starts), and only a run's first pass is held -- runs under way are never delayed.  Nothing
held is lost: a held run is a PipelineRun in the apiserver, and an operator that stops holding it (a crash)
finds it again on its next start or resync.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["MAX_HOLD_SECONDS", "StartGate"]

log = logging.getLogger(__name__)

MAX_HOLD_SECONDS = 1.0
"""The longest a new run waits for a burst of trigger creates to end (it starts then, burst or not)."""
WORKERS = 32
"""Held runs started at once when a burst ends (as many as the operator's handler threads)."""


class StartGate:
    """Holds the first pass of new runs while trigger passes create runs; safe to call from many threads."""

    def __init__(self, start: Callable[[dict[str, Any]], object], *, max_hold: float = MAX_HOLD_SECONDS,
                 workers: int = WORKERS) -> None:
        self._start = start
        self._max_hold = max_hold
        self._lock = threading.Lock()
        self._bursts = 0
        self._held: dict[tuple[str, str], dict[str, Any]] = {}
        self._timer: threading.Timer | None = None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="run-start")
        self._closed = False

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def burst_begins(self) -> None:
        """A trigger pass begins creating runs."""
        with self._lock:
            self._bursts += 1

    def burst_ends(self) -> None:
        """A trigger pass's creates are done: when no other pass creates, the held runs start."""
        with self._lock:
            self._bursts = max(0, self._bursts - 1)
            if not self._bursts:
                self._release()

    def hold(self, run: dict[str, Any]) -> bool:
        """Whether ``run`` (one not started yet) waits for the burst under way; False: start it now."""
        meta = run["metadata"]
        with self._lock:
            if not self._bursts or self._closed:
                return False
            self._held[(meta["namespace"], meta["name"])] = run
            if self._timer is None:
                self._timer = threading.Timer(self._max_hold, self._expire)
                self._timer.daemon = True
                self._timer.start()
            return True

    def close(self) -> None:
        """Start what is held (before the operator stops, so that nothing waits for a resync) and stop."""
        with self._lock:
            self._closed = True
            self._release()
        self._pool.shutdown(wait=True)

    def _expire(self) -> None:
        with self._lock:
            if self._held:
                log.info("starting %d new run(s) held %.1f s behind trigger creates that go on", len(self._held),
                         self._max_hold)
            self._release()

    def _release(self) -> None:
        """Start every held run (under the lock: nothing is handed to the pool once it is shut down)."""
        for run in self._held.values():
            self._pool.submit(self._start, run)
        self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
