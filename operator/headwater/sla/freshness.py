"""Freshness SLAs of output datasets: a maximum age, or a daily deadline in a time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from headwater.spec.models import Freshness

__all__ = ["Verdict", "evaluate"]

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Verdict:
    stale: bool
    sla_seconds: float  # the longest age the SLA allows (a day for a daily deadline)
    message: str


def _deadline_passed(fresh: Freshness, now: datetime) -> datetime:
    """The most recent deadline instant at or before ``now``."""
    zone = ZoneInfo(fresh.time_zone or "UTC")
    hour, minute = (int(part) for part in (fresh.deadline or "00:00").split(":"))
    local = now.astimezone(zone)
    deadline = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if deadline > local:
        deadline -= _DAY
    return deadline


def evaluate(fresh: Freshness, last_updated: datetime | None, now: datetime) -> Verdict:
    """Whether a dataset last written at ``last_updated`` (None: never) is past its SLA at ``now``.

    ``maxAge``: stale once older than that.  ``deadline``: by each day's deadline the dataset must
    have been written within the 24 hours before it ("updated by 07:00").
    """
    max_age = fresh.max_age_delta
    if max_age is not None:
        stale = last_updated is None or now - last_updated > max_age
        rule = f"must be at most {fresh.max_age} old"
        return Verdict(stale, max_age.total_seconds(), rule)
    deadline = _deadline_passed(fresh, now)
    stale = last_updated is None or last_updated < deadline - _DAY
    rule = f"must be updated by {fresh.deadline} {fresh.time_zone or 'UTC'} every day"
    return Verdict(stale, _DAY.total_seconds(), rule)
