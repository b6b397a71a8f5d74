"""Versioned schema of the lineage store, applied by :func:`migrate` (idempotent, safe to run concurrently).

Each migration is a numbered SQL script; ``schema_migrations`` records the ones applied.  ``migrate``
takes a transaction-scoped advisory lock first, so two operators (or an operator and
``headwater db migrate``) starting together apply every script exactly once; the whole run is one
transaction, so a failing script leaves the schema as it was.  Never edit a released migration:
add the next number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg.conninfo import conninfo_to_dict

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "applied_versions", "check_url", "migrate"]

log = logging.getLogger(__name__)

_LOCK_ID: Final = 0x48_57_4C_49_4E  # "HWLIN": any constant shared by every migrator of this schema


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


_RUNS_SQL = """
CREATE FUNCTION hw_phase_rank(phase text) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE phase WHEN 'Pending' THEN 0 WHEN 'Running' THEN 1 ELSE 2 END $$;

CREATE TABLE pipeline_runs (
    id          text PRIMARY KEY,
    pipeline    text NOT NULL,
    namespace   text NOT NULL,
    phase       text NOT NULL,
    trigger     text NOT NULL,
    source      text NOT NULL DEFAULT 'headwater',
    started_at  timestamptz,
    finished_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pipeline_runs_pipeline_idx ON pipeline_runs (pipeline, started_at DESC);

CREATE TABLE step_runs (
    run_id        text NOT NULL,
    step          text NOT NULL,
    pipeline      text NOT NULL,
    phase         text NOT NULL,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    started_at    timestamptz,
    finished_at   timestamptz,
    rows_affected bigint,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step)
);
CREATE INDEX step_runs_job_idx ON step_runs (pipeline, step, (coalesce(started_at, created_at)) DESC);
"""

_LINEAGE_SQL = """
CREATE TABLE datasets (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ident      bytea NOT NULL UNIQUE,
    namespace  text NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX datasets_name_idx ON datasets USING hash (name);

CREATE TABLE jobs (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ident    bytea NOT NULL UNIQUE,
    pipeline text NOT NULL,
    step     text NOT NULL
);

CREATE TABLE lineage_edges (
    input_id    bigint NOT NULL REFERENCES datasets (id),
    job_id      bigint NOT NULL REFERENCES jobs (id),
    output_id   bigint NOT NULL REFERENCES datasets (id),
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    last_run_id text NOT NULL,
    PRIMARY KEY (input_id, job_id, output_id)
);
CREATE INDEX lineage_edges_upstream_idx ON lineage_edges (output_id, input_id);

CREATE TABLE dataset_versions (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset_id         bigint NOT NULL REFERENCES datasets (id),
    run_id             text NOT NULL,
    pipeline           text NOT NULL,
    step               text NOT NULL,
    written_at         timestamptz NOT NULL,
    row_count          bigint CHECK (row_count >= 0),
    schema_fingerprint text,
    UNIQUE (dataset_id, run_id, step)
);
CREATE INDEX dataset_versions_latest_idx ON dataset_versions (dataset_id, written_at DESC, id DESC);
CREATE INDEX dataset_versions_run_idx ON dataset_versions (run_id);
"""

_OPENLINEAGE_SQL = """
CREATE TABLE openlineage_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest        bytea NOT NULL UNIQUE,
    event_type    text NOT NULL,
    event_time    timestamptz NOT NULL,
    run_id        text NOT NULL,
    job_namespace text NOT NULL,
    job_name      text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    event         jsonb NOT NULL
);
CREATE INDEX openlineage_events_run_idx ON openlineage_events (run_id, event_time);

CREATE FUNCTION hw_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER openlineage_events_append_only BEFORE UPDATE ON openlineage_events
    FOR EACH ROW EXECUTE FUNCTION hw_refuse_update();
