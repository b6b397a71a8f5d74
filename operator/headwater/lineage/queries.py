"""Read side of the lineage store: upstream/downstream traversal, datasets and runs.

Traversal walks the deduplicated ``lineage_edges`` table with a recursive CTE whose ``UNION``
(not ``UNION ALL``) drops repeated (dataset, depth) pairs: the work is bounded by
datasets x depth however many runs recorded an edge, and a cycle ends at the depth limit.
Each dataset is reported once, at its smallest depth.  Every answer is bounded: a graph carries at
most ``limit`` nodes and ``limit`` edges per page (``truncated`` and a ``next_cursor`` to go on),
dataset details and runs at most :data:`MAX_JOBS` jobs and :data:`MAX_STEPS` steps.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Final, Literal

import psycopg

from headwater.lineage.records import DatasetRef, dataset_key
from headwater.runs.checks import Baseline

__all__ = [
    "DEFAULT_DEPTH", "DEFAULT_LIMIT", "MAX_DEPTH", "MAX_JOBS", "MAX_LIMIT", "MAX_STEPS", "AmbiguousDatasetError",
    "BadCursorError", "Cursor", "DatasetDetail", "DatasetNotFoundError",
    "DatasetSummary", "Direction", "JobRef", "LineageEdge", "LineageGraph", "LineageNode", "RunDetail",
    "RunNotFoundError", "StepDetail", "VersionInfo", "baselines", "check_depth", "check_limit", "dataset_detail",
    "datasets",
    "resolve", "run_detail", "storable", "subgraph", "traverse", "walk",
]

Conn = psycopg.Connection[Any]
Direction = Literal["upstream", "downstream"]
DEFAULT_DEPTH: Final = 20
MAX_DEPTH: Final = 100
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
MAX_JOBS: Final = 1000
"""At most this many producing and as many consuming jobs in a dataset's detail."""
MAX_STEPS: Final = 1000
"""At most this many steps in a run's detail."""


class DatasetNotFoundError(LookupError):
    def __init__(self, name: str, namespace: str | None) -> None:
        where = f" in namespace {namespace!r}" if namespace is not None else ""
        super().__init__(f"no dataset named {name!r}{where}")


class AmbiguousDatasetError(LookupError):
    """A name without a namespace matches datasets in several namespaces."""

    def __init__(self, name: str, candidates: list[DatasetRef]) -> None:
        self.candidates = candidates
        spaces = ", ".join(c.namespace for c in candidates)
        super().__init__(f"dataset name {name!r} exists in several namespaces ({spaces}): give the namespace")


class RunNotFoundError(LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")


class BadCursorError(ValueError):
    """A cursor that this server did not hand out (or that was changed)."""


@dataclass(frozen=True)
class Cursor:
    """Where the next page of a graph starts: after node (depth, id) and after edge (input, job, output).

    ``None`` means from the start; a list already finished is marked done.  Positions are row ids, so
    pages stay consistent while the graph grows (new rows land on later pages or not at all)."""

    node_after: tuple[int, int] | None = None
    nodes_done: bool = False
    edge_after: tuple[int, int, int] | None = None
    edges_done: bool = False

    def encode(self) -> str:
        state = {"n": "done" if self.nodes_done else self.node_after,
                 "e": "done" if self.edges_done else self.edge_after}
        return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            state = json.loads(raw)
            nodes, edges = state["n"], state["e"]
            return cls(_position(nodes, 2), nodes == "done",  # type: ignore[arg-type]
                       _position(edges, 3), edges == "done")  # type: ignore[arg-type]
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise BadCursorError("cursor: not a cursor this API handed out (pass nextCursor unchanged)") from None


def _position(value: object, size: int) -> tuple[int, ...] | None:
    if value is None or value == "done":
        return None
    if (isinstance(value, list) and len(value) == size
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in value)):
        return tuple(value)
    raise ValueError("bad position")


@dataclass(frozen=True)
class JobRef:
    pipeline: str
    step: str


@dataclass(frozen=True)
class LineageNode:
    dataset: DatasetRef
    depth: int


