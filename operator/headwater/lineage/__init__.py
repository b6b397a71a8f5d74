"""Data lineage: records, the PostgreSQL store and its migrations, queries, explain and OpenLineage.

``records`` and ``openlineage`` are pure; ``store`` owns the connection pool; ``queries`` and
``explain`` run on a connection the store lends them.
"""

from headwater.lineage.explain import ExplainNode, Explanation, Reason
from headwater.lineage.migrations import migrate
from headwater.lineage.openlineage import InvalidEventError, build_run_event, parse_run_event, step_run_uuid
from headwater.lineage.queries import (
    DEFAULT_DEPTH,
    MAX_DEPTH,
    AmbiguousDatasetError,
    DatasetDetail,
    DatasetNotFoundError,
    DatasetSummary,
    LineageEdge,
    LineageGraph,
    LineageNode,
    RunDetail,
    RunNotFoundError,
)
from headwater.lineage.records import (
    DatasetRef,
    DatasetVersionRecord,
    EdgeRecord,
    Record,
    RunRecord,
    StepRecord,
    record_from_json,
    record_to_json,
)
from headwater.lineage.store import IngestResult, LineageStore

__all__ = [
    "DEFAULT_DEPTH", "MAX_DEPTH", "AmbiguousDatasetError", "DatasetDetail", "DatasetNotFoundError",
    "DatasetRef", "DatasetSummary", "DatasetVersionRecord", "EdgeRecord", "ExplainNode", "Explanation",
    "IngestResult", "InvalidEventError", "LineageEdge", "LineageGraph", "LineageNode", "LineageStore",
    "Reason", "Record", "RunDetail", "RunNotFoundError", "RunRecord", "StepRecord", "build_run_event",
    "migrate", "parse_run_event", "record_from_json", "record_to_json", "step_run_uuid",
]