"""

# Python (and so psycopg) reads dates up to 9999-12-31 only, in the session's time zone: a row after that
# makes every read that meets it fail.  Events were not bounded before this migration, so times outside
# [1970, now] are brought into it, and the database refuses such times from now on.
_TIMES: Final = (("openlineage_events", "event_time"), ("pipeline_runs", "started_at"),
                 ("pipeline_runs", "finished_at"), ("step_runs", "started_at"), ("step_runs", "finished_at"),
                 ("lineage_edges", "first_seen"), ("lineage_edges", "last_seen"),
                 ("dataset_versions", "written_at"))
_LOW, _HIGH = "'1970-01-01 00:00:00+00'", "'9999-01-01 00:00:00+00'"
_TIME_BOUNDS_SQL = "\n".join([
    "ALTER TABLE openlineage_events DISABLE TRIGGER openlineage_events_append_only;",
    *(f"UPDATE {table} SET {column} = least(greatest({column}, {_LOW}), now()) "
      f"WHERE {column} < {_LOW} OR {column} > now() + interval '1 day';" for table, column in _TIMES),
    "ALTER TABLE openlineage_events ENABLE TRIGGER openlineage_events_append_only;",
    *(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_range "
      f"CHECK ({column} >= {_LOW} AND {column} < {_HIGH});" for table, column in _TIMES),
])

# Runs were keyed by namespace/name until now: those rows keep their ids, and learn their name.
_RUN_NAMES_SQL = """
ALTER TABLE pipeline_runs ADD COLUMN name text, ADD COLUMN uid text;
UPDATE pipeline_runs SET name = substr(id, length(namespace) + 2)
    WHERE source = 'headwater' AND namespace <> '' AND starts_with(id, namespace || '/');
CREATE INDEX pipeline_runs_name_idx ON pipeline_runs (namespace, name, (coalesce(started_at, created_at)) DESC)
    WHERE name IS NOT NULL;
"""

# A version a blocking check failed on is kept (its rows exist, its checks say why) but not published:
# baselines, triggers and "the latest good version" read published versions only.  Earlier versions
# had no checks and stay published.
_CHECKS_SQL = """
ALTER TABLE dataset_versions ADD COLUMN published boolean NOT NULL DEFAULT true;
CREATE INDEX dataset_versions_published_idx ON dataset_versions (dataset_id, written_at DESC, id DESC)
    WHERE published;
CREATE TABLE check_results (
    version_id bigint NOT NULL REFERENCES dataset_versions (id),
    name       text NOT NULL,
    kind       text NOT NULL,
    severity   text NOT NULL CHECK (severity IN ('error', 'warn')),
    outcome    text NOT NULL CHECK (outcome IN ('Passed', 'Failed', 'Skipped')),
    observed   text,
    baseline   text,
    message    text NOT NULL DEFAULT '',
    PRIMARY KEY (version_id, name)
);
-- What each step declares it writes, from every recorded run whatever the step's outcome: a dataset a step
-- never wrote is still known, with the step that should have written it (explain answers for it).
CREATE TABLE step_outputs (
    job_id      bigint NOT NULL REFERENCES jobs (id),
    dataset_id  bigint NOT NULL REFERENCES datasets (id),
    last_run_id text NOT NULL,
    PRIMARY KEY (dataset_id, job_id)
);
"""

# The trigger outbox: every new dataset version gets an outbox row in the transaction that writes it (a
# database trigger, so Headwater's runs and ingested OpenLineage events alike), and a notification on commit.
# A Pipeline's dataset triggers consume outbox rows: a firing (the run to create, named after the versions it
# consumes) and its consumed rows are written in one transaction before the run is created, so a replay, a
# restart or a second operator never fires the same rows twice.  The notification names the dataset (its
# ident in hex), so a woken operator looks only at the Pipelines it may trigger.  hw_version_published is
# the one place that says whether a version counts: a version a blocking check failed on does not (migration 6).
_TRIGGERS_SQL = """
CREATE FUNCTION hw_version_published(version_id bigint) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce((SELECT published FROM dataset_versions WHERE id = version_id), false) $$;

CREATE TABLE trigger_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version_id bigint NOT NULL UNIQUE REFERENCES dataset_versions (id),
    dataset_id bigint NOT NULL REFERENCES datasets (id),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX trigger_outbox_dataset_idx ON trigger_outbox (dataset_id, id);

CREATE FUNCTION hw_version_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO trigger_outbox (version_id, dataset_id) VALUES (NEW.id, NEW.dataset_id);
    PERFORM pg_notify('headwater_dataset_versions', (SELECT encode(ident, 'hex') FROM datasets
                                                     WHERE id = NEW.dataset_id));
    RETURN NULL;
END $$;
CREATE TRIGGER dataset_versions_outbox AFTER INSERT ON dataset_versions
    FOR EACH ROW EXECUTE FUNCTION hw_version_outbox();

