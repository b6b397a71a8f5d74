"""After-finish effects as a level: the ``Settled`` condition says whether a run's outcome is on its Pipeline.

When a run reaches a final phase, the planner writes ``Settled=False`` with that very status write; the
engine then applies the effects (``lastRun``, the datasets' ``lastUpdated``, risks and incidents) and sets
``Settled=True``.  A crash or an error in between leaves ``Settled=False``, and the
resync applies them again: every effect is idempotent, and an older run settled late never overwrites
what a newer one set.  Runs finished before this condition existed have none and are left alone.

A finished run that owes nothing more (settled, and its finalizer gone: recorded, or let go without a
store) then joins its Pipeline's history: the history is trimmed to its limits with the run counted, and
the run is labelled ``headwater.dev/settled=true``.  A trim lists only the runs labelled so, however many
runs are in flight.  The operator's watch of PipelineRuns selects runs without the label, so the apiserver
stops sending them (the label's own write arrives as a deletion) and the operator keeps no memory of them;
the recorder lists runs directly, so it still sees them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from headwater.lineage.run_records import has_finalizer
from headwater.spec import constants as c
from headwater.spec.conditions import condition_is, set_condition
from headwater.spec.models import PipelineRunStatus, RunPhase
from headwater.spec.times import parse_time

__all__ = ["CONDITION_SETTLED", "UNSETTLED_SELECTOR", "finished_later", "mark_unsettled", "needs_settled_label",
           "needs_settling"]

CONDITION_SETTLED: Final = "Settled"
REASON_PENDING: Final = "Pending"
REASON_SETTLED: Final = "Settled"
REASON_FAILED: Final = "EffectsFailed"
MESSAGE_PENDING: Final = "the outcome is not on the Pipeline yet (lastRun, datasets, incidents)"
MESSAGE_SETTLED: Final = "the outcome is on the Pipeline: lastRun, datasets and incidents"
UNSETTLED_SELECTOR: Final = f"!{c.LABEL_SETTLED}"
"""The label selector of the runs the operator watches and resyncs: every run but those that owe nothing."""


def mark_unsettled(status: PipelineRunStatus, now: datetime) -> None:
    """Set ``Settled=False`` on a status that just became final (in place)."""
    set_condition(status.conditions, CONDITION_SETTLED, "False", REASON_PENDING, MESSAGE_PENDING, now)


def needs_settling(run: dict[str, Any]) -> bool:
    """A finished run whose effects are still to be applied."""
    return condition_is(run, CONDITION_SETTLED, "False")


def needs_settled_label(run: dict[str, Any]) -> bool:
    """A finished run that owes nothing more (settled, finalizer gone) and is not labelled so yet."""
    meta = run["metadata"]
    return (RunPhase.ended((run.get("status") or {}).get("phase")) and not needs_settling(run)
            and not has_finalizer(run) and not meta.get("deletionTimestamp")
            and c.LABEL_SETTLED not in (meta.get("labels") or {}))


def finished_later(mine: str | None, theirs: str | None) -> bool:
    """Whether a run that finished at ``mine`` is at least as recent as one that finished at ``theirs``."""
    if theirs is None:
        return True
    if mine is None:
        return False
    return parse_time(mine) >= parse_time(theirs)
