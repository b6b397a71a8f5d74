"""Delivering JSON to HTTP endpoints from a background thread, with retries and back-off.

Used for OpenLineage events and alert notifications: a slow or absent receiver never holds up
reconciliation; a payload still undeliverable after its attempts is dropped and logged.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from typing import Any

__all__ = ["JsonPoster"]

log = logging.getLogger(__name__)


class JsonPoster:
    """POSTs JSON payloads to ``url`` in order, from one background thread."""

    def __init__(self, url: str, token: str | None = None, *, name: str = "poster", attempts: int = 8,
                 timeout: float = 10.0, first_delay: float = 0.5) -> None:
        self.url, self.token, self.name = url, token, name
        self.attempts, self.timeout, self.first_delay = attempts, timeout, first_delay
        self.sent = self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=100_000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=10)

    def send(self, payload: dict[str, Any]) -> None:
        """Queue ``payload``; returns at once."""
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
            log.warning("%s: queue full; dropped a payload", self.name)

    def _loop(self) -> None:
        while not self._stop.is_set():
            payload = self._queue.get()
            if payload is not None:
                self._deliver(payload)

    def _deliver(self, payload: dict[str, Any]) -> None:
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            try:
                self._post(payload)
                self.sent += 1
                return
            except (urllib.error.URLError, OSError) as exc:
                if attempt == self.attempts or self._stop.wait(delay):
                    log.warning("%s: dropped a payload after %d attempts: %s", self.name, attempt, exc)
                    self.dropped += 1
                    return
                delay = min(delay * 2, 30.0)

    def _post(self, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()