CREATE TABLE trigger_consumers (
    consumer   text PRIMARY KEY,
    since      timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE trigger_firings (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer     text NOT NULL REFERENCES trigger_consumers (consumer),
    run_name     text NOT NULL,
    versions     jsonb NOT NULL,
    fired_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    confirmed_at timestamptz,
    UNIQUE (consumer, run_name)
);
CREATE INDEX trigger_firings_unconfirmed_idx ON trigger_firings (consumer, id) WHERE confirmed_at IS NULL;

CREATE TABLE trigger_consumed (
    consumer  text NOT NULL,
    outbox_id bigint NOT NULL REFERENCES trigger_outbox (id),
    firing_id bigint NOT NULL REFERENCES trigger_firings (id),
    PRIMARY KEY (consumer, outbox_id)
);
"""

# A version knows the logical time of the run that wrote it (its schedule slot, or a backfill's): the
# partition it holds.  Versions written before this migration, and by other tools, have none.
_LOGICAL_TIME_SQL = """
ALTER TABLE dataset_versions ADD COLUMN logical_time timestamptz
    CONSTRAINT dataset_versions_logical_time_range CHECK (logical_time >= '1970-01-01 00:00:00+00'
                                                          AND logical_time < '9999-01-01 00:00:00+00');
CREATE INDEX dataset_versions_partition_idx ON dataset_versions (dataset_id, logical_time)
    WHERE logical_time IS NOT NULL;
"""

# A Pipeline's declared outputs are known from the moment it is Ready, before any run: such a row has no run
# yet (last_run_id NULL) until a recorded run declares the same output.
_DECLARED_SQL = """
ALTER TABLE step_outputs ALTER COLUMN last_run_id DROP NOT NULL;
"""

# A job is a step of a pipeline in a Kubernetes namespace: two Pipelines of one name in two namespaces are two
# jobs (before, they shared one, and explain could blame one team's step for the other's dataset).  The ident
# is records.job_key: sha256 of namespace, NUL, pipeline, NUL, step.  A job recorded before gets the namespace
# of its pipeline's runs when they are all in one namespace; otherwise (or with no run, or from OpenLineage)
# it keeps the empty namespace, and new writes make a job per namespace beside it.
_JOB_NAMESPACES_SQL = """
ALTER TABLE jobs ADD COLUMN namespace text NOT NULL DEFAULT '';
UPDATE jobs j SET namespace = r.namespace
FROM (SELECT pipeline, min(namespace) AS namespace FROM pipeline_runs GROUP BY pipeline
      HAVING count(DISTINCT namespace) = 1) r
WHERE r.pipeline = j.pipeline;
UPDATE jobs SET ident = sha256(convert_to(namespace, 'UTF8') || '\\x00'::bytea || convert_to(pipeline, 'UTF8')
                               || '\\x00'::bytea || convert_to(step, 'UTF8'));
-- declarations of Pipelines that have not run yet hang on the jobs without namespace: the operator writes
-- them again, under their namespace, on its first pass after it starts
DELETE FROM step_outputs WHERE last_run_id IS NULL;
"""

MIGRATIONS: Final = (
    Migration(1, "runs and step runs", _RUNS_SQL),
    Migration(2, "datasets, jobs, lineage edges and dataset versions", _LINEAGE_SQL),
    Migration(3, "raw OpenLineage events", _OPENLINEAGE_SQL),
    Migration(4, "every stored time readable: from 1970 to before 9999", _TIME_BOUNDS_SQL),
    Migration(5, "runs know their Kubernetes name and UID", _RUN_NAMES_SQL),
    Migration(6, "published dataset versions, check results, declared step outputs", _CHECKS_SQL),
    Migration(7, "dataset triggers: an outbox of new versions and the firings that consume them", _TRIGGERS_SQL),
    Migration(8, "dataset versions know their logical time (the partition they hold)", _LOGICAL_TIME_SQL),
    Migration(11, "outputs declared by Ready Pipelines that have not run yet", _DECLARED_SQL),
    Migration(12, "a job is a step of a pipeline in a Kubernetes namespace", _JOB_NAMESPACES_SQL),
)
LATEST_VERSION: Final = MIGRATIONS[-1].version

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty when the table does not exist yet)."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return []
    return [int(str(v)) for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def check_url(url: str) -> None:
    """Raise ValueError, without repeating ``url``, when libpq cannot parse it.

    libpq's own message quotes the string or the part it chokes on, password included; this one
    goes into logs on every retry.
    """
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ValueError(
            "the lineage store's database URL is not a valid libpq connection string (not shown: it may hold "
            "a password); expected postgresql://user:password@host:5432/db or host=... dbname=..."
        ) from None


def migrate(url: str) -> list[int]:
    """Bring the database at ``url`` to the latest schema; return the versions applied now (often none)."""
    check_url(url)
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(_CREATE_TABLE)
        done = set(applied_versions(conn))
        applied: list[int] = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            log.info("Applied lineage migration %d (%s)", migration.version, migration.name)
            applied.append(migration.version)
    return applied
