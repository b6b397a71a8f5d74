"""Read side for the web UI: a dataset's neighbourhood with each node's latest writes, runs, search, columns.

Each answer is bounded like the rest of the API: the graph is one page of at most ``limit`` nodes and
edges per direction (``truncated`` says when there was more), each node with at most
:data:`MAX_NODE_CHECKS` failed checks of its latest version, listings at most :data:`MAX_PAGE` rows,
search at most :data:`MAX_SEARCH` hits of each kind; every statement runs under the store's timeout.
Column lineage is read from the stored OpenLineage COMPLETE events of the runs that last wrote a
dataset (its latest writes and the latest run of each producing edge; their ``columnLineage``
facets), so it is known only where a producer reports it through OpenLineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from headwater.lineage.queries import (
    DEFAULT_LIMIT,
    LineageEdge,
    VersionInfo,
    check_depth,
    check_limit,
    resolve,
    storable,
    subgraph,
)
from headwater.lineage.records import DatasetRef

__all__ = [
    "MAX_CHECK_TEXT", "MAX_NODE_CHECKS", "MAX_PAGE", "MAX_SEARCH", "ColumnLink", "Columns", "FailedCheck", "GraphNode",
    "Neighbourhood", "PipelineHit", "RunSummary", "SearchHits", "columns", "neighbourhood", "runs", "search",
    "step_flow",
]

Conn = psycopg.Connection[Any]
MAX_PAGE: Final = 500
"""At most this many runs in one page of the runs listing."""
MAX_SEARCH: Final = 50
"""At most this many hits of each kind (datasets, pipelines, runs) in one search."""
MAX_QUERY: Final = 200
"""The longest search text, in characters."""
MAX_COLUMN_EVENTS: Final = 20
"""At most this many producing runs' events are read for a dataset's column lineage."""
MAX_NODE_CHECKS: Final = 10
"""At most this many failed checks per graph node (an output declares at most 10)."""
MAX_CHECK_TEXT: Final = 500
"""A failed check's observed value, baseline and message are cut to this many characters in the graph."""


@dataclass(frozen=True)
class FailedCheck:
    """A check that failed on a node's latest version: severity ``error`` held the version back, ``warn`` warned."""

    name: str
    kind: str
    severity: str
    observed: str | None
    baseline: str | None
    message: str


@dataclass(frozen=True)
class GraphNode:
    """A dataset around the centre: ``depth`` < 0 upstream, > 0 downstream, 0 the centre itself.

    ``check_status`` says what the checks made of its latest version: ``failed`` (a blocking check
    failed, so it is not published), ``warning`` (only warnings failed) or None (nothing failed, or no
    version); ``failed_checks`` are those checks, blocking ones first."""

    dataset: DatasetRef
    depth: int
    latest: VersionInfo | None
    row_count_change_pct: float | None
    latest_run_phase: str | None
    published: bool | None = None
    check_status: str | None = None
    failed_checks: tuple[FailedCheck, ...] = ()


@dataclass(frozen=True)
class Neighbourhood:
    dataset: DatasetRef
    depth: int
    nodes: tuple[GraphNode, ...]
    edges: tuple[LineageEdge, ...]
    limit: int
    truncated: bool


_LATEST_TWO = """
SELECT n.id, v.run_id, v.pipeline, v.step, v.written_at, v.row_count, v.schema_fingerprint, r.phase, v.published, v.id
FROM unnest(%s::bigint[]) AS n (id)
CROSS JOIN LATERAL (
    SELECT * FROM dataset_versions v WHERE v.dataset_id = n.id ORDER BY v.written_at DESC, v.id DESC LIMIT 2
) v
LEFT JOIN pipeline_runs r ON r.id = v.run_id
ORDER BY n.id, v.written_at DESC, v.id DESC
"""


_FAILED_CHECKS = f"""
SELECT v.id, c.name, c.kind, c.severity, left(c.observed, {MAX_CHECK_TEXT}), left(c.baseline, {MAX_CHECK_TEXT}),
       left(c.message, {MAX_CHECK_TEXT})
FROM unnest(%s::bigint[]) AS v (id)
CROSS JOIN LATERAL (
    SELECT * FROM check_results c WHERE c.version_id = v.id AND c.outcome = 'Failed'
    ORDER BY c.severity, c.name LIMIT {MAX_NODE_CHECKS}
) c
ORDER BY v.id, c.severity, c.name
"""


def _status(published: bool | None, failed: list[FailedCheck]) -> str | None:
    if published is False or any(c.severity == "error" for c in failed):
        return "failed"
    return "warning" if failed else None


def _change(latest: VersionInfo | None, previous: VersionInfo | None) -> float | None:
    if latest is None or previous is None or latest.row_count is None or not previous.row_count:
        return None
    return round((latest.row_count - previous.row_count) * 100.0 / previous.row_count, 1)


