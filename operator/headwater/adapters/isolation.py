"""One bad object never stops a loop: each object's work runs on its own, and its failure stays with it.

:meth:`Isolation.run` calls the work for one object.  An exception is caught; the first time (or when
the error changes) it is logged with the object's kind and name, posted as a Warning Event on the
object, and handed to ``on_failure`` (which sets a condition on it); the object is then backed off
(:class:`~headwater.adapters.backoff.BackoffTracker`) while the loop goes on with the others.  The
first success after failures logs the recovery and calls ``on_recovery``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from headwater.adapters.backoff import BackoffTracker, Failure, Key

__all__ = ["Isolation", "describe"]

log = logging.getLogger(__name__)

T = TypeVar("T")
EventSink = Callable[[dict[str, Any], str, str, str], None]
_MESSAGE_LIMIT = 1024


def describe(exc: BaseException) -> str:
    """One line about an error, bounded: ``ValidationError: ...`` or the API's status and reason."""
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is not None and reason is not None:  # an ApiException: its body can be long; status and reason say it
        body = getattr(exc, "body", None)
        text = f"HTTP {status} {reason}"
        if isinstance(body, str) and '"message"' in body:
            with contextlib.suppress(ValueError):
                text += f": {json.loads(body).get('message')}"
    else:
        text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:_MESSAGE_LIMIT]


class Isolation:
    """Per-object error isolation with backoff; safe to call from many threads."""

    def __init__(self, post_event: EventSink | None = None, backoff: BackoffTracker | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.post_event = post_event
        self.backoff = backoff if backoff is not None else BackoffTracker()
        self.clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def key(obj: dict[str, Any], kind: str | None = None) -> Key:
        """How :meth:`run` keys an object's failures: (``kind`` or the object's kind, namespace, name)."""
        meta = obj.get("metadata") or {}
        return kind or obj.get("kind") or "object", meta.get("namespace") or "", meta.get("name") or ""

    def due(self, key: Key) -> bool:
        with self._lock:
            return self.backoff.due(key, self.clock())

    def run(self, obj: dict[str, Any], what: str, work: Callable[[], T], *, reason: str,
            kind: str | None = None, respect_backoff: bool = True,
            on_failure: Callable[[str], object] | None = None,
            on_recovery: Callable[[], object] | None = None) -> T | None:
        """``work()`` for ``obj`` (a Kubernetes object, or just its metadata); None when it failed or waits.

        ``what`` names the work in messages (``scheduling``); ``reason`` is the Event's reason.  With
        ``respect_backoff`` false the work runs even while the object backs off (effects that must
        not be skipped), but failures are still reported once.
        """
        key = self.key(obj, kind)
        if respect_backoff and not self.due(key):
            return None
        try:
            result = work()
        except Exception as exc:  # the point: any error of one object stays with that object
            self._failed(obj, key, what, reason, exc, on_failure)
            return None
        with self._lock:
            recovered = self.backoff.succeeded(key)
        if recovered is not None:
            log.info("%s %s/%s: %s works again after %d failure(s)", *key, what, recovered.attempts)
            if on_recovery is not None:
                self._quietly(on_recovery, key, "clearing the failure")
        return result

    def _failed(self, obj: dict[str, Any], key: Key, what: str, reason: str, exc: Exception,
                on_failure: Callable[[str], object] | None) -> None:
        message = f"{what} failed: {describe(exc)}"
        with self._lock:
            failure, news = self.backoff.failed(key, message, self.clock())
        if not news:
            log.debug("%s %s/%s: %s (attempt %d; next in %.0fs)", *key, message, failure.attempts, failure.delay)
            return
        log.warning("%s %s/%s: %s; retrying in %.0fs", *key, message, failure.delay, exc_info=exc)
        if self.post_event is not None and obj.get("metadata", {}).get("name"):
            self.post_event(obj, "Warning", reason, message)
        if on_failure is not None:
            self._quietly(lambda: on_failure(message), key, "recording the failure")

    @staticmethod
    def _quietly(action: Callable[[], object], key: Key, doing: str) -> None:
        try:
            action()
        except Exception as exc:  # reporting a failure must not fail the loop either
            log.warning("%s %s/%s: %s failed too: %s", *key, doing, describe(exc))

    def failing(self, key: Key) -> Failure | None:
        with self._lock:
            return self.backoff.failing(key)