@dataclass(frozen=True)
class LineageEdge:
    """``input`` was read and ``output`` written by ``step`` of ``pipeline``."""

    input: DatasetRef
    output: DatasetRef
    pipeline: str
    step: str
    first_seen: datetime
    last_seen: datetime
    last_run_id: str


@dataclass(frozen=True)
class LineageGraph:
    """One page of the graph around ``dataset``; ``truncated`` with a ``next_cursor`` when more follows."""

    dataset: DatasetRef
    direction: Direction
    depth: int
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]
    limit: int = DEFAULT_LIMIT
    truncated: bool = False
    next_cursor: str | None = None


@dataclass(frozen=True)
class VersionInfo:
    """One successful write of a dataset."""

    run_id: str
    pipeline: str
    step: str
    written_at: datetime
    row_count: int | None
    schema_fingerprint: str | None
    logical_time: datetime | None = None
    """The logical time (schedule slot) of the run that wrote it: the partition this version holds."""


@dataclass(frozen=True)
class DatasetSummary:
    dataset: DatasetRef
    created_at: datetime
    latest: VersionInfo | None


@dataclass(frozen=True)
class DatasetDetail:
    dataset: DatasetRef
    created_at: datetime
    producers: tuple[JobRef, ...]
    consumers: tuple[JobRef, ...]
    versions: tuple[VersionInfo, ...]
    truncated: bool = False


@dataclass(frozen=True)
class StepDetail:
    step: str
    phase: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    rows_affected: int | None
    error: str | None


@dataclass(frozen=True)
class RunDetail:
    id: str
    pipeline: str
    namespace: str
    phase: str
    trigger: str
    source: str
    started_at: datetime | None
    finished_at: datetime | None
    steps: tuple[StepDetail, ...]
    truncated: bool = False
    name: str | None = None
    uid: str | None = None


def check_depth(depth: int) -> int:
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH} (got {depth})")
    return depth


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT} (got {limit})")
    return limit


def storable(text: str) -> bool:
    """Whether PostgreSQL text can hold ``text`` (no NUL, no unpaired surrogate): if not, nothing is named so."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\0" not in text


def resolve(conn: Conn, name: str, namespace: str | None = None) -> tuple[int, DatasetRef]:
    """The id of a dataset named ``name`` (in ``namespace``; without one, the name must be unique)."""
    if not storable(name) or (namespace is not None and not storable(namespace)):
        raise DatasetNotFoundError(name, namespace)
    if namespace is not None:
        row = conn.execute("SELECT id FROM datasets WHERE ident = %s",
                           (dataset_key(namespace, name),)).fetchone() if namespace and name else None
        if row is None:
            raise DatasetNotFoundError(name, namespace)
        return int(row[0]), DatasetRef(namespace, name)
    rows = conn.execute(
        "SELECT id, namespace FROM datasets WHERE name = %s ORDER BY namespace LIMIT 50", (name,)
    ).fetchall()
    if not rows:
        raise DatasetNotFoundError(name, None)
    if len(rows) > 1:
        raise AmbiguousDatasetError(name, [DatasetRef(str(ns), name) for _, ns in rows])
    return int(rows[0][0]), DatasetRef(str(rows[0][1]), name)


_WALK = """
WITH RECURSIVE walk (id, depth) AS (
    SELECT %(root)s::bigint, 0
  UNION
    SELECT e.{far}, w.depth + 1 FROM walk w JOIN lineage_edges e ON e.{near} = w.id
    WHERE w.depth < %(depth)s
)"""
_WALK_UP = _WALK.format(near="output_id", far="input_id") + "\nSELECT w.id, min(w.depth) FROM walk w GROUP BY w.id"
_WALK_DOWN = _WALK.format(near="input_id", far="output_id") + "\nSELECT w.id, min(w.depth) FROM walk w GROUP BY w.id"
# One page of a graph in one statement, so in one snapshot: the walk, the page of nodes (by depth, id), the page of
# edges (by input, job, output id) that leave a node nearer than ``depth``, and the names of the datasets either
# page names.  In one snapshot every edge's far end is a node (the walk followed that edge), so edges are found by
# a join on the near end only.  MATERIALIZED keeps the planner (a prepared statement's generic plan too) from
# walking the whole primary key in order to find the few edges of one graph: they are found first, then sorted
# and cut.  Names are looked up by key (ANY of an array), not by a hash join over every dataset, whatever the
# planner guesses of the walk's size.  Rows, by kind: 0 a node (depth, id), 1 an edge (input, job, output,
# pipeline, step, first seen, last seen, last run), 2 a dataset's name (id, namespace, name).  The rows come in
# no promised order: the caller sorts nodes and edges (each page comes sorted from its own ORDER BY, so that
# costs one pass).
_GRAPH = _WALK + """,
reached AS MATERIALIZED (SELECT id, min(depth) AS depth FROM walk GROUP BY id),
page AS MATERIALIZED (
    SELECT r.depth, r.id FROM reached r
    WHERE %(nodes)s AND r.id <> %(root)s AND (r.depth, r.id) > (%(node_depth)s, %(node_id)s)
    ORDER BY r.depth, r.id LIMIT %(limit)s
),
followed AS MATERIALIZED (
    SELECT e.input_id, e.job_id, e.output_id, e.first_seen, e.last_seen, e.last_run_id
    FROM reached r JOIN lineage_edges e ON e.{near} = r.id
    WHERE %(edges)s AND r.depth < %(depth)s AND (e.input_id, e.job_id, e.output_id) > (%(i)s, %(j)s, %(o)s)
),
edges AS MATERIALIZED (
    SELECT * FROM followed f ORDER BY f.input_id, f.job_id, f.output_id LIMIT %(limit)s
)
SELECT 0, p.depth::bigint, p.id, NULL::bigint, NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz,
       NULL::text