def neighbourhood(conn: Conn, name: str, *, namespace: str | None = None, depth: int = 3,
                  limit: int = DEFAULT_LIMIT) -> Neighbourhood:
    """Upstream and downstream of a dataset within ``depth`` hops, each node with its latest write."""
    check_depth(depth)
    check_limit(limit)
    root, ref = resolve(conn, name, namespace)
    up, up_nodes = subgraph(conn, root, ref, "upstream", depth, limit)
    down, down_nodes = subgraph(conn, root, ref, "downstream", depth, limit)
    depths = {i: -n.depth for i, n in up_nodes.items()} | {i: n.depth for i, n in down_nodes.items() if n.depth}
    refs = {i: n.dataset for i, n in (up_nodes | down_nodes).items()}
    history: dict[int, list[tuple[VersionInfo, str | None, bool, int]]] = {i: [] for i in depths}
    for node, *version, phase, published, version_id in conn.execute(_LATEST_TWO, (list(depths),)).fetchall():
        history[int(node)].append((VersionInfo(*version), phase, bool(published), int(version_id)))
    latest_ids = [h[0][3] for h in history.values() if h]
    failed: dict[int, list[FailedCheck]] = {}
    for version_id, *check in conn.execute(_FAILED_CHECKS, (latest_ids,)).fetchall() if latest_ids else []:
        failed.setdefault(int(version_id), []).append(FailedCheck(*check))
    nodes = []
    for i, d in sorted(depths.items(), key=lambda item: (abs(item[1]), item[1], item[0])):
        versions = history[i]
        latest, previous = (versions[0][0] if versions else None), (versions[1][0] if len(versions) > 1 else None)
        published = versions[0][2] if versions else None
        checks = failed.get(versions[0][3], []) if versions else []
        nodes.append(GraphNode(refs[i], d, latest, _change(latest, previous), versions[0][1] if versions else None,
                               published, _status(published, checks), tuple(checks)))
    edges = tuple(dict.fromkeys((*up.edges, *down.edges)))
    return Neighbourhood(ref, depth, tuple(nodes), edges, limit, up.truncated or down.truncated)


@dataclass(frozen=True)
class RunSummary:
    id: str
    pipeline: str
    namespace: str
    name: str | None
    phase: str
    trigger: str
    source: str
    started_at: datetime | None
    finished_at: datetime | None


_RUN_COLUMNS: Final = "id, pipeline, namespace, name, phase, trigger, source, started_at, finished_at"


def runs(conn: Conn, *, pipeline: str | None = None, namespace: str | None = None, limit: int = 50,
         offset: int = 0) -> list[RunSummary]:
    """Runs, the latest started first; only those of ``pipeline`` and of the Kubernetes ``namespace``, when
    given (a pipeline's name alone matches same-named Pipelines in every namespace)."""
    if any(value is not None and not storable(value) for value in (pipeline, namespace)):
        return []
    where = " AND ".join(f"{column} = %({column})s" for column, value in
                         (("pipeline", pipeline), ("namespace", namespace)) if value is not None)
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM pipeline_runs {'WHERE ' + where if where else ''} "
        "ORDER BY coalesce(started_at, created_at) DESC, id LIMIT %(limit)s OFFSET %(offset)s",
        {"pipeline": pipeline, "namespace": namespace, "limit": limit, "offset": offset}).fetchall()
    return [RunSummary(*row) for row in rows]


@dataclass(frozen=True)
class PipelineHit:
    """A pipeline found by name, in its Kubernetes namespace ('' for one known only from OpenLineage)."""

    namespace: str
    name: str


@dataclass(frozen=True)
class SearchHits:
    query: str
    datasets: tuple[DatasetRef, ...]
    pipelines: tuple[str, ...]
    """The names of ``pipeline_refs``, each once."""
    runs: tuple[RunSummary, ...]
    pipeline_refs: tuple[PipelineHit, ...] = ()
    """Each pipeline found, in its namespace: two teams' same-named Pipelines are two hits."""


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(conn: Conn, text: str, *, limit: int = 20) -> SearchHits:
    """Datasets, pipelines and runs whose name contains ``text`` (any case); exact names first."""
    if not storable(text):
        return SearchHits(text, (), (), (), ())
    pattern = {"like": _like(text), "exact": text, "limit": limit}
    found = conn.execute(
        "SELECT namespace, name FROM datasets WHERE name ILIKE %(like)s "
        "ORDER BY name <> %(exact)s, length(name), name, namespace LIMIT %(limit)s", pattern).fetchall()
    pipelines = conn.execute(
        "SELECT DISTINCT pipeline, namespace, pipeline <> %(exact)s, length(pipeline) FROM jobs "
        "WHERE pipeline ILIKE %(like)s ORDER BY 3, 4, 1, 2 LIMIT %(limit)s", pattern).fetchall()
    matched = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM pipeline_runs WHERE id ILIKE %(like)s OR name ILIKE %(like)s "
        "ORDER BY coalesce(started_at, created_at) DESC, id LIMIT %(limit)s", pattern).fetchall()
    refs = tuple(PipelineHit(str(p[1]), str(p[0])) for p in pipelines)
    return SearchHits(text, tuple(DatasetRef(str(ns), str(n)) for ns, n in found),
                      tuple(dict.fromkeys(r.name for r in refs)), tuple(RunSummary(*row) for row in matched), refs)


