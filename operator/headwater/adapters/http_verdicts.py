"""What an HTTP answer means for a payload being delivered: done, retry later, or never again.

Pure.  2xx is delivered.  408, 429 and 5xx are worth another attempt, as is no answer at all
(a refused or reset connection, a timeout, a malformed answer).  Any other 4xx says the receiver
will never take the payload, and a 3xx is refused too: redirects are not followed, so a token
meant for one host never reaches another.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Outcome", "Verdict", "attempt_error", "next_delay", "verdict"]

RETRIABLE_CLIENT_ERRORS = frozenset({408, 429})


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


class Outcome(StrEnum):
    """How a payload's delivery ended, as told to its sender."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    """The receiver refused it (a 4xx other than 408/429, or a redirect): never retried."""
    GAVE_UP = "gave_up"
    """Still failing after every attempt."""
    DROPPED = "dropped"
    """Never attempted: the queue was full, or the sender stopped."""


def verdict(status: int | None) -> Verdict:
    """The verdict on an HTTP status; None means there was no valid answer."""
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in RETRIABLE_CLIENT_ERRORS or status >= 500:
        return Verdict.RETRY
    return Verdict.REJECTED


def attempt_error(status: int | None, error: BaseException | None) -> str:
    """A bounded label for a failed attempt (a metric label): ``3xx``, ``4xx``, ``5xx``, ``timeout`` ..."""
    if status is not None:
        return f"{status // 100}xx"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionError):
        return "connection"
    if isinstance(error, OSError):
        return "network"
    return "protocol"


def next_delay(delay: float, retry_after: str | None, cap: float) -> float:
    """How long to wait before the next attempt: the receiver's Retry-After seconds when it sent
    them (at most ``cap``), else ``delay``."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after.strip()), cap)
    return min(delay, cap)