FROM page p
UNION ALL
SELECT 1, e.input_id, e.job_id, e.output_id, j.pipeline, j.step, e.first_seen, e.last_seen, e.last_run_id
FROM edges e JOIN jobs j ON j.id = e.job_id
UNION ALL
SELECT 2, d.id, NULL, NULL, d.namespace, d.name, NULL, NULL, NULL FROM datasets d
WHERE d.id = ANY (ARRAY(SELECT %(root)s::bigint UNION ALL SELECT id FROM page UNION ALL SELECT input_id FROM edges
                        UNION ALL SELECT output_id FROM edges))
"""
_GRAPH_UP = _GRAPH.format(near="output_id", far="input_id")
_GRAPH_DOWN = _GRAPH.format(near="input_id", far="output_id")
_EDGE_ORDER: Final = itemgetter(1, 2, 3)


def walk(conn: Conn, root: int, direction: Direction, depth: int) -> dict[int, int]:
    """Dataset id → smallest depth, for every dataset within ``depth`` of ``root`` (root at 0)."""
    query = _WALK_UP if direction == "upstream" else _WALK_DOWN
    rows = conn.execute(query, {"root": root, "depth": check_depth(depth)}).fetchall()
    return {int(i): int(d) for i, d in rows}


def traverse(
    conn: Conn, name: str, direction: Direction, *, namespace: str | None = None, depth: int = DEFAULT_DEPTH,
    limit: int = DEFAULT_LIMIT, cursor: Cursor | None = None,
) -> LineageGraph:
    """What feeds a dataset (upstream) or what it feeds (downstream), within ``depth`` hops: one page."""
    check_depth(depth)
    check_limit(limit)
    root, ref = resolve(conn, name, namespace)
    return subgraph(conn, root, ref, direction, depth, limit, cursor)[0]


def subgraph(
    conn: Conn, root: int, ref: DatasetRef, direction: Direction, depth: int, limit: int = DEFAULT_LIMIT,
    cursor: Cursor | None = None,
) -> tuple[LineageGraph, dict[int, LineageNode]]:
    """A page of the graph around dataset ``root`` and its nodes by id (the root included, at depth 0).

    Nodes come nearest first (by depth, then id), edges by (input, job, output) id; each list holds at
    most ``limit`` and goes on from ``cursor``."""
    at = cursor or Cursor()
    node_depth, node_id = at.node_after or (0, 0)
    edge_input, edge_job, edge_output = at.edge_after or (0, 0, 0)
    rows = conn.execute(_GRAPH_UP if direction == "upstream" else _GRAPH_DOWN, {
        "root": root, "depth": check_depth(depth), "limit": limit + 1,
        "nodes": not at.nodes_done, "node_depth": node_depth, "node_id": node_id,
        "edges": not at.edges_done, "i": edge_input, "j": edge_job, "o": edge_output}, binary=True).fetchall()
    page: list[tuple[int, int]] = []
    found: list[tuple[Any, ...]] = []
    names: dict[int, DatasetRef] = {}
    for row in rows:  # psycopg gives ints and strs already: no conversions per row
        kind = row[0]
        if kind == 0:
            page.append((row[1], row[2]))
        elif kind == 1:
            found.append(row)
        else:
            names[row[1]] = DatasetRef(row[4], row[5])
    page.sort()
    found.sort(key=_EDGE_ORDER)
    more_nodes, page = len(page) > limit, page[:limit]
    more_edges, found = len(found) > limit, found[:limit]
    nodes = tuple(LineageNode(names[i], d) for d, i in page)
    by_id = {root: LineageNode(names[root], 0), **{i: node for (_, i), node in zip(page, nodes, strict=True)}}
    edges = tuple(LineageEdge(names[i], names[o], p, s, first, last, run)
                  for _, i, _, o, p, s, first, last, run in found)
    truncated = more_nodes or more_edges
    next_cursor = Cursor(page[-1] if more_nodes else None, not more_nodes,
                         (found[-1][1], found[-1][2], found[-1][3]) if more_edges else None,
                         not more_edges).encode() if truncated else None
    return LineageGraph(ref, direction, depth, nodes, edges, limit, truncated, next_cursor), by_id


_DATASETS = """
SELECT d.namespace, d.name, d.created_at, v.*
FROM datasets d LEFT JOIN LATERAL (
    SELECT v.run_id, v.pipeline, v.step, v.written_at, v.row_count, v.schema_fingerprint
    FROM dataset_versions v WHERE v.dataset_id = d.id ORDER BY v.written_at DESC, v.id DESC LIMIT 1
) v ON true
ORDER BY d.namespace, d.name LIMIT %s OFFSET %s
"""


def _version(row: tuple[Any, ...]) -> VersionInfo | None:
    run_id, pipeline, step, written_at, row_count, fingerprint, *more = row
    if run_id is None:
        return None
    return VersionInfo(run_id, pipeline, step, written_at, row_count, fingerprint, more[0] if more else None)


def datasets(conn: Conn, *, limit: int = 1000, offset: int = 0) -> list[DatasetSummary]:
    """Known datasets, by namespace and name, each with its latest write."""
    rows = conn.execute(_DATASETS, (limit, offset)).fetchall()
    return [DatasetSummary(DatasetRef(ns, n), created, _version(tuple(rest)))
            for ns, n, created, *rest in rows]


_PRODUCERS = """
SELECT DISTINCT j.pipeline, j.step FROM lineage_edges e JOIN jobs j ON j.id = e.job_id
WHERE e.output_id = %s ORDER BY 1, 2 LIMIT %s
"""
_CONSUMERS = """
SELECT DISTINCT j.pipeline, j.step FROM lineage_edges e JOIN jobs j ON j.id = e.job_id
WHERE e.input_id = %s ORDER BY 1, 2 LIMIT %s
"""


def dataset_detail(
    conn: Conn, name: str, *, namespace: str | None = None, versions: int = 20
) -> DatasetDetail:
    """A dataset with the jobs that write and read it and its latest ``versions`` writes."""
    dataset_id, ref = resolve(conn, name, namespace)
    row = conn.execute("SELECT created_at FROM datasets WHERE id = %s", (dataset_id,)).fetchone()
    assert row is not None
    producers = conn.execute(_PRODUCERS, (dataset_id, MAX_JOBS + 1)).fetchall()
    consumers = conn.execute(_CONSUMERS, (dataset_id, MAX_JOBS + 1)).fetchall()
    truncated = max(len(producers), len(consumers)) > MAX_JOBS
    history = conn.execute(
        "SELECT run_id, pipeline, step, written_at, row_count, schema_fingerprint, logical_time FROM dataset_versions "
        "WHERE dataset_id = %s ORDER BY written_at DESC, id DESC LIMIT %s", (dataset_id, versions),
    ).fetchall()
    return DatasetDetail(
        ref, row[0], tuple(JobRef(p, s) for p, s in producers[:MAX_JOBS]),
        tuple(JobRef(p, s) for p, s in consumers[:MAX_JOBS]),
        tuple(v for v in (_version(tuple(h)) for h in history) if v is not None), truncated,
    )


_RUN_COLUMNS = "id, pipeline, namespace, phase, trigger, source, started_at, finished_at, name, uid"


def run_detail(conn: Conn, run_id: str) -> RunDetail:
    """A run with its steps (in the order they started).

    ``run_id`` is a run's id, or ``namespace/name`` of a PipelineRun: then the latest run that had
    that name (a name may have been used by several runs, one after the other).
    """
    if not storable(run_id):
        raise RunNotFoundError(run_id)
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM pipeline_runs WHERE id = %s", (run_id,)).fetchone()
    namespace, _, name = run_id.partition("/")
    if row is None and name and "/" not in name:
        row = conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM pipeline_runs WHERE namespace = %s AND name = %s "
            "ORDER BY coalesce(started_at, created_at) DESC LIMIT 1", (namespace, name),
        ).fetchone()
    if row is None:
        raise RunNotFoundError(run_id)
    run, pipeline, namespace, phase, trigger, source, started_at, finished_at, name, uid = row
    steps = conn.execute(
        "SELECT step, phase, attempts, started_at, finished_at, rows_affected, error FROM step_runs "
        "WHERE run_id = %s ORDER BY coalesce(started_at, created_at), step LIMIT %s", (run, MAX_STEPS + 1),
    ).fetchall()
    return RunDetail(run, pipeline, namespace, phase, trigger, source, started_at, finished_at,
                     tuple(StepDetail(*s) for s in steps[:MAX_STEPS]), len(steps) > MAX_STEPS, name, uid)


MAX_BASELINE_VERSIONS: Final = 30
"""Published versions read per dataset for check baselines (a change check's ``versions`` is at most this)."""
_BASELINES = """
SELECT n.ident, v.row_count, v.schema_fingerprint
FROM unnest(%s::bytea[]) AS n (ident)
JOIN datasets d ON d.ident = n.ident
CROSS JOIN LATERAL (
    SELECT v.row_count, v.schema_fingerprint, v.written_at, v.id FROM dataset_versions v
    WHERE v.dataset_id = d.id AND v.published ORDER BY v.written_at DESC, v.id DESC LIMIT %s
) v
ORDER BY n.ident, v.written_at DESC, v.id DESC
"""


def baselines(conn: Conn, refs: list[DatasetRef]) -> dict[DatasetRef, Baseline]:
    """The latest published versions of each dataset: row counts newest first, the latest schema fingerprint.

    Unpublished versions (held back by a check) never become a baseline, so a bad day cannot move it."""
    keys = {dataset_key(r.namespace, r.name): r for r in refs}
    rows: dict[DatasetRef, list[int]] = {r: [] for r in refs}
    schema: dict[DatasetRef, str | None] = {}
    for ident, count, fingerprint in conn.execute(_BASELINES, (list(keys), MAX_BASELINE_VERSIONS)).fetchall():
        ref = keys[bytes(ident)]
        if count is not None:
            rows[ref].append(int(count))
        if ref not in schema:
            schema[ref] = fingerprint
    return {r: Baseline(tuple(rows[r]), schema.get(r)) for r in refs}
