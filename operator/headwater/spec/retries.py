"""Per-item retries with exponential back-off, so that one item that keeps failing never holds up the others.

Pure bookkeeping: the caller says when an item failed or succeeded and asks whether it is due;
nothing here waits or reads a clock.  A loop over many items skips the ones not due and goes on.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

__all__ = ["Failure", "RetryBook"]


@dataclass(frozen=True)
class Failure:
    """The latest failure of an item: how many in a row, and when it may be tried again."""

    count: int
    retry_at: float


class RetryBook:
    """Failures in a row per item; the n-th waits ``first`` x 2^(n-1) seconds, at most ``cap``."""

    def __init__(self, first: float = 2.0, cap: float = 300.0) -> None:
        self.first, self.cap = first, cap
        self._failures: dict[Hashable, Failure] = {}

    def due(self, key: Hashable, now: float) -> bool:
        failure = self._failures.get(key)
        return failure is None or now >= failure.retry_at

    def failed(self, key: Hashable, now: float) -> Failure:
        count = self._failures[key].count + 1 if key in self._failures else 1
        failure = Failure(count, now + min(self.first * 2 ** (count - 1), self.cap))
        self._failures[key] = failure
        return failure

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget the items not in ``keys`` (gone, or no longer waiting)."""
        wanted = set(keys)
        for key in [k for k in self._failures if k not in wanted]:
            del self._failures[key]

    def __len__(self) -> int:
        return len(self._failures)
