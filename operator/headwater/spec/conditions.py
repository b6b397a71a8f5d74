"""Status conditions that change only when something changed, as Kubernetes conventions ask."""

from __future__ import annotations

from datetime import datetime

from headwater.spec.models import Condition
from headwater.spec.times import isotime

__all__ = ["set_condition"]


def set_condition(
    conditions: list[Condition], type_: str, status: str, reason: str, message: str, now: datetime,
    observed_generation: int | None = None,
) -> bool:
    """Set a condition in place; ``lastTransitionTime`` moves only when the status flips. True if changed."""
    for i, cond in enumerate(conditions):
        if cond.type != type_:
            continue
        if (cond.status, cond.reason, cond.message) == (status, reason, message):
            return False
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
