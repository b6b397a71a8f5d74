"""Idempotent writes of records on an open connection (the caller owns the transaction).

Every statement binds its values as parameters and resolves conflicts with ``ON CONFLICT``, so
writing a record twice, or replaying a queue of them, leaves the same rows as writing it once.
Runs and steps move forward only: Pending → Running → a terminal phase, which is final.
"""

from __future__ import annotations

from typing import Any

import psycopg

from headwater.lineage.declarations import Declaration
from headwater.lineage.records import (
    DatasetRef,
    DatasetVersionRecord,
    DeclaredOutputsRecord,
    EdgeRecord,
    Record,
    RunRecord,
    StepRecord,
    dataset_key,
)

__all__ = ["ensure_datasets", "write_declaration", "write_record"]

Conn = psycopg.Connection[Any]

_UPSERT_RUN = """
INSERT INTO pipeline_runs AS r (id, pipeline, namespace, phase, trigger, source, started_at, finished_at, name, uid)
VALUES (%(run_id)s, %(pipeline)s, %(namespace)s, %(phase)s, %(trigger)s, %(source)s,
        %(started_at)s, %(finished_at)s, %(name)s, %(uid)s)
ON CONFLICT (id) DO UPDATE SET
    phase = excluded.phase,
    name = coalesce(r.name, excluded.name),
    uid = coalesce(r.uid, excluded.uid),
    started_at = coalesce(r.started_at, excluded.started_at),
    finished_at = coalesce(excluded.finished_at, r.finished_at),
    updated_at = now()
WHERE hw_phase_rank(r.phase) < 2 AND hw_phase_rank(excluded.phase) >= hw_phase_rank(r.phase)
"""

_UPSERT_STEP = """
INSERT INTO step_runs AS s (run_id, step, pipeline, phase, attempts, started_at, finished_at,
                            rows_affected, error)
VALUES (%(run_id)s, %(step)s, %(pipeline)s, %(phase)s, %(attempts)s, %(started_at)s, %(finished_at)s,
        %(rows_affected)s, %(error)s)
ON CONFLICT (run_id, step) DO UPDATE SET
    phase = excluded.phase,
    attempts = greatest(s.attempts, excluded.attempts),
    started_at = coalesce(s.started_at, excluded.started_at),
    finished_at = coalesce(excluded.finished_at, s.finished_at),
    rows_affected = coalesce(excluded.rows_affected, s.rows_affected),
    error = coalesce(excluded.error, s.error),
    updated_at = now()
WHERE hw_phase_rank(s.phase) < 2 AND hw_phase_rank(excluded.phase) >= hw_phase_rank(s.phase)
"""

# One round trip: new rows come from RETURNING, existing ones from the statement's snapshot.  A row
# committed by a concurrent writer after that snapshot is in neither; the caller then reads it again.
_ENSURE_DATASETS = """
WITH wanted (ident, namespace, name) AS (SELECT * FROM unnest(%s::bytea[], %s::text[], %s::text[])),
inserted AS (
    INSERT INTO datasets (ident, namespace, name)
    SELECT ident, namespace, name FROM wanted ORDER BY ident
    ON CONFLICT (ident) DO NOTHING
    RETURNING ident, id
)
SELECT ident, id FROM inserted
UNION ALL
SELECT d.ident, d.id FROM datasets d JOIN wanted w ON w.ident = d.ident
"""
_ENSURE_JOB = """
WITH inserted AS (
    INSERT INTO jobs (ident, pipeline, step) VALUES (%(ident)s, %(pipeline)s, %(step)s)
    ON CONFLICT (ident) DO NOTHING
    RETURNING id
)
SELECT id FROM inserted UNION ALL SELECT id FROM jobs WHERE ident = %(ident)s
"""

