"""Which finished PipelineRuns fall outside a pipeline's history limits."""

from __future__ import annotations

from typing import Any

__all__ = ["runs_to_delete"]

_SUCCESS = {"Succeeded"}
_FAILURE = {"Failed", "Cancelled"}


def runs_to_delete(runs: list[dict[str, Any]], keep_successful: int, keep_failed: int) -> list[str]:
    """Names of the oldest finished runs beyond the limits; unfinished runs are never chosen."""
    def newest_first(phases: set[str]) -> list[dict[str, Any]]:
        chosen = [r for r in runs if (r.get("status") or {}).get("phase") in phases]
        return sorted(chosen, key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]),
                      reverse=True)

    doomed = newest_first(_SUCCESS)[keep_successful:] + newest_first(_FAILURE)[keep_failed:]
    return sorted(r["metadata"]["name"] for r in doomed)
