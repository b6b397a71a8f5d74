"""Kubernetes Events posted from one background thread, so a reconcile never waits on them.

Events are what ``kubectl describe`` shows; they are informative and best-effort in
Kubernetes itself.  The queue keeps their order; on shutdown it is drained for a few seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from headwater.adapters.kube import Kube, post_event

__all__ = ["EventQueue"]

log = logging.getLogger(__name__)

_Item = tuple[dict[str, Any], str, str, str]


class EventQueue:
    """An event sink (``sink(obj, type, reason, message)``) that posts from a background thread."""

    def __init__(self, kube: Kube, maxsize: int = 10_000) -> None:
        self.kube = kube
        self.dropped = 0
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._loop, name="events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Post what is queued (for at most ``timeout`` seconds), then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout=timeout)

    def __call__(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((obj, type_, reason, message))
        except queue.Full:
            self.dropped += 1
            log.warning("event queue full; dropped Event %s on %s", reason, obj["metadata"].get("name"))

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                post_event(self.kube, *item)
            except Exception:
                log.exception("could not post Event %s", item[2])
