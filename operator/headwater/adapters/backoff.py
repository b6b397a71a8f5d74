"""Per-object exponential backoff, kept in memory: which objects failed, how often, and when to try again.

Pure bookkeeping (no clock of its own, no locks): the caller passes the time and serialises calls.
An object is keyed by (kind, namespace, name); a success forgets it.  Losing this state (a restart)
only means every object is tried once more at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

__all__ = ["BackoffTracker", "Failure", "Key"]

Key = tuple[str, str, str]
"""(kind, namespace, name) of the object; any hashable key works (the recorder keys runs by UID)."""


@dataclass(frozen=True)
class Failure:
    """How one object has been failing: attempts in a row, the last error, and when to try again."""

    attempts: int
    message: str
    retry_at: float
    delay: float


class BackoffTracker:
    """Delays ``base * factor**(attempts-1)`` seconds, at most ``cap``, after each failure in a row."""

    def __init__(self, base: float = 5.0, cap: float = 300.0, factor: float = 2.0) -> None:
        self.base, self.cap, self.factor = base, cap, factor
        self._failures: dict[Hashable, Failure] = {}

    def due(self, key: Hashable, now: float) -> bool:
        """Whether the object may be tried now (never failed, or its delay is over)."""
        failure = self._failures.get(key)
        return failure is None or now >= failure.retry_at

    def failed(self, key: Hashable, message: str, now: float) -> tuple[Failure, bool]:
        """Record a failure; also whether it is news (the first, or a different error than the last)."""
        before = self._failures.get(key)
        attempts = before.attempts + 1 if before else 1
        delay = min(self.cap, self.base * self.factor ** (attempts - 1))
        failure = Failure(attempts, message, now + delay, delay)
        self._failures[key] = failure
        return failure, before is None or before.message != message

    def succeeded(self, key: Hashable) -> Failure | None:
        """Forget the object's failures; returns the last one, if it was failing."""
        return self._failures.pop(key, None)

    def failing(self, key: Hashable) -> Failure | None:
        return self._failures.get(key)

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget the objects not in ``keys`` (gone, or no longer waiting)."""
        wanted = set(keys)
        for key in [k for k in self._failures if k not in wanted]:
            del self._failures[key]

    def __len__(self) -> int:
        return len(self._failures)
