"""Parsers and checks of single values that CEL cannot do: durations, quantities, time zones, cron, timestamps.

Each raises a pydantic error whose message is shown to people as is, so the operator and
``headwater validate`` say the same words.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic_core import PydanticCustomError

from headwater.spec.rules import DURATION, QUANTITY
from headwater.spec.times import isotime, parse_time

__all__ = ["check_cron", "check_quantity", "check_timestamp", "check_zone", "error", "parse_duration",
           "to_timestamp"]

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``6h``, ``1d``, ``1h30m`` (units s, m, h, d; d = 24h) as a timedelta."""
    if not re.fullmatch(DURATION[1:-1], text):
        raise ValueError(f"{text!r} is not a duration such as 30m, 6h, 1d or 1h30m")
    parts = re.findall(r"([0-9]+)([smhd])", text)
    return timedelta(seconds=sum(int(n) * _DURATION_UNITS[unit] for n, unit in parts))


def error(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (``kind`` is the pydantic error type)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def check_quantity(value: object) -> int | str:
    """A Kubernetes quantity: an integer, or a string such as 500m, 2 or 1Gi."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(QUANTITY, value):
        return value
    raise error("quantity", f"{value!r} is not a quantity: use an integer or a string such as 500m, 2 or 1Gi")


def check_zone(value: str | None) -> str | None:
    """An IANA time zone name known to this system's tz database."""
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise error(
                "time_zone", f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin"
            ) from None
    return value


def check_cron(value: str | None) -> str | None:
    """The full cron parse the apiserver's pattern cannot do (names, ranges in order), and a first firing."""
    if value is None:
        return value
    if not croniter.is_valid(value):
        raise error("cron", f"{value!r} is not a valid cron schedule: use 5 fields (minute hour day-of-month "
                    "month day-of-week) with values in range, such as '0 6 * * *'")
    try:
        croniter(value, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise error("cron", f"{value!r} never fires: no date matches it (such as February 30)") from None
    return value


def to_timestamp(value: object) -> object:
    """A datetime becomes RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return isotime(moment)
    return value


def check_timestamp(value: str) -> str:
    """An RFC 3339 date-time with a zone, such as 2026-11-23T06:00:00Z."""
    try:
        parsed = parse_time(value.replace("z", "Z"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise error("date_time", f"{value!r} is not an RFC 3339 date-time such as 2026-11-23T06:00:00Z")
    return value