_UPSERT_EDGES = """
INSERT INTO lineage_edges AS e (input_id, job_id, output_id, first_seen, last_seen, last_run_id)
SELECT i, %(job)s, o, %(seen)s, %(seen)s, %(run_id)s
FROM unnest(%(inputs)s::bigint[]) AS i CROSS JOIN unnest(%(outputs)s::bigint[]) AS o
ORDER BY i, o
ON CONFLICT (input_id, job_id, output_id) DO UPDATE SET
    first_seen = least(e.first_seen, excluded.first_seen),
    last_seen = greatest(e.last_seen, excluded.last_seen),
    last_run_id = CASE WHEN excluded.last_seen > e.last_seen THEN excluded.last_run_id ELSE e.last_run_id END
WHERE excluded.first_seen < e.first_seen OR excluded.last_seen > e.last_seen
"""

_INSERT_VERSION = """
INSERT INTO dataset_versions (dataset_id, run_id, pipeline, step, written_at, row_count, schema_fingerprint,
                              published, logical_time)
VALUES (%(dataset_id)s, %(run_id)s, %(pipeline)s, %(step)s, %(written_at)s, %(row_count)s,
        %(schema_fingerprint)s, %(published)s, %(logical_time)s)
ON CONFLICT (dataset_id, run_id, step) DO NOTHING
"""
_INSERT_CHECK = """
INSERT INTO check_results (version_id, name, kind, severity, outcome, observed, baseline, message)
SELECT v.id, %(name)s, %(kind)s, %(severity)s, %(outcome)s, %(observed)s, %(baseline)s, %(message)s
FROM dataset_versions v WHERE v.dataset_id = %(dataset_id)s AND v.run_id = %(run_id)s AND v.step = %(step)s
ON CONFLICT (version_id, name) DO NOTHING
"""


def ensure_datasets(conn: Conn, datasets: list[DatasetRef] | tuple[DatasetRef, ...]) -> dict[DatasetRef, int]:
    """The ids of ``datasets``, registering the ones not known yet."""
    unique = sorted(set(datasets))
    if not unique:
        return {}
    keys = [dataset_key(d.namespace, d.name) for d in unique]
    rows = conn.execute(_ENSURE_DATASETS, (keys, [d.namespace for d in unique], [d.name for d in unique]))
    by_key = {bytes(ident): int(ident_id) for ident, ident_id in rows.fetchall()}
    if len(by_key) < len(keys):  # lost a race with a concurrent writer: its rows are committed now
        again = conn.execute("SELECT ident, id FROM datasets WHERE ident = ANY(%s)", (keys,)).fetchall()
        by_key = {bytes(ident): int(ident_id) for ident, ident_id in again}
    return {d: by_key[k] for d, k in zip(unique, keys, strict=True)}


def _ensure_job(conn: Conn, pipeline: str, step: str) -> int:
    ident = dataset_key(pipeline, step)  # the same hashing keeps (pipeline, step) unique at any length
    row = conn.execute(_ENSURE_JOB, {"ident": ident, "pipeline": pipeline, "step": step}).fetchone()
    if row is None:  # lost a race with a concurrent writer: its row is committed now
        row = conn.execute("SELECT id FROM jobs WHERE ident = %s", (ident,)).fetchone()
    assert row is not None
    return int(row[0])


def _write_run(conn: Conn, record: RunRecord) -> None:
    conn.execute(_UPSERT_RUN, {
        "run_id": record.run_id, "pipeline": record.pipeline, "namespace": record.namespace,
        "phase": record.phase, "trigger": record.trigger, "source": record.source,
        "started_at": record.started_at, "finished_at": record.finished_at, "name": record.name, "uid": record.uid,
    })


def _write_step(conn: Conn, record: StepRecord) -> None:
    conn.execute(_UPSERT_STEP, {
        "run_id": record.run_id, "step": record.step, "pipeline": record.pipeline, "phase": record.phase,
        "attempts": record.attempts, "started_at": record.started_at, "finished_at": record.finished_at,
        "rows_affected": record.rows_affected, "error": record.error,
    })


