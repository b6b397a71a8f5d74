"""Idempotent writes of records on an open connection (the caller owns the transaction).

Every statement binds its values as parameters and resolves conflicts with ``ON CONFLICT``, so
writing a record twice, or replaying a queue of them, leaves the same rows as writing it once.
Runs and steps move forward only: Pending → Running → a terminal phase, which is final.
:func:`write_records` reads no answer: it registers the datasets and jobs of all its records first, and
the statements after find their ids by key (``ident``) in the database, so in pipeline mode the whole
write costs no round trip of its own (the caller's commit is the only one).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    job_key,
)

__all__ = ["write_declaration", "write_record", "write_records"]

Conn = psycopg.Connection[Any]

_UPSERT_RUN = """
INSERT INTO pipeline_runs AS r (id, pipeline, namespace, phase, trigger, source, started_at, finished_at, name, uid)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %b::timestamptz[],
                     %b::timestamptz[], %s::text[], %s::text[]) AS u ORDER BY 1
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
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %b::int[], %b::timestamptz[],
                     %b::timestamptz[], %b::bigint[], %s::text[]) AS u ORDER BY 1, 2
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

# Registration without an answer: later statements of the transaction find the rows by key, one index
# lookup each (a row another writer inserts concurrently is waited for by ON CONFLICT, and committed before
# the next statement's snapshot; a key not found would be a NULL id, which the NOT NULL columns refuse
# rather than drop the row).  Rows known already are skipped before they take an id.
_REGISTER = """
INSERT INTO {table} (ident, {columns})
SELECT * FROM unnest(%b::bytea[], {arrays}) AS u (ident, {columns})
WHERE (SELECT id FROM {table} x WHERE x.ident = u.ident) IS NULL
ORDER BY 1
ON CONFLICT (ident) DO NOTHING
"""
_REGISTER_DATASETS = _REGISTER.format(table="datasets", columns="namespace, name", arrays="%s::text[], %s::text[]")
_REGISTER_JOBS = _REGISTER.format(table="jobs", columns="namespace, pipeline, step",
                                  arrays="%s::text[], %s::text[], %s::text[]")

_UPSERT_EDGES = """
INSERT INTO lineage_edges AS e (input_id, job_id, output_id, first_seen, last_seen, last_run_id)
SELECT (SELECT id FROM datasets WHERE ident = u.input_key), (SELECT id FROM jobs WHERE ident = u.job_key),
       (SELECT id FROM datasets WHERE ident = u.output_key), u.seen, u.seen, u.run_id
FROM unnest(%b::bytea[], %b::bytea[], %b::bytea[], %b::timestamptz[], %s::text[])
    AS u (input_key, job_key, output_key, seen, run_id)
ORDER BY 1, 2, 3
ON CONFLICT (input_id, job_id, output_id) DO UPDATE SET
    first_seen = least(e.first_seen, excluded.first_seen),
    last_seen = greatest(e.last_seen, excluded.last_seen),
    last_run_id = CASE WHEN excluded.last_seen > e.last_seen THEN excluded.last_run_id ELSE e.last_run_id END
WHERE excluded.first_seen < e.first_seen OR excluded.last_seen > e.last_seen
"""

_INSERT_VERSION = """
INSERT INTO dataset_versions (dataset_id, run_id, pipeline, step, written_at, row_count, schema_fingerprint,
                              published, logical_time)
SELECT (SELECT id FROM datasets WHERE ident = u.dataset_key), u.run_id, u.pipeline, u.step, u.written_at,
       u.row_count, u.schema_fingerprint, u.published, u.logical_time
FROM unnest(%b::bytea[], %s::text[], %s::text[], %s::text[], %b::timestamptz[], %b::bigint[], %s::text[],
            %b::boolean[], %b::timestamptz[]) WITH ORDINALITY
    AS u (dataset_key, run_id, pipeline, step, written_at, row_count, schema_fingerprint, published, logical_time, k)
ORDER BY u.k
ON CONFLICT (dataset_id, run_id, step) DO NOTHING
"""
_INSERT_CHECK = """
INSERT INTO check_results (version_id, name, kind, severity, outcome, observed, baseline, message)
SELECT v.id, %(name)s, %(kind)s, %(severity)s, %(outcome)s, %(observed)s, %(baseline)s, %(message)s
FROM dataset_versions v
WHERE v.dataset_id = (SELECT id FROM datasets WHERE ident = %(dataset_key)s) AND v.run_id = %(run_id)s
  AND v.step = %(step)s
ON CONFLICT (version_id, name) DO NOTHING
"""


