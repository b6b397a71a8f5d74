"""Data lineage: records, the PostgreSQL store and its migrations, queries, explain and OpenLineage.

``records``, ``openlineage``, ``sqllineage`` and ``emitting`` are pure; ``store`` owns the connection
pool; ``queries`` and ``explain`` run on a connection the store lends them; ``run_records`` and
``recorder`` turn finished runs into records and write them; ``api`` is the HTTP API.  The names
below are importable from ``headwater.lineage`` itself, loaded on first use, so importing a pure
module never loads the database driver.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AmbiguousDatasetError": "queries",
    "DEFAULT_DEPTH": "queries",
    "DatasetDetail": "queries",
    "DatasetNotFoundError": "queries",
    "DatasetRef": "records",
    "DatasetSummary": "queries",
    "DatasetVersionRecord": "records",
    "EdgeRecord": "records",
    "ExplainNode": "explain",
    "Explanation": "explain",
    "IngestResult": "store",
    "InvalidEventError": "openlineage",
    "LineageEdge": "queries",
    "LineageGraph": "queries",
    "LineageNode": "queries",
    "LineageStore": "store",
    "MAX_DEPTH": "queries",
    "Reason": "explain",
    "Record": "records",
    "RunDetail": "queries",
    "RunNotFoundError": "queries",
    "RunRecord": "records",
    "StepRecord": "records",
    "build_run_event": "openlineage",
    "migrate": "migrations",
    "parse_run_event": "openlineage",
    "step_run_uuid": "openlineage",
}

__all__ = [
    "DEFAULT_DEPTH", "MAX_DEPTH", "AmbiguousDatasetError", "DatasetDetail", "DatasetNotFoundError",
    "DatasetRef", "DatasetSummary", "DatasetVersionRecord", "EdgeRecord", "ExplainNode", "Explanation",
    "IngestResult", "InvalidEventError", "LineageEdge", "LineageGraph", "LineageNode", "LineageStore",
    "Reason", "Record", "RunDetail", "RunNotFoundError", "RunRecord", "StepRecord", "build_run_event",
    "migrate", "parse_run_event", "step_run_uuid",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headwater.lineage' has no attribute {name!r}")
    return getattr(importlib.import_module(f"headwater.lineage.{module}"), name)
