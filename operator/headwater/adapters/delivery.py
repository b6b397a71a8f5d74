"""Delivering JSON to an HTTP endpoint from a background thread, with retries and back-off.

Used for OpenLineage events and alert notifications: a slow, absent or misbehaving receiver never
holds up reconciliation and never stops the thread (every error of an attempt is caught and
counted).  The queue is bounded by bytes; a payload that does not fit is dropped and counted.
Redirects are never followed, so the bearer token only ever goes to the configured host.  Each
payload ends in one :class:`~headwater.adapters.http_verdicts.Outcome`, told to its ``on_done``
callback, so a sender that must not lose a payload (alerts) keeps it until it hears ``DELIVERED``.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any

from headwater.adapters.http_verdicts import Outcome, Verdict, attempt_error, next_delay, verdict
from headwater.adapters.metrics import Metrics

__all__ = ["DEFAULT_QUEUE_BYTES", "JsonPoster", "Outcome"]

log = logging.getLogger(__name__)

DEFAULT_QUEUE_BYTES = 16 * 1024 * 1024
_MAX_ANSWER = 64 * 1024  # an answer's body is read this far, then the connection is dropped

OnDone = Callable[[Outcome], None]


@dataclass(frozen=True)
class _Item:
    body: bytes
    on_done: OnDone | None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib then raises HTTPError with the 3xx status."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Message,
                         newurl: str) -> None:
        return None


class JsonPoster:
    """POSTs JSON payloads to ``url`` in order, from one background thread."""

    def __init__(self, url: str, token: str | None = None, *, name: str = "poster", metrics: Metrics | None = None,
                 attempts: int = 8, timeout: float = 10.0, first_delay: float = 0.5, max_delay: float = 30.0,
                 max_queue_bytes: int = DEFAULT_QUEUE_BYTES) -> None:
        self.url, self.token, self.name = url, token, name
        self.attempts, self.timeout = attempts, timeout
        self.first_delay, self.max_delay, self.max_queue_bytes = first_delay, max_delay, max_queue_bytes
        self.metrics = metrics or Metrics()
        self.sent = self.dropped = 0
        self.queued_bytes = 0
        self._items: deque[_Item] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._opener = urllib.request.build_opener(_NoRedirects())
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.metrics.delivery_queue_bytes.labels(name).set_function(lambda: self.queued_bytes)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the attempt in progress; what is still queued is dropped (and told so)."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + 5)
        with self._ready:
            left, self.queued_bytes = list(self._items), 0
            self._items.clear()
        for item in left:
            self._finish(item, Outcome.DROPPED, "stopped")

    def send(self, payload: dict[str, Any], on_done: OnDone | None = None) -> bool:
        """Queue ``payload``; returns at once.  False when it was dropped because the queue is full."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        with self._ready:
            if self.queued_bytes + len(body) <= self.max_queue_bytes and not self._stop.is_set():
                self._items.append(_Item(body, on_done))
                self.queued_bytes += len(body)
                self._ready.notify()
                return True
        log.warning("%s: queue full (%d of %d bytes); dropped a payload of %d bytes",
                    self.name, self.queued_bytes, self.max_queue_bytes, len(body))
        self._finish(_Item(body, on_done), Outcome.DROPPED, "queue_full")
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._ready:
                while not self._items and not self._stop.is_set():
                    self._ready.wait()
                if self._stop.is_set():
                    return
                item = self._items.popleft()
                self.queued_bytes -= len(item.body)
            try:
                outcome, reason = self._deliver(item.body)
            except Exception:  # never lose the thread, whatever happens with one payload
                log.exception("%s: could not deliver a payload", self.name)
                outcome, reason = Outcome.GAVE_UP, "gave_up"
            self._finish(item, outcome, reason)

    def _finish(self, item: _Item, outcome: Outcome, reason: str) -> None:
        if outcome == Outcome.DELIVERED:
            self.sent += 1
            self.metrics.delivery_sent.labels(self.name).inc()
        else:
            self.dropped += 1
            self.metrics.delivery_dropped.labels(self.name, reason).inc()
        if item.on_done is not None:
            try:
                item.on_done(outcome)
            except Exception:
                log.exception("%s: the callback of a payload failed", self.name)

    def _deliver(self, body: bytes) -> tuple[Outcome, str]:
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            status, retry_after, error = self._post(body)
            judged = verdict(status)
            if judged == Verdict.DELIVERED:
                return Outcome.DELIVERED, ""
            self.metrics.delivery_errors.labels(self.name, attempt_error(status, error)).inc()
            why = f"HTTP {status}" if status is not None else f"{type(error).__name__}: {error}"
            if judged == Verdict.REJECTED:
                log.warning("%s: the receiver refused a payload (%s); not retried%s", self.name, why,
                            " (redirects are not followed: configure the final URL)" if status and status < 400
                            else "")
                return Outcome.REJECTED, "rejected"
            wait = next_delay(delay, retry_after, self.max_delay)
            if attempt == self.attempts:
                log.warning("%s: gave up on a payload after %d attempts: %s", self.name, attempt, why)
                return Outcome.GAVE_UP, "gave_up"
            if self._stop.wait(wait):
                return Outcome.DROPPED, "stopped"
            delay = min(delay * 2, self.max_delay)
        return Outcome.GAVE_UP, "gave_up"

    def _post(self, body: bytes) -> tuple[int | None, str | None, BaseException | None]:
        """One attempt: the HTTP status and Retry-After, or the error that prevented an answer."""
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(_MAX_ANSWER)
                return int(response.status), None, None
        except urllib.error.HTTPError as exc:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            exc.close()
            return exc.code, retry_after, None
        except urllib.error.URLError as exc:
            reason = exc.reason if isinstance(exc.reason, BaseException) else exc
            return None, None, reason
        except Exception as exc:  # a malformed answer (http.client.HTTPException), a reset, a timeout ...
            return None, None, exc