Job = tuple[str, str, str]
"""(Kubernetes namespace, pipeline, step); the namespace is empty for a job known from OpenLineage."""


_UPSERT_DECLARED = """
INSERT INTO step_outputs AS o (job_id, dataset_id, last_run_id)
SELECT (SELECT id FROM jobs WHERE ident = u.job_key), (SELECT id FROM datasets WHERE ident = u.dataset_key),
       u.run_id
FROM unnest(%b::bytea[], %b::bytea[], %s::text[]) AS u (job_key, dataset_key, run_id)
ORDER BY 2, 1
ON CONFLICT (dataset_id, job_id) DO UPDATE SET last_run_id = excluded.last_run_id
WHERE o.last_run_id IS DISTINCT FROM excluded.last_run_id
"""


Row = tuple[Any, ...]


def _rounds(rows: list[Row], key: int) -> list[list[Any]]:
    """``rows`` in rounds where no two rows share their first ``key`` columns, each round as column arrays.

    An upsert may not touch one row twice in a statement, so the n-th write of a key goes in round n: the
    writes of one key keep their order, as if each were a statement of its own."""
    rounds: list[list[Row]] = []
    seen: dict[Row, int] = {}
    for row in rows:
        n = seen.get(row[:key], 0)
        seen[row[:key]] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(row)
    return [[list(column) for column in zip(*each, strict=True)] for each in rounds]


def _execute_together(conn: Conn, statements: list[tuple[str, list[Any]]]) -> None:
    """Run ``statements`` (each with its positional parameters) as one: each a data-modifying WITH query.

    They must not read each other's writes (one statement has one snapshot); one statement instead of
    several saves the client and the server the work of the others."""
    if len(statements) == 1:
        conn.execute(*statements[0])
    elif statements:
        parts = ",\n".join(f"w{k} AS ({statement.strip()})" for k, (statement, _) in enumerate(statements))
        conn.execute(f"WITH {parts}\nSELECT", [value for _, params in statements for value in params])


def _needs(records: Sequence[Record]) -> tuple[set[DatasetRef], set[Job]]:
    """The datasets and jobs ``records`` refer to (an edge record registers its job even without edges)."""
    datasets: set[DatasetRef] = set()
    jobs: set[Job] = set()
    for record in records:
        if isinstance(record, EdgeRecord):
            datasets.update(record.inputs, record.outputs)
            jobs.add((record.namespace, record.pipeline, record.step))
        elif isinstance(record, DeclaredOutputsRecord) and record.outputs:
            datasets.update(record.outputs)
            jobs.add((record.namespace, record.pipeline, record.step))
        elif isinstance(record, DatasetVersionRecord):
            datasets.add(record.dataset)
    return datasets, jobs


def _register(conn: Conn, datasets: set[DatasetRef],
              jobs: set[Job]) -> tuple[dict[DatasetRef, bytes], dict[Job, bytes]]:
    """Register ``datasets`` and ``jobs`` in key order (two writers lock them in the same order) in one
    statement, reading no answer; their keys, for the statements that refer to them."""
    dataset_keys = {d: dataset_key(d.namespace, d.name) for d in datasets}
    job_keys = {job: job_key(*job) for job in jobs}
    registers: list[tuple[str, list[Any]]] = []
    if dataset_keys:
        ordered = sorted(dataset_keys.items(), key=lambda item: item[1])
        registers.append((_REGISTER_DATASETS, [[k for _, k in ordered], [d.namespace for d, _ in ordered],
                                               [d.name for d, _ in ordered]]))
    if job_keys:
        ordered_jobs = sorted(job_keys.items(), key=lambda item: item[1])
        registers.append((_REGISTER_JOBS, [[k for _, k in ordered_jobs], *map(list, zip(
            *(job for job, _ in ordered_jobs), strict=True))]))
    _execute_together(conn, registers)
    return dataset_keys, job_keys


