"""The status of a Pipeline: is it runnable (Ready), how many steps, when it runs next."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import croniter
from pydantic import ValidationError

from headwater.lineage import sqllineage
from headwater.pipelines import scheduling
from headwater.spec import dag
from headwater.spec.conditions import set_condition
from headwater.spec.models import Condition, PipelineSpec, PipelineStatus, StepType
from headwater.spec.times import isotime

__all__ = ["CONDITION_SQL_LINEAGE", "pipeline_status"]

CONDITION_SQL_LINEAGE = "SqlLineageConsistent"


def _problems(raw_spec: dict[str, Any]) -> tuple[PipelineSpec | None, str, str]:
    """The parsed spec, or the reason and message that make the pipeline not Ready."""
    try:
        spec = PipelineSpec.model_validate(raw_spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, "InvalidSpec", f"spec.{where}: {first['msg']}"
    problems = dag.validate(spec.steps)
    if problems:
        reason = "InvalidDAG" if any(p.reason == "InvalidDAG" for p in problems) else "InvalidSpec"
        return spec, reason, "; ".join(f"spec.{p}" for p in problems)
    if spec.schedule and not croniter.is_valid(spec.schedule):
        return spec, "InvalidSchedule", f"spec.schedule: {spec.schedule!r} is not a valid cron expression"
    return spec, "", ""


_OWNED = {"conditions", "observed_generation", "steps", "next_schedule_time"}
"""The fields written here: a merge patch of the others (datasets, alerts, lastRun...) would put back
the copy this event carried over what their own writers wrote since."""


def pipeline_status(
    raw_spec: dict[str, Any], old: dict[str, Any] | None, generation: int | None, now: datetime
) -> dict[str, Any] | None:
    """The status fields the Pipeline should have; None when they are already so."""
    status = PipelineStatus.model_validate(old or {})
    before = status.model_dump(by_alias=True, exclude_none=True, mode="json", include=_OWNED)
    spec, reason, message = _problems(raw_spec)
    conditions: list[Condition] = list(status.conditions)
    if reason:
        set_condition(conditions, "Ready", "False", reason, message, now, generation)
    else:
        set_condition(conditions, "Ready", "True", "Valid", "the pipeline can run", now, generation)
    drift = sqllineage.mismatches(spec) if spec and not reason else []
    if drift:
        set_condition(conditions, CONDITION_SQL_LINEAGE, "False", "UndeclaredDatasets",
                      "the SQL of these steps disagrees with their declared datasets: " + " | ".join(drift),
                      now, generation)
    elif spec and any(s.type == StepType.SQL for s in spec.steps) and not reason:
        set_condition(conditions, CONDITION_SQL_LINEAGE, "True", "Consistent",
                      "the declared datasets match what the SQL of every sql step reads and writes", now, generation)
    status.conditions = conditions
    status.observed_generation = generation
    status.steps = len(spec.steps) if spec else None
    if spec and spec.schedule and not reason and not spec.suspend:
        status.next_schedule_time = isotime(scheduling.next_slot(spec.schedule, spec.time_zone, now))
    else:
        status.next_schedule_time = None
    after = status.model_dump(by_alias=True, exclude_none=True, mode="json", include=_OWNED)
    if after == before:
        return None
    if "nextScheduleTime" not in after:
        after["nextScheduleTime"] = None  # remove it with the merge patch
    return after
