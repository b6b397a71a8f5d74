"""The lineage store: a psycopg 3 connection pool over the PostgreSQL schema of ``migrations``.

Synchronous on purpose: the operator calls it from worker threads and the HTTP API from its own
executor.  Each public call is one transaction (``ingest_batch``: one per batch; ``upstream`` and ``downstream``
read outside one, see ``reading``); writes are idempotent (see
``headwater.lineage.writes``), so a caller that does not know whether a write landed simply
writes again.  Every statement runs under the pool's ``statement_timeout``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from headwater.lineage import explain as _explain
from headwater.lineage import queries
from headwater.lineage.migrations import check_url, migrate
from headwater.lineage.openlineage import ParsedEvent, parse_run_event
from headwater.lineage.records import DatasetRef, Record
from headwater.lineage.writes import write_records
from headwater.runs.checks import Baseline

T = TypeVar("T")

__all__ = ["DEFAULT_STATEMENT_TIMEOUT", "IngestResult", "LineageStore"]

log = logging.getLogger(__name__)

DEFAULT_STATEMENT_TIMEOUT = 30.0
"""Seconds any one statement may run before PostgreSQL cancels it (``QueryCanceled``)."""

# Events get their ids in the order given; RETURNING names the ones that were new.
_INSERT_EVENTS = """
INSERT INTO openlineage_events (digest, event_type, event_time, run_id, job_namespace, job_name, event)
SELECT digest, event_type, event_time, run_id, job_namespace, job_name, event::jsonb
FROM unnest(%b::bytea[], %s::text[], %b::timestamptz[], %s::text[], %s::text[], %s::text[], %b::text[])
    WITH ORDINALITY AS u (digest, event_type, event_time, run_id, job_namespace, job_name, event, k)
ORDER BY k
ON CONFLICT (digest) DO NOTHING
RETURNING digest
"""

# The writes' statements take arrays of any length and find rows by key, so one plan suits every call; by
# default PostgreSQL plans a prepared statement again for each call whose plan it guesses cheaper, and
# planning the batch's write costs more than running it.
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"

_TABLES = ("pipeline_runs", "step_runs", "datasets", "jobs", "lineage_edges", "dataset_versions",
           "openlineage_events")
_COUNTS = """
SELECT (SELECT count(*) FROM pipeline_runs), (SELECT count(*) FROM step_runs),
       (SELECT count(*) FROM datasets), (SELECT count(*) FROM jobs), (SELECT count(*) FROM lineage_edges),
       (SELECT count(*) FROM dataset_versions), (SELECT count(*) FROM openlineage_events)
