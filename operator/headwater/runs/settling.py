"""After-finish effects as a level: the ``Settled`` condition says whether a run's outcome is on its Pipeline.

When a run reaches a final phase, the planner writes ``Settled=False`` with that very status write; the
engine then applies the effects (``lastRun``, the datasets' ``lastUpdated``, risks and incidents, history
trimming) and sets ``Settled=True``.  A crash or an error in between leaves ``Settled=False``, and the
resync applies them again: every effect is idempotent, and an older run settled late never overwrites
what a newer one set.  Runs finished before this condition existed have none and are left alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from headwater.spec.conditions import condition_is, set_condition
from headwater.spec.models import PipelineRunStatus
from headwater.spec.times import parse_time

__all__ = ["CONDITION_SETTLED", "finished_later", "mark_unsettled", "needs_settling"]

CONDITION_SETTLED: Final = "Settled"
REASON_PENDING: Final = "Pending"
REASON_SETTLED: Final = "Settled"
REASON_FAILED: Final = "EffectsFailed"
MESSAGE_PENDING: Final = "the outcome is not on the Pipeline yet (lastRun, datasets, incidents, history)"
MESSAGE_SETTLED: Final = "the outcome is on the Pipeline: lastRun, datasets, incidents and history"


def mark_unsettled(status: PipelineRunStatus, now: datetime) -> None:
    """Set ``Settled=False`` on a status that just became final (in place)."""
    set_condition(status.conditions, CONDITION_SETTLED, "False", REASON_PENDING, MESSAGE_PENDING, now)


def needs_settling(run: dict[str, Any]) -> bool:
    """A finished run whose effects are still to be applied."""
    return condition_is(run, CONDITION_SETTLED, "False")


def finished_later(mine: str | None, theirs: str | None) -> bool:
    """Whether a run that finished at ``mine`` is at least as recent as one that finished at ``theirs``."""
    if theirs is None:
        return True
    if mine is None:
        return False
    return parse_time(mine) >= parse_time(theirs)
