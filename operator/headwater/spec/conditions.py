"""Status conditions that change only when something changed, as Kubernetes conventions ask."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from headwater.spec import constants as c
from headwater.spec.models import Condition
from headwater.spec.times import isotime

__all__ = ["condition_is", "is_ready", "set_condition", "with_condition"]


def set_condition(
    conditions: list[Condition], type_: str, status: str, reason: str, message: str, now: datetime,
    observed_generation: int | None = None,
) -> bool:
    """Set a condition in place; ``lastTransitionTime`` moves only when the status flips. True if changed."""
    for i, cond in enumerate(conditions):
        if cond.type != type_:
            continue
        if (cond.status, cond.reason, cond.message) == (status, reason, message) and \
                observed_generation in (None, cond.observed_generation):
            return False  # a condition confirmed for a newer generation must say so, or it reads as stale
        moved = cond.status != status
        conditions[i] = cond.model_copy(update={
            "status": status, "reason": reason, "message": message,
            "last_transition_time": isotime(now) if moved else cond.last_transition_time,
            "observed_generation": observed_generation if observed_generation is not None
            else cond.observed_generation,
        })
        return True
    conditions.append(Condition(type=type_, status=status, reason=reason, message=message,
                                last_transition_time=isotime(now), observed_generation=observed_generation))
    return True


def with_condition(raw_status: dict[str, Any], type_: str, status: str, reason: str, message: str,
                   now: datetime) -> dict[str, Any] | None:
    """A raw status (as read from the apiserver) with the condition set; None when it is already so.

    Only the conditions are parsed, so a status that no longer fits the model can still be marked.
    """
    conditions = [Condition.model_validate(c) for c in raw_status.get("conditions") or []]
    if not set_condition(conditions, type_, status, reason, message, now):
        return None
    dumped = [c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in conditions]
    return {**raw_status, "conditions": dumped}


def condition_is(obj: dict[str, Any], type_: str, status: str) -> bool:
    """Whether a raw object's status has the condition ``type_`` with this status."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == type_ and c.get("status") == status for c in conditions)


def is_ready(pipeline: dict[str, Any]) -> bool:
    """Ready=True, set for the Pipeline's current generation (an edit not yet checked is not Ready)."""
    generation = pipeline["metadata"].get("generation")
    for cond in (pipeline.get("status") or {}).get("conditions") or []:
        if cond.get("type") == c.CONDITION_READY:
            seen = cond.get("observedGeneration")
            return bool(cond.get("status") == "True" and (seen is None or generation is None or seen == generation))
    return False