"""


@dataclass(frozen=True)
class IngestResult:
    """What an accepted OpenLineage event did: ``duplicate`` when the same event was stored before."""

    event_type: str
    run_id: str
    duplicate: bool
    records: int


class LineageStore:
    """Writes and reads lineage through a connection pool; close it (or use ``with``) when done."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]], statement_timeout: float) -> None:
        self._pool = pool
        self.statement_timeout = statement_timeout
        self.max_size = pool.max_size

    @classmethod
    def open(cls, url: str, *, min_size: int = 1, max_size: int = 4, apply_migrations: bool = True,
             timeout: float = 30.0, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT) -> Self:
        """Migrate the database at ``url`` (unless told not to) and open a pool on it.

        Every connection of the pool cancels a statement after ``statement_timeout`` seconds."""
        check_url(url)
        if apply_migrations:
            migrate(url)
        setting = sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{round(statement_timeout * 1000)}ms"))

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(setting)
            conn.commit()  # a session setting, kept by the pooled connection for its whole life

        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout, open=False, name="headwater-lineage",
            configure=configure,
        )
        pool.open(wait=True, timeout=timeout)
        return cls(pool, statement_timeout)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, pipelined: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction (committed at the end, rolled back on error).

        ``pipelined`` sends statements whose results nobody waits for without waiting for them
        (libpq pipeline mode): a write of many records then costs a few round trips, not one each.
        """
        with self._pool.connection() as conn:
            if not pipelined:
                with conn.transaction():
                    yield conn
                return
            # BEGIN and COMMIT travel in the pipeline as statements (psycopg would wait for its own BEGIN):
            # a write costs the round trips of the answers it reads and one at the end.
            conn.autocommit = True
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    conn.execute(_GENERIC_PLANS)
                    yield conn
                    conn.execute("COMMIT")
            except BaseException:
                with suppress(psycopg.Error):  # a broken connection: the pool replaces it
                    conn.rollback()  # also forgets statements "prepared" in the part the server skipped
                raise
            finally:
                if not conn.closed:
                    conn.autocommit = False

    @contextmanager
    def reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection outside any transaction, for reads each of whose statements stands alone.

        No BEGIN and COMMIT round trips (under load each round trip waits for the client and the server to get
        a CPU); the connection goes back to the pool as it came (not in autocommit)."""
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                with suppress(psycopg.Error):  # a broken connection: the pool replaces it
                    conn.autocommit = False

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.transaction() as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    # -- writes ---------------------------------------------------------------------------------

    def record(self, *records: Record) -> None:
        """Write ``records`` in one transaction, in order; every write is idempotent."""
        with self.transaction(pipelined=True) as conn:
            write_records(conn, records)

    def ingest_openlineage(self, event: object) -> IngestResult:
        """Validate and store an OpenLineage RunEvent in one transaction (raises ``InvalidEventError``)."""
        parsed = parse_run_event(event)
        with self.transaction(pipelined=True) as conn:
            stored = self._store_events(conn, [parsed])
        return stored()[0]

    def ingest_batch(self, events: Sequence[ParsedEvent]) -> list[IngestResult | Exception]:
        """Store parsed events in one transaction (a group commit): each one's result, or its error.

        When the transaction fails, each event is stored again in a transaction of its own, so an event the
        database refuses fails alone and the others of its batch are stored (writes are idempotent)."""
        if not events:
            return []
        try:
            with self.transaction(pipelined=True) as conn:
                stored = self._store_events(conn, events)
            return list(stored())
        except Exception as exc:
            if len(events) == 1:
                return [exc]
            log.info("Storing a batch of %d OpenLineage events failed (%s); storing them one by one",
                     len(events), type(exc).__name__)
        results: list[IngestResult | Exception] = []
        for event in events:
            try:
                with self.transaction(pipelined=True) as conn:
                    stored = self._store_events(conn, [event])
                result = stored()[0]
            except Exception as exc:  # the commit may fail too: an event counts only once it is committed
                results.append(exc)
            else:
                results.append(result)
        return results

    @staticmethod
    def _store_events(conn: psycopg.Connection[Any],
                      events: Sequence[ParsedEvent]) -> Callable[[], list[IngestResult]]:
        """Send the raw events and their records, as if one by one in order, on ``conn``; what each did, to
        be read once the transaction is committed (reading nothing before, the write costs no round trip
        of its own in pipeline mode).

        An event is a duplicate when it was stored before, or earlier in ``events``."""
        records = [event.records() for event in events]
        columns = [[e.digest for e in events], [e.event_type for e in events], [e.event_time for e in events],
                   [e.run_id for e in events], [e.job_namespace for e in events], [e.job_name for e in events],
                   [e.canonical_json for e in events]]
        inserted = conn.execute(_INSERT_EVENTS, columns)
        write_records(conn, [record for each in records for record in each])

        def results() -> list[IngestResult]:
            new = {bytes(digest) for digest, in inserted.fetchall()}
            answers = []
            for event, each in zip(events, records, strict=True):
                answers.append(IngestResult(event.event_type, event.run_id, event.digest not in new, len(each)))
                new.discard(event.digest)
            return answers

        return results

    # -- reads ----------------------------------------------------------------------------------

    def upstream(self, name: str, *, namespace: str | None = None, depth: int = queries.DEFAULT_DEPTH,
                 limit: int = queries.DEFAULT_LIMIT, cursor: queries.Cursor | None = None) -> queries.LineageGraph:
        """What feeds the dataset, within ``depth`` hops (1-100): a page of at most ``limit`` nodes and edges."""
        with self.reading() as conn:  # a page is one statement (one snapshot) after the name's lookup
            return queries.traverse(conn, name, "upstream", namespace=namespace, depth=depth, limit=limit,
                                    cursor=cursor)

    def downstream(self, name: str, *, namespace: str | None = None, depth: int = queries.DEFAULT_DEPTH,
                   limit: int = queries.DEFAULT_LIMIT, cursor: queries.Cursor | None = None) -> queries.LineageGraph:
        """What the dataset feeds, within ``depth`` hops (1-100): a page of at most ``limit`` nodes and edges."""
        with self.reading() as conn:
            return queries.traverse(conn, name, "downstream", namespace=namespace, depth=depth, limit=limit,
                                    cursor=cursor)

    def explain(self, name: str, *, namespace: str | None = None, depth: int = queries.DEFAULT_DEPTH,
                now: datetime | None = None, stale_after: timedelta = _explain.DEFAULT_STALE_AFTER,
                limit: int = queries.DEFAULT_LIMIT) -> _explain.Explanation:
        """The root-cause view of a dataset (see ``headwater.lineage.explain``)."""
        with self.transaction() as conn:
            return _explain.explain(conn, name, namespace=namespace, depth=depth,
                                    now=now or datetime.now(UTC), stale_after=stale_after, limit=limit)

    def dataset(self, name: str, *, namespace: str | None = None) -> queries.DatasetDetail:
        with self.transaction() as conn:
            return queries.dataset_detail(conn, name, namespace=namespace)

    def datasets(self, *, limit: int = 1000, offset: int = 0) -> list[queries.DatasetSummary]:
        with self.transaction() as conn:
            return queries.datasets(conn, limit=limit, offset=offset)

    def baselines(self, refs: list[DatasetRef]) -> dict[DatasetRef, Baseline]:
        """Check baselines: the latest published versions of each dataset (``queries.baselines``)."""
        with self.transaction() as conn:
            return queries.baselines(conn, refs)

    def run(self, run_id: str) -> queries.RunDetail:
        with self.transaction() as conn:
            return queries.run_detail(conn, run_id)

    def view(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(conn, *args, **kwargs)`` in one read transaction (the web UI's queries, lineage.views)."""
        with self.transaction() as conn:
            return function(conn, *args, **kwargs)

    def counts(self) -> Mapping[str, int]:
        """Rows per table (for tests, the benchmark and operators' curiosity)."""
        with self.transaction() as conn:
            row = conn.execute(_COUNTS).fetchone()
        assert row is not None
        return dict(zip(_TABLES, (int(v) for v in row), strict=True))