@dataclass(frozen=True)
class ColumnLink:
    """Column ``field`` of the dataset is made from ``input_field`` of ``input``."""

    field: str
    input: DatasetRef
    input_field: str


@dataclass(frozen=True)
class Columns:
    dataset: DatasetRef
    links: tuple[ColumnLink, ...]
    run_ids: tuple[str, ...]


_PRODUCING_RUNS = """
(SELECT v.run_id FROM dataset_versions v WHERE v.dataset_id = %(id)s ORDER BY v.written_at DESC, v.id DESC
 LIMIT %(limit)s)
UNION
(SELECT e.last_run_id FROM lineage_edges e WHERE e.output_id = %(id)s LIMIT %(limit)s)
"""
_COMPLETE_EVENTS = """
SELECT event FROM openlineage_events
WHERE run_id = ANY(%s) AND event_type = 'COMPLETE' ORDER BY event_time DESC LIMIT %s
"""
MAX_LINKS: Final = 2000
"""At most this many column links for one dataset."""


def _dict(value: Any, key: str) -> dict[str, Any]:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


def _links(event: Any, ref: DatasetRef) -> list[ColumnLink]:
    out: list[ColumnLink] = []
    outputs = event.get("outputs") if isinstance(event, dict) else None
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict) or (output.get("namespace"), output.get("name")) != (ref.namespace, ref.name):
            continue
        for field, spec in _dict(_dict(_dict(output, "facets"), "columnLineage"), "fields").items():
            sources = spec.get("inputFields") if isinstance(spec, dict) else None
            for source in sources if isinstance(sources, list) else []:
                if isinstance(source, dict) and all(isinstance(source.get(k), str)
                                                    for k in ("namespace", "name", "field")):
                    out.append(ColumnLink(str(field), DatasetRef(source["namespace"], source["name"]),
                                          source["field"]))
    return out


def columns(conn: Conn, name: str, *, namespace: str | None = None) -> Columns:
    """Which input columns each column of a dataset comes from, where its producers report it."""
    dataset_id, ref = resolve(conn, name, namespace)
    found = conn.execute(_PRODUCING_RUNS, {"id": dataset_id, "limit": MAX_COLUMN_EVENTS}).fetchall()
    run_ids = [str(r[0]) for r in found]
    events = conn.execute(_COMPLETE_EVENTS, (run_ids, MAX_COLUMN_EVENTS)).fetchall() if run_ids else []
    links: dict[ColumnLink, None] = {}
    for (event,) in events:
        for link in _links(event, ref):
            links.setdefault(link)
    return Columns(ref, tuple(links)[:MAX_LINKS], tuple(run_ids))


MAX_FLOW: Final = 5000
"""At most this many step-to-step links in a pipeline's data flow."""
_FLOW = """
SELECT DISTINCT a.step, b.step FROM jobs a
JOIN lineage_edges ea ON ea.job_id = a.id
JOIN lineage_edges eb ON eb.input_id = ea.output_id
JOIN jobs b ON b.id = eb.job_id
WHERE a.pipeline = %(pipeline)s AND b.pipeline = %(pipeline)s AND a.step <> b.step AND a.namespace = b.namespace
  AND (%(namespace)s::text IS NULL OR a.namespace = %(namespace)s)
ORDER BY 1, 2 LIMIT %(limit)s
"""


def step_flow(conn: Conn, pipeline: str, namespace: str | None = None) -> list[tuple[str, str]]:
    """(writer, reader) pairs of steps of ``pipeline`` (in the Kubernetes ``namespace``, when given; a link
    never joins two namespaces' same-named pipelines): the reader has read a dataset the writer wrote.

    The store keeps no step dependencies, only what the steps read and wrote; this data flow is how a
    run's steps are drawn (a step that never wrote anything appears without links)."""
    if not storable(pipeline) or (namespace is not None and not storable(namespace)):
        return []
    rows = conn.execute(_FLOW, {"pipeline": pipeline, "namespace": namespace, "limit": MAX_FLOW}).fetchall()
    return [(str(a), str(b)) for a, b in rows]
