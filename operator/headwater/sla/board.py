"""The freshness board: every output dataset with an SLA, its state, and the open incidents' at-risk cascades.

Built from Pipeline objects as the API reads them (spec and status, plain dicts), so it says exactly what
the operator's last evaluation wrote to ``status.datasets`` and ``status.alerts``; nothing is evaluated
here.  A dataset's state is ``stale`` when past its SLA, else ``at_risk`` when an upstream incident marks
it, else ``fresh`` once written, else ``unknown``.  Bounded by the CRDs' own limits per Pipeline and by
:data:`MAX_ROWS` rows in all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

__all__ = ["MAX_ROWS", "freshness_board"]

MAX_ROWS: Final = 5000
"""At most this many datasets on the board (``truncated`` says when there were more)."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _state(status: dict[str, Any]) -> str:
    if status.get("stale"):
        return "stale"
    if status.get("atRisk"):
        return "at_risk"
    return "fresh" if status.get("lastUpdated") else "unknown"


def _rows(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    meta, spec, status = _dict(pipeline.get("metadata")), _dict(pipeline.get("spec")), _dict(pipeline.get("status"))
    observed = {(d.get("namespace"), d.get("name")): d for d in map(_dict, _list(status.get("datasets")))}
    rows = []
    for step in map(_dict, _list(spec.get("steps"))):
        for output in map(_dict, _list(step.get("outputs"))):
            sla = _dict(output.get("freshness"))
            if not sla:
                continue
            seen = observed.get((output.get("namespace"), output.get("name")), {})
            rows.append({
                "namespace": output.get("namespace"), "name": output.get("name"),
                "pipeline": meta.get("name"), "pipelineNamespace": meta.get("namespace"), "step": step.get("id"),
                "sla": {k: sla[k] for k in ("maxAge", "deadline", "timeZone") if k in sla},
                "state": _state(seen), "lastUpdated": seen.get("lastUpdated"), "lastRun": seen.get("lastRun"),
                "atRisk": seen.get("atRisk"), "atRiskSource": seen.get("atRiskSource"),
            })
    return rows


def _incidents(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    """Incidents whose cascade is still open: some dataset is still marked at risk by this pipeline."""
    meta = _dict(pipeline.get("metadata"))
    return [{"id": a.get("id"), "pipeline": meta.get("name"), "pipelineNamespace": meta.get("namespace"),
             "raisedAt": a.get("raisedAt"), "cause": a.get("cause"), "source": a.get("source"),
             "affectedDatasets": _list(a.get("affectedDatasets")), "affectedCount": a.get("affectedCount", 0)}
            for a in map(_dict, _list(_dict(pipeline.get("status")).get("alerts")))]


def freshness_board(pipelines: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The board's JSON: datasets (stale first, then at risk), and incidents whose source still puts any at risk."""
    rows: list[dict[str, Any]] = []
    incidents: list[dict[str, Any]] = []
    for pipeline in pipelines:
        rows += _rows(_dict(pipeline))
        incidents += _incidents(_dict(pipeline))
    order = {"stale": 0, "at_risk": 1, "unknown": 2, "fresh": 3}
    rows.sort(key=lambda r: (order[r["state"]], str(r["namespace"]), str(r["name"])))
    sources = {str(r["atRiskSource"]) for r in rows if r["atRiskSource"]}
    open_incidents = [i for i in incidents
                      if i["source"] in sources or f"{i['pipelineNamespace']}/{i['pipeline']}" in sources
                      or i["pipeline"] in sources]
    open_incidents.sort(key=lambda i: str(i["raisedAt"]), reverse=True)
    return {"available": True, "datasets": rows[:MAX_ROWS], "truncated": len(rows) > MAX_ROWS,
            "incidents": open_incidents}
