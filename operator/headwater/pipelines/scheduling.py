"""Cron schedules of Pipelines: which slot is due, what its run is called, what to do about running ones.

Policy for slots missed while the operator was down (documented in docs/runs.md):
only the most recent slot that has passed is considered; it runs if it is no
older than ``startingDeadlineSeconds`` (when set), otherwise it is recorded
as missed.  Earlier missed slots are never run.  A run's name is derived from
its slot, and the Pipeline's ``status.lastScheduleTime`` only moves forward,
so a slot never runs twice, even across operator restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from croniter import croniter

from headwater.spec.models import ConcurrencyPolicy
from headwater.spec.names import MAX_PIPELINE_NAME, bounded

__all__ = ["Action", "Decision", "decide", "latest_slot", "next_slot", "run_name_for_slot"]

class Action(StrEnum):
    NONE = "None"  # nothing due
    RUN = "Run"  # create the slot's run
    MISSED = "Missed"  # too late to start: record it and move on
    SKIP = "Skip"  # concurrencyPolicy Forbid and a run is active
    REPLACE = "Replace"  # cancel the active runs, then create the slot's run


@dataclass(frozen=True)
class Decision:
    action: Action
    slot: datetime | None = None
    skipped_earlier: bool = False


def _zone(time_zone: str | None) -> ZoneInfo:
    return ZoneInfo(time_zone or "UTC")


def latest_slot(schedule: str, time_zone: str | None, now: datetime) -> datetime:
    """The most recent slot at or before ``now``, in UTC."""
    base = now.astimezone(_zone(time_zone)).replace(microsecond=0) + timedelta(seconds=1)
    prev: datetime = croniter(schedule, base).get_prev(datetime)
    return prev.astimezone(UTC)


def next_slot(schedule: str, time_zone: str | None, now: datetime) -> datetime:
    """The first slot after ``now``, in UTC."""
    nxt: datetime = croniter(schedule, now.astimezone(_zone(time_zone))).get_next(datetime)
    return nxt.astimezone(UTC)


def decide(
    schedule: str,
    time_zone: str | None,
    now: datetime,
    since: datetime,
    *,
    suspended: bool = False,
    starting_deadline_seconds: int | None = None,
    policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID,
    active_runs: int = 0,
) -> Decision:
    """What to do now for a schedule whose slots up to ``since`` (exclusive of later ones) are handled.

    ``since`` is the last slot already handled, or the Pipeline's creation time.
    """
    if suspended:
        return Decision(Action.NONE)
    slot = latest_slot(schedule, time_zone, now)
    if slot <= since:
        return Decision(Action.NONE)
    first_after = next_slot(schedule, time_zone, since)
    skipped = first_after < slot
    if starting_deadline_seconds is not None and (now - slot).total_seconds() > starting_deadline_seconds:
        return Decision(Action.MISSED, slot, skipped)
    if active_runs:
        if policy == ConcurrencyPolicy.FORBID:
            return Decision(Action.SKIP, slot, skipped)
        if policy == ConcurrencyPolicy.REPLACE:
            return Decision(Action.REPLACE, slot, skipped)
    return Decision(Action.RUN, slot, skipped)


def run_name_for_slot(pipeline: str, slot: datetime) -> str:
    """``<pipeline>-<yyyymmddhhmm>`` of the slot in UTC: the same slot always names the same run.

    Pipeline names are at most ``MAX_PIPELINE_NAME`` characters (the CRD says so), so this fits 253;
    a longer name admitted before that rule is shortened the one way every derived name is.
    """
    return f"{bounded(pipeline, MAX_PIPELINE_NAME)}-{slot.astimezone(UTC):%Y%m%d%H%M}"