def _write_edges(conn: Conn, record: EdgeRecord) -> None:
    ids = ensure_datasets(conn, [*record.inputs, *record.outputs])
    job = _ensure_job(conn, record.pipeline, record.step)
    if record.inputs and record.outputs:
        conn.execute(_UPSERT_EDGES, {
            "job": job, "seen": record.seen_at, "run_id": record.run_id,
            "inputs": [ids[d] for d in record.inputs], "outputs": [ids[d] for d in record.outputs],
        })


def _write_version(conn: Conn, record: DatasetVersionRecord) -> None:
    dataset_id = ensure_datasets(conn, [record.dataset])[record.dataset]
    conn.execute(_INSERT_VERSION, {
        "dataset_id": dataset_id, "run_id": record.run_id, "pipeline": record.pipeline, "step": record.step,
        "written_at": record.written_at, "row_count": record.row_count,
        "schema_fingerprint": record.schema_fingerprint, "published": record.published,
        "logical_time": record.logical_time,
    })
    for check in record.checks:
        conn.execute(_INSERT_CHECK, {
            "dataset_id": dataset_id, "run_id": record.run_id, "step": record.step, "name": check.name,
            "kind": check.kind, "severity": check.severity, "outcome": check.outcome, "observed": check.observed,
            "baseline": check.baseline, "message": check.message,
        })


_UPSERT_DECLARED = """
INSERT INTO step_outputs AS o (job_id, dataset_id, last_run_id)
SELECT %(job)s, d, %(run_id)s FROM unnest(%(outputs)s::bigint[]) AS d ORDER BY d
ON CONFLICT (dataset_id, job_id) DO UPDATE SET last_run_id = excluded.last_run_id
WHERE o.last_run_id IS DISTINCT FROM excluded.last_run_id
"""


def _write_declared(conn: Conn, record: DeclaredOutputsRecord) -> None:
    if not record.outputs:
        return
    ids = ensure_datasets(conn, record.outputs)
    job = _ensure_job(conn, record.pipeline, record.step)
    conn.execute(_UPSERT_DECLARED, {"job": job, "run_id": record.run_id, "outputs": [ids[d] for d in record.outputs]})


_DECLARE_UNRUN = """
INSERT INTO step_outputs (job_id, dataset_id, last_run_id)
SELECT j, d, NULL FROM unnest(%(jobs)s::bigint[], %(outputs)s::bigint[]) AS x (j, d) ORDER BY d, j
ON CONFLICT (dataset_id, job_id) DO NOTHING
"""
_FORGET_UNDECLARED = """
DELETE FROM step_outputs o USING jobs j
WHERE o.job_id = j.id AND j.pipeline = %(pipeline)s AND o.last_run_id IS NULL
  AND (o.job_id, o.dataset_id) NOT IN (SELECT * FROM unnest(%(jobs)s::bigint[], %(outputs)s::bigint[]))
"""


def write_declaration(conn: Conn, declaration: Declaration) -> None:
    """A Ready Pipeline's declared outputs, as outputs with no run yet (a recorded run's row is kept); its
    never-run declarations it no longer makes are dropped."""
    ids = ensure_datasets(conn, [d for _, outputs in declaration.outputs for d in outputs])
    pairs = sorted((_ensure_job(conn, declaration.pipeline, step), ids[d])
                   for step, outputs in declaration.outputs for d in outputs)
    values = {"pipeline": declaration.pipeline, "jobs": [j for j, _ in pairs], "outputs": [d for _, d in pairs]}
    conn.execute(_DECLARE_UNRUN, values)
    conn.execute(_FORGET_UNDECLARED, values)


def write_record(conn: Conn, record: Record) -> None:
    """Write one record idempotently inside the caller's transaction."""
    if isinstance(record, RunRecord):
        _write_run(conn, record)
    elif isinstance(record, StepRecord):
        _write_step(conn, record)
    elif isinstance(record, EdgeRecord):
        _write_edges(conn, record)
    elif isinstance(record, DeclaredOutputsRecord):
        _write_declared(conn, record)
    else:
        _write_version(conn, record)
