"""Read side of the lineage store: upstream/downstream traversal, datasets and runs.

Traversal walks the deduplicated ``lineage_edges`` table with a recursive CTE whose ``UNION``
(not ``UNION ALL``) drops repeated (dataset, depth) pairs: the work is bounded by
datasets x depth however many runs recorded an edge, and a cycle ends at the depth limit.
Each dataset is reported once, at its smallest depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import psycopg

from headwater.lineage.records import DatasetRef, dataset_key

__all__ = [
    "DEFAULT_DEPTH", "MAX_DEPTH", "AmbiguousDatasetError", "DatasetDetail", "DatasetNotFoundError",
    "DatasetSummary", "Direction", "JobRef", "LineageEdge", "LineageGraph", "LineageNode", "RunDetail",
    "RunNotFoundError", "StepDetail", "VersionInfo", "check_depth", "dataset_detail", "datasets",
    "resolve", "run_detail", "subgraph", "traverse", "walk",
]

Conn = psycopg.Connection[Any]
Direction = Literal["upstream", "downstream"]
DEFAULT_DEPTH: Final = 20
MAX_DEPTH: Final = 100


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
    dataset: DatasetRef
    direction: Direction
    depth: int
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]


@dataclass(frozen=True)
class VersionInfo:
    """One successful write of a dataset."""

    run_id: str
    pipeline: str
    step: str
    written_at: datetime
    row_count: int | None
    schema_fingerprint: str | None


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
    name: str | None = None
    uid: str | None = None


def check_depth(depth: int) -> int:
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH} (got {depth})")
    return depth


def resolve(conn: Conn, name: str, namespace: str | None = None) -> tuple[int, DatasetRef]:
    """The id of a dataset named ``name`` (in ``namespace``; without one, the name must be unique)."""
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


_WALK_UP = """
WITH RECURSIVE walk (id, depth) AS (
    SELECT %(root)s::bigint, 0
  UNION
    SELECT e.input_id, w.depth + 1 FROM walk w JOIN lineage_edges e ON e.output_id = w.id
    WHERE w.depth < %(depth)s
)
SELECT w.id, min(w.depth) FROM walk w GROUP BY w.id
"""
_WALK_DOWN = """
WITH RECURSIVE walk (id, depth) AS (
    SELECT %(root)s::bigint, 0
  UNION
    SELECT e.output_id, w.depth + 1 FROM walk w JOIN lineage_edges e ON e.input_id = w.id
    WHERE w.depth < %(depth)s
)
SELECT w.id, min(w.depth) FROM walk w GROUP BY w.id
"""
_EDGES_UP = """
SELECT e.input_id, e.output_id, j.pipeline, j.step, e.first_seen, e.last_seen, e.last_run_id
FROM lineage_edges e JOIN jobs j ON j.id = e.job_id
WHERE e.output_id = ANY(%(inner)s) AND e.input_id = ANY(%(all)s)
"""
_EDGES_DOWN = """
SELECT e.input_id, e.output_id, j.pipeline, j.step, e.first_seen, e.last_seen, e.last_run_id
FROM lineage_edges e JOIN jobs j ON j.id = e.job_id
WHERE e.input_id = ANY(%(inner)s) AND e.output_id = ANY(%(all)s)
"""


def _names(conn: Conn, ids: list[int]) -> dict[int, DatasetRef]:
    rows = conn.execute("SELECT id, namespace, name FROM datasets WHERE id = ANY(%s)", (ids,)).fetchall()
    return {int(i): DatasetRef(str(ns), str(n)) for i, ns, n in rows}


def walk(conn: Conn, root: int, direction: Direction, depth: int) -> dict[int, int]:
    """Dataset id → smallest depth, for every dataset within ``depth`` of ``root`` (root at 0)."""
    query = _WALK_UP if direction == "upstream" else _WALK_DOWN
    rows = conn.execute(query, {"root": root, "depth": check_depth(depth)}).fetchall()
    return {int(i): int(d) for i, d in rows}


def traverse(
    conn: Conn, name: str, direction: Direction, *, namespace: str | None = None, depth: int = DEFAULT_DEPTH
) -> LineageGraph:
    """What feeds a dataset (upstream) or what it feeds (downstream), within ``depth`` hops."""
    check_depth(depth)
    root, ref = resolve(conn, name, namespace)
    return subgraph(conn, root, ref, direction, depth)[0]


def subgraph(
    conn: Conn, root: int, ref: DatasetRef, direction: Direction, depth: int
) -> tuple[LineageGraph, dict[int, LineageNode]]:
    """The graph around dataset ``root`` and its nodes by id (the root included, at depth 0)."""
    depths = walk(conn, root, direction, depth)
    inner = [i for i, d in depths.items() if d < depth]
    rows = conn.execute(_EDGES_UP if direction == "upstream" else _EDGES_DOWN,
                        {"inner": inner, "all": list(depths)}).fetchall()
    names = _names(conn, list(depths))
    by_id = {i: LineageNode(names[i], 0 if i == root else d) for i, d in depths.items()}
    nodes = sorted((n for i, n in by_id.items() if i != root), key=lambda n: (n.depth, n.dataset))
    edges = sorted(
        (LineageEdge(names[int(i)], names[int(o)], str(p), str(s), f, last, str(run))
         for i, o, p, s, f, last, run in rows),
        key=lambda e: (e.output, e.input, e.pipeline, e.step),
    )
    return LineageGraph(ref, direction, depth, tuple(nodes), tuple(edges)), by_id


_DATASETS = """
SELECT d.namespace, d.name, d.created_at, v.*
FROM datasets d LEFT JOIN LATERAL (
    SELECT v.run_id, v.pipeline, v.step, v.written_at, v.row_count, v.schema_fingerprint
    FROM dataset_versions v WHERE v.dataset_id = d.id ORDER BY v.written_at DESC, v.id DESC LIMIT 1
) v ON true
ORDER BY d.namespace, d.name LIMIT %s OFFSET %s
"""


def _version(row: tuple[Any, ...]) -> VersionInfo | None:
    run_id, pipeline, step, written_at, row_count, fingerprint = row
    if run_id is None:
        return None
    return VersionInfo(run_id, pipeline, step, written_at, row_count, fingerprint)


def datasets(conn: Conn, *, limit: int = 1000, offset: int = 0) -> list[DatasetSummary]:
    """Known datasets, by namespace and name, each with its latest write."""
    rows = conn.execute(_DATASETS, (limit, offset)).fetchall()
    return [DatasetSummary(DatasetRef(ns, n), created, _version(tuple(rest)))
            for ns, n, created, *rest in rows]


_PRODUCERS = """
SELECT DISTINCT j.pipeline, j.step FROM lineage_edges e JOIN jobs j ON j.id = e.job_id
WHERE e.output_id = %s ORDER BY 1, 2
"""
_CONSUMERS = """
SELECT DISTINCT j.pipeline, j.step FROM lineage_edges e JOIN jobs j ON j.id = e.job_id
WHERE e.input_id = %s ORDER BY 1, 2
"""


def dataset_detail(
    conn: Conn, name: str, *, namespace: str | None = None, versions: int = 20
) -> DatasetDetail:
    """A dataset with the jobs that write and read it and its latest ``versions`` writes."""
    dataset_id, ref = resolve(conn, name, namespace)
    row = conn.execute("SELECT created_at FROM datasets WHERE id = %s", (dataset_id,)).fetchone()
    assert row is not None
    producers = conn.execute(_PRODUCERS, (dataset_id,)).fetchall()
    consumers = conn.execute(_CONSUMERS, (dataset_id,)).fetchall()
    history = conn.execute(
        "SELECT run_id, pipeline, step, written_at, row_count, schema_fingerprint FROM dataset_versions "
        "WHERE dataset_id = %s ORDER BY written_at DESC, id DESC LIMIT %s", (dataset_id, versions),
    ).fetchall()
    return DatasetDetail(
        ref, row[0], tuple(JobRef(p, s) for p, s in producers), tuple(JobRef(p, s) for p, s in consumers),
        tuple(v for v in (_version(tuple(h)) for h in history) if v is not None),
    )


_RUN_COLUMNS = "id, pipeline, namespace, phase, trigger, source, started_at, finished_at, name, uid"


def run_detail(conn: Conn, run_id: str) -> RunDetail:
    """A run with its steps (in the order they started).

    ``run_id`` is a run's id, or ``namespace/name`` of a PipelineRun: then the latest run that had
    that name (a name may have been used by several runs, one after the other).
    """
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
        "WHERE run_id = %s ORDER BY coalesce(started_at, created_at), step", (run,),
    ).fetchall()
    return RunDetail(run, pipeline, namespace, phase, trigger, source, started_at, finished_at,
                     tuple(StepDetail(*s) for s in steps), name, uid)
