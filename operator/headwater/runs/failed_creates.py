"""Why the Job controller creates no pod for a Job: its ``FailedCreate`` Events, read once per namespace for
every Job that asks.

A Job with no pod a few seconds after its creation is either refused its pods (quota, admission: the Job
controller posts a ``FailedCreate`` Event and no condition says so) or only behind in the Job controller's
queue.  Listing each such Job's Events cost the apiserver a scan of the namespace's Events per Job and per
recheck (about 110 ms each with 2,000 Jobs waiting).  Here the namespace's FailedCreate Events of Jobs are
listed in one request (the apiserver selects them by reason), and that answer serves every Job of the
namespace for :data:`FRESH_SECONDS`; a Job that asks meanwhile waits for the read in flight rather than
making its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FRESH_SECONDS", "FailedCreates"]

FRESH_SECONDS = 2.0
"""How long one namespace's answer serves every Job that asks."""


class FailedCreates:
    """Per namespace, the FailedCreate Events of its Jobs, read at most once every :data:`FRESH_SECONDS`."""

    def __init__(self, read: Callable[[str], list[dict[str, Any]]], fresh_seconds: float = FRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self.fresh_seconds = fresh_seconds
        self._clock = clock
        self._guard = threading.Condition()
        self._answers: dict[str, tuple[float, list[dict[str, Any]]]] = {}  # namespace → (read at, events)
        self._reading: set[str] = set()

    def of(self, namespace: str, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The FailedCreate Events about ``job`` (by name, and by UID where the Event names one)."""
        meta = job["metadata"]
        name, uid = meta["name"], meta.get("uid")
        return [e for e in self._events(namespace)
                if (e.get("involvedObject") or {}).get("name") == name
                and (e.get("involvedObject") or {}).get("uid") in (uid, None)]

    def _events(self, namespace: str) -> list[dict[str, Any]]:
        with self._guard:
            while True:
                kept = self._answers.get(namespace)
                if kept is not None and self._clock() - kept[0] < self.fresh_seconds:
                    return kept[1]
                if namespace not in self._reading:
                    self._reading.add(namespace)
                    break
                self._guard.wait()  # another thread reads it: its answer is as fresh as ours would be
        began = self._clock()
        events: list[dict[str, Any]] | None = None
        try:
            events = self._read(namespace)
            return events
        finally:
            with self._guard:
                self._reading.discard(namespace)
                if events is not None:
                    # old answers go (a namespace no Job asks about any more is not kept)
                    self._answers = {ns: kept for ns, kept in self._answers.items()
                                     if began - kept[0] < self.fresh_seconds}
                    self._answers[namespace] = (began, events)
                self._guard.notify_all()
