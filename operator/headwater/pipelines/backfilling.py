"""Backfills decided as data: the slots of a range, the runs to create next, and the progress to show.

Pure: given a Backfill, its Pipeline's schedule and the runs it already has, :func:`plan` says which slots
get a run now (the oldest ones without one, while fewer than ``maxConcurrent`` are active) and what the
status is.  A slot's run name derives from the Backfill and the slot, so a slot never runs twice; runs
start in slot order.  The Pipeline's own schedule is not involved: scheduled runs do not count against the
backfill's cap, nor its runs against the schedule's concurrencyPolicy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from headwater.spec import constants as c
from headwater.spec.models import MAX_BACKFILL_SLOTS, BackfillSpec, RunPhase, Trigger
from headwater.spec.names import MAX_PIPELINE_NAME, bounded, label_value
from headwater.spec.times import isotime, parse_time

__all__ = ["BackfillPlan", "TooManySlotsError", "backfill_run", "plan", "range_of", "run_name_for_slot", "slots"]


class TooManySlotsError(ValueError):
    """The range holds more slots than one Backfill may cover."""


def slots(schedule: str, time_zone: str | None, start: datetime, end: datetime,
          limit: int = MAX_BACKFILL_SLOTS) -> list[datetime]:
    """Every slot of ``schedule`` in [start, end], oldest first, in UTC (at most ``limit``, else an error)."""
    zone = ZoneInfo(time_zone or "UTC")
    cursor = croniter(schedule, start.astimezone(zone).replace(microsecond=0) - _SECOND)
    out: list[datetime] = []
    while True:
        slot: datetime = cursor.get_next(datetime).astimezone(UTC)
        if slot > end:
            return out
        if len(out) == limit:
            raise TooManySlotsError(f"the range holds more than {limit} schedule slots (the limit of one Backfill); "
                                    "split it into several Backfills")
        out.append(slot)


def run_name_for_slot(backfill: str, slot: datetime) -> str:
    """``<backfill>-<yyyymmddhhmm>``: one name per Backfill and slot, never a scheduled run's name when the
    Backfill is not named like its Pipeline."""
    return f"{bounded(backfill, MAX_PIPELINE_NAME)}-{slot.astimezone(UTC):%Y%m%d%H%M}"


@dataclass(frozen=True)
class BackfillPlan:
    """What one pass does: the slots whose runs to create, and the status to write."""

    create: list[datetime] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


def plan(name: str, spec: BackfillSpec, all_slots: Sequence[datetime], runs: Iterable[dict[str, Any]]
         ) -> BackfillPlan:
    """The next runs to create and the status, from the runs this Backfill has (read by its label)."""
    by_name = {r["metadata"]["name"]: (r.get("status") or {}).get("phase") for r in runs}
    names = [run_name_for_slot(name, slot) for slot in all_slots]
    created = [n for n in names if n in by_name]
    ended = [n for n in created if RunPhase.ended(by_name[n])]
    succeeded = sum(1 for n in ended if by_name[n] == RunPhase.SUCCEEDED)
    active = len(created) - len(ended)
    missing = [slot for slot, n in zip(all_slots, names, strict=True) if n not in by_name]
    room = 0 if spec.suspend else max(spec.max_concurrent - active, 0)
    create = missing[:room]
    after = missing[room:]
    done = len(ended) == len(names)
    phase = "Pending" if not created and not create else "Running"
    if done:
        phase = "Succeeded" if succeeded == len(names) else "Failed"
    having = set(created) | {run_name_for_slot(name, slot) for slot in create}
    latest = next((n for n in reversed(names) if n in having), None)
    status: dict[str, Any] = {
        "phase": phase, "slots": len(names), "created": len(created) + len(create),
        "active": active + len(create), "succeeded": succeeded, "failed": len(ended) - succeeded,
        "progress": f"{len(ended)}/{len(names)}", "nextSlot": isotime(after[0]) if after else None,
        "lastRun": latest,
    }
    return BackfillPlan(create, status)


def backfill_run(backfill: dict[str, Any], slot: datetime) -> dict[str, Any]:
    """The PipelineRun of one slot, owned by its Backfill; ``scheduledFor`` is its logical time."""
    meta, spec = backfill["metadata"], BackfillSpec.model_validate(backfill["spec"])
    pipeline = spec.pipeline_ref.name
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.PIPELINERUN_KIND,
        "metadata": {
            "name": run_name_for_slot(meta["name"], slot),
            "namespace": meta["namespace"],
            "labels": {c.LABEL_PIPELINE: label_value(pipeline), c.LABEL_TRIGGER: Trigger.BACKFILL.value,
                       c.LABEL_BACKFILL: label_value(meta["name"])},
            "ownerReferences": [{"apiVersion": c.API_VERSION, "kind": c.BACKFILL_KIND, "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {"pipelineRef": {"name": pipeline}, "trigger": Trigger.BACKFILL.value, "scheduledFor": isotime(slot)},
    }


def range_of(spec: BackfillSpec) -> tuple[datetime, datetime]:
    """The backfill's range as times."""
    return parse_time(spec.from_), parse_time(spec.to)


_SECOND = timedelta(seconds=1)
