"""Timestamps and durations, read and written in one place.

Kubernetes status fields carry RFC 3339 in UTC with second precision (``2026-01-02T03:04:05Z``);
the lineage store and its API keep sub-second precision.  Python 3.11's ``fromisoformat`` reads both,
``Z`` included.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_duration", "isotime", "isotime_precise", "now", "parse_time"]


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


def isotime(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def isotime_precise(moment: datetime) -> str:
    """RFC 3339 in UTC with the moment's sub-second digits, as the lineage API answers."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    """An RFC 3339 / ISO 8601 timestamp (``Z`` or an offset) as an aware datetime."""
    return datetime.fromisoformat(value)


def format_duration(now: datetime, since: datetime) -> str:
    """``1h2m3s`` style, like kubectl."""
    seconds = max(0, int((now - since).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