def write_records(conn: Conn, records: Sequence[Record]) -> None:
    """Write ``records`` idempotently inside the caller's transaction, as if one by one in order.

    The datasets and jobs of all of them are registered first, in key order (so two writers lock them in the
    same order); then one statement writes the records of every table, finding dataset and job ids by key (a
    key written again in ``records`` goes in a statement after, see :func:`_rounds`).  No statement needs an
    answer."""
    keys, jobs = _register(conn, *_needs(records))
    runs: list[Row] = []
    steps: list[Row] = []
    edges: list[Row] = []
    versions: list[DatasetVersionRecord] = []
    declared: list[Row] = []
    for r in records:
        if isinstance(r, RunRecord):
            runs.append((r.run_id, r.pipeline, r.namespace, r.phase, r.trigger, r.source, r.started_at,
                         r.finished_at, r.name, r.uid))
        elif isinstance(r, StepRecord):
            steps.append((r.run_id, r.step, r.pipeline, r.phase, r.attempts, r.started_at, r.finished_at,
                          r.rows_affected, r.error))
        elif isinstance(r, EdgeRecord):
            job = jobs[r.namespace, r.pipeline, r.step]
            edges.extend(dict.fromkeys((keys[i], job, keys[o], r.seen_at, r.run_id)
                                       for i in r.inputs for o in r.outputs))
        elif isinstance(r, DeclaredOutputsRecord):
            if r.outputs:
                job = jobs[r.namespace, r.pipeline, r.step]
                declared.extend(dict.fromkeys((job, keys[d], r.run_id) for d in r.outputs))
        else:
            versions.append(r)
    upserts = [(_UPSERT_RUN, _rounds(runs, 1)), (_UPSERT_STEP, _rounds(steps, 2)), (_UPSERT_EDGES, _rounds(edges, 3)),
               (_UPSERT_DECLARED, _rounds(declared, 2))]
    first = [(statement, rounds[0]) for statement, rounds in upserts if rounds]
    if versions:
        rows = [(keys[v.dataset], v.run_id, v.pipeline, v.step, v.written_at, v.row_count, v.schema_fingerprint,
                 v.published, v.logical_time) for v in versions]
        first.append((_INSERT_VERSION, [list(column) for column in zip(*rows, strict=True)]))
    _execute_together(conn, first)  # the tables are independent: one statement writes them all
    for statement, rounds in upserts:  # a key written again in the batch: after its earlier write
        for later in rounds[1:]:
            conn.execute(statement, later)
    for v in versions:
        for check in v.checks:
            conn.execute(_INSERT_CHECK, {
                "dataset_key": keys[v.dataset], "run_id": v.run_id, "step": v.step, "name": check.name,
                "kind": check.kind, "severity": check.severity, "outcome": check.outcome,
                "observed": check.observed, "baseline": check.baseline, "message": check.message,
            })


# The declared (job, dataset) pairs, their ids found by key as the records' statements find them.
_DECLARED_PAIRS = """
SELECT (SELECT id FROM jobs WHERE ident = u.job_key), (SELECT id FROM datasets WHERE ident = u.dataset_key)
FROM unnest(%(job_keys)b::bytea[], %(dataset_keys)b::bytea[]) AS u (job_key, dataset_key)
"""
_DECLARE_UNRUN = f"""
INSERT INTO step_outputs (job_id, dataset_id, last_run_id)
SELECT j, d, NULL FROM ({_DECLARED_PAIRS}) AS x (j, d) ORDER BY d, j
ON CONFLICT (dataset_id, job_id) DO NOTHING
"""
_FORGET_UNDECLARED = f"""
DELETE FROM step_outputs o USING jobs j
WHERE o.job_id = j.id AND j.namespace = %(namespace)s AND j.pipeline = %(pipeline)s AND o.last_run_id IS NULL
  AND (o.job_id, o.dataset_id) NOT IN ({_DECLARED_PAIRS})
"""


def write_declaration(conn: Conn, declaration: Declaration) -> None:
    """A Ready Pipeline's declared outputs, as outputs with no run yet (a recorded run's row is kept); its
    never-run declarations it no longer makes are dropped."""
    namespace, pipeline = declaration.namespace, declaration.pipeline
    dataset_keys, job_keys = _register(conn, {d for _, outputs in declaration.outputs for d in outputs},
                                       {(namespace, pipeline, step) for step, _ in declaration.outputs})
    pairs = [(job_keys[(namespace, pipeline, step)], dataset_keys[d])
             for step, outputs in declaration.outputs for d in outputs]
    values = {"namespace": namespace, "pipeline": pipeline, "job_keys": [j for j, _ in pairs],
              "dataset_keys": [d for _, d in pairs]}
    conn.execute(_DECLARE_UNRUN, values)
    conn.execute(_FORGET_UNDECLARED, values)


def write_record(conn: Conn, record: Record) -> None:
    """Write one record idempotently inside the caller's transaction."""
    write_records(conn, [record])
