"""Which finished PipelineRuns fall outside a pipeline's history limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from headwater.spec.models import RunPhase, Trigger

__all__ = ["runs_to_delete"]

_SUCCESS = frozenset({RunPhase.SUCCEEDED})
_FAILURE = frozenset({RunPhase.FAILED, RunPhase.CANCELLED})


def runs_to_delete(runs: list[dict[str, Any]], keep_successful: int, keep_failed: int,
                   protected: Callable[[dict[str, Any]], bool] = lambda _: False) -> list[str]:
    """Names of the oldest finished runs beyond the limits.

    Unfinished runs are never chosen, nor a Backfill's runs: they belong to it (its progress counts them)
    and go with it.  Runs for which ``protected`` is true (e.g. not yet in the lineage store) count toward
    the limits but are not chosen: a later trim deletes them, once they are no longer protected.
    """
    def newest_first(phases: frozenset[RunPhase]) -> list[dict[str, Any]]:
        chosen = [r for r in runs if (r.get("status") or {}).get("phase") in phases
                  and (r.get("spec") or {}).get("trigger") != Trigger.BACKFILL.value]
        return sorted(chosen, key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]),
                      reverse=True)

    beyond = newest_first(_SUCCESS)[keep_successful:] + newest_first(_FAILURE)[keep_failed:]
    return sorted(r["metadata"]["name"] for r in beyond if not protected(r))
