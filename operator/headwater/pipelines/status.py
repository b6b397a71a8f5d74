"""The status of a Pipeline that follows from its spec: is it runnable (Ready), how many steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import CroniterBadCronError, CroniterBadDateError
from pydantic import ValidationError

from headwater.lineage import sqllineage
from headwater.pipelines import scheduling
from headwater.spec import constants as c
from headwater.spec import dag
from headwater.spec.conditions import set_condition
from headwater.spec.dag import Problem
from headwater.spec.models import Condition, PipelineSpec, PipelineStatus, StepType
from headwater.spec.validation import pipeline_spec_problems

__all__ = ["CONDITION_SQL_LINEAGE", "pipeline_status"]

CONDITION_SQL_LINEAGE = "SqlLineageConsistent"


_FIELD_REASONS = {"schedule": "InvalidSchedule", "timeZone": "InvalidTimeZone"}


def _problems(raw_spec: dict[str, Any], now: datetime) -> tuple[PipelineSpec | None, str, str]:
    """The parsed spec, or the reason and message that make the pipeline not Ready.

    The reason names the problem (InvalidSchedule, InvalidTimeZone, InvalidDAG, InvalidSpec): these are
    what admission lets through but the operator cannot run, such as a time zone this system does not know
    or a cron expression that never fires.
    """
    try:
        spec = PipelineSpec.model_validate(raw_spec)
    except ValidationError:
        problems = pipeline_spec_problems(raw_spec) or [Problem("spec", "invalid")]
        field = problems[0].path.removeprefix("spec.").split(".")[0].split("[")[0]
        return None, _FIELD_REASONS.get(field, "InvalidSpec"), "; ".join(map(str, problems))[:4096]
    problems = dag.validate(spec.steps)
    if problems:
        reason = "InvalidDAG" if any(p.reason == "InvalidDAG" for p in problems) else "InvalidSpec"
        return spec, reason, "; ".join(f"spec.{p}" for p in problems)
    if spec.schedule:
        try:
            scheduling.next_slot(spec.schedule, spec.time_zone, now)
        except (CroniterBadDateError, CroniterBadCronError, ValueError) as exc:
            return spec, "InvalidSchedule", f"spec.schedule: {spec.schedule!r} never fires ({exc})"
    return spec, "", ""


def pipeline_status(
    raw_spec: dict[str, Any], old: dict[str, Any] | None, generation: int | None, now: datetime
) -> dict[str, Any] | None:
    """The fields of the Pipeline's status that follow from its spec; None when they are already so.

    These fields (observedGeneration, steps, the Ready and SqlLineageConsistent conditions) are this
    function's alone; the returned patch carries the whole conditions list, so it must be applied onto
    the version ``old`` was read from (resourceVersion-guarded).
    """
    status = PipelineStatus.model_validate(old or {})
    before = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    spec, reason, message = _problems(raw_spec, now)
    conditions: list[Condition] = list(status.conditions)
    if reason:
        set_condition(conditions, c.CONDITION_READY, "False", reason, message, now, generation)
    else:
        set_condition(conditions, c.CONDITION_READY, "True", "Valid", "the pipeline can run", now, generation)
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
    after = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    if after == before:
        return None
    return {key: after.get(key) for key in ("observedGeneration", "steps", "conditions")}
