"""The lineage store against a real PostgreSQL: migrations, idempotent writes, hostile names, ingest."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from headwater.lineage import (
    DatasetRef,
    DatasetVersionRecord,
    EdgeRecord,
    InvalidEventError,
    LineageStore,
    RunRecord,
    StepRecord,
    build_run_event,
    migrate,
)
from headwater.lineage.migrations import MIGRATIONS, applied_versions
from helpers import fresh_database
from lineage_support import REVENUE_STEPS, WAREHOUSE, pipeline_run_records, store_at_version, wh

pytestmark = pytest.mark.integration

ALL_VERSIONS = [m.version for m in MIGRATIONS]

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


@pytest.fixture
def empty_db(database_url: str) -> Iterator[str]:
    with fresh_database(database_url) as url:
        yield url


@pytest.fixture
def store(empty_db: str) -> Iterator[LineageStore]:
    with LineageStore.open(empty_db) as opened:
        yield opened


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return applied_versions(conn)


def test_migrating_twice_applies_every_migration_once(empty_db: str) -> None:
    assert migrate(empty_db) == ALL_VERSIONS
    assert migrate(empty_db) == []
    assert _versions(empty_db) == ALL_VERSIONS


def test_concurrent_migrations_apply_each_version_exactly_once(empty_db: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(migrate(empty_db))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results, key=len) == [[]] * 5 + [ALL_VERSIONS]
    assert _versions(empty_db) == ALL_VERSIONS


def test_a_traversal_reads_outside_a_transaction_and_returns_its_connection_as_it_came(empty_db: str) -> None:
    with LineageStore.open(empty_db, max_size=1) as store:  # one connection: the traversal's is the next call's
        store.record(EdgeRecord("r", "p", "s", (wh("a"),), (wh("b"),)))
        with store.reading() as conn:
            assert conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        for walk in (store.upstream, store.downstream):
            walk("a" if walk == store.downstream else "b")
            with store.transaction() as conn:
                assert not conn.autocommit
        with pytest.raises(psycopg.errors.UndefinedTable), store.reading() as conn:
            conn.execute("SELECT * FROM no_such_table")
        with store.transaction() as conn:
            assert not conn.autocommit
        assert [e.output for e in store.downstream("a").edges] == [wh("b")]


def test_recording_the_same_run_twice_leaves_the_same_rows(store: LineageStore) -> None:
    records = pipeline_run_records("data/revenue-1", REVENUE_STEPS, T0)
    store.record(*records)
    once = store.counts()
    store.record(*records)
    for record in records:  # one by one, through the typed methods, as a replaying queue would
        store.record(record)
    assert store.counts() == once
    assert once["lineage_edges"] == 5 and once["dataset_versions"] == 4 and once["step_runs"] == 4


def test_writers_racing_on_the_same_records_write_them_once(store: LineageStore) -> None:
    records = pipeline_run_records("data/revenue-1", REVENUE_STEPS, T0)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def write() -> None:
        try:
            barrier.wait(timeout=30)
            store.record(*records)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    counts = store.counts()
    assert (counts["datasets"], counts["lineage_edges"], counts["dataset_versions"]) == (6, 5, 4)


def test_a_run_recorded_three_times_is_stored_once(store: LineageStore) -> None:
    records = pipeline_run_records("data/revenue-1", REVENUE_STEPS, T0)
    for _ in range(3):
        store.record(*records)
    counts = store.counts()
    assert (counts["dataset_versions"], counts["lineage_edges"]) == (4, 5)


def test_a_terminal_step_phase_is_final(store: LineageStore) -> None:
    store.record(StepRecord("r", "p", "s", "Running", attempts=1, started_at=T0))
    store.record(StepRecord("r", "p", "s", "Failed", attempts=3, finished_at=T0, error="exit 1"))
    store.record(StepRecord("r", "p", "s", "Running", attempts=4))
    store.record(StepRecord("r", "p", "s", "Succeeded", attempts=4))
    with store.transaction() as conn:
        row = conn.execute("SELECT phase, attempts, started_at, error FROM step_runs").fetchone()
    assert row == ("Failed", 3, T0, "exit 1")


def test_a_run_moves_forward_only(store: LineageStore) -> None:
    store.record(RunRecord("ns/run", "p", "ns", "Running", started_at=T0))
    store.record(RunRecord("ns/run", "p", "ns", "Pending"))
    assert store.run("ns/run").phase == "Running"
    store.record(RunRecord("ns/run", "p", "ns", "Succeeded", finished_at=T0 + timedelta(minutes=5)))
    store.record(RunRecord("ns/run", "p", "ns", "Failed"))
    run = store.run("ns/run")
    assert (run.phase, run.started_at, run.finished_at) == ("Succeeded", T0, T0 + timedelta(minutes=5))


def test_an_edge_seen_by_many_runs_is_one_row_with_first_and_last_seen(store: LineageStore) -> None:
    for day in (3, 1, 2):
        store.record(EdgeRecord(f"run-{day}", "p", "s", (wh("a"),), (wh("b"),),
                                        seen_at=T0 + timedelta(days=day)))
    edges = store.upstream("b").edges
    assert len(edges) == 1
    assert (edges[0].first_seen, edges[0].last_seen) == (T0 + timedelta(days=1), T0 + timedelta(days=3))
    assert edges[0].last_run_id == "run-3"


HOSTILE_NAMES = [
    "o'brien\"; DROP TABLE datasets; --",
    "robert'); DELETE FROM lineage_edges; --",
    "таблица.заказы 💸 ünïcödé",
    "%s %(name)s {0} $1 \\x00-ish \\ backslash",
    "x" * 10_240,
    "ünï " * 2_600,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=["quotes", "semicolons", "unicode", "placeholders",
                                                     "10kB-ascii", "10kB-unicode"])
def test_hostile_dataset_names_are_stored_and_queried_verbatim(store: LineageStore, name: str) -> None:
    source = DatasetRef(f"postgres://{name[:300]}", name)
    target = wh(name + " copy")
    store.record(EdgeRecord("r", "p", "s", (source,), (target,), seen_at=T0),
                 DatasetVersionRecord(target, "r", "p", "s", T0, 7))
    assert [n.dataset for n in store.upstream(target.name).nodes] == [source]
    assert [n.dataset for n in store.downstream(source.name, namespace=source.namespace).nodes] == [target]
    assert store.dataset(target.name, namespace=WAREHOUSE).versions[0].row_count == 7
    assert store.counts()["datasets"] == 2  # nothing was executed, nothing was dropped


def _event(**changes: object) -> dict[str, object]:
    event = build_run_event("COMPLETE", run_id="ns/r", pipeline="etl", step="load", event_time=T0,
                            inputs=[wh("raw.a")], outputs=[wh("clean.a")], row_counts={wh("clean.a"): 42})
    event.update(changes)
    return event


def test_a_complete_event_becomes_edges_a_version_and_a_step_run(store: LineageStore) -> None:
    result = store.ingest_openlineage(_event())
    assert not result.duplicate
    graph = store.upstream("clean.a")
    assert [(e.input.name, e.pipeline, e.step) for e in graph.edges] == [("raw.a", "etl", "load")]
    assert store.dataset("clean.a").versions[0].row_count == 42
    assert store.run(result.run_id).steps[0].phase == "Succeeded"


def test_a_task_that_started_and_failed_is_named_by_explain_on_the_output_it_never_wrote(
        store: LineageStore) -> None:
    """An Airflow task's START and FAIL (no COMPLETE): its datasets are known, no edge or version is recorded,
    and explain on the output names the failed task and its error instead of answering "no dataset"."""
    start = _event(eventType="START")
    fail = _event(eventType="FAIL", eventTime=(T0 + timedelta(minutes=1)).isoformat())
    fail["run"] = {**fail["run"], "facets": {"errorMessage": {"message": "the billing API answered 401",  # type: ignore[dict-item]
                                                              "programmingLanguage": "python"}}}
    store.ingest_openlineage(start)
    store.ingest_openlineage(fail)
    assert store.upstream("clean.a").edges == () and store.dataset("clean.a").versions == ()
    assert store.downstream("raw.a").edges == () and store.dataset("raw.a").versions == ()  # known, no 404
    [node] = store.explain("clean.a").nodes
    assert node.reasons[0].code == "producer_failed"
    assert "load of etl is Failed" in node.reasons[0].message and "401" in node.reasons[0].message


def test_the_same_event_sent_twice_is_stored_once(store: LineageStore) -> None:
    store.ingest_openlineage(_event())
    assert store.ingest_openlineage(_event()).duplicate
    assert store.counts()["openlineage_events"] == 1


def test_a_malformed_event_writes_nothing(store: LineageStore) -> None:
    bad = _event(outputs=[{"namespace": WAREHOUSE, "name": "clean.a"}, {"namespace": WAREHOUSE}])
    with pytest.raises(InvalidEventError, match=r"outputs\[1\]\.name: required"):
        store.ingest_openlineage(bad)
    assert set(store.counts().values()) == {0}


def test_a_database_error_midway_rolls_the_whole_event_back(store: LineageStore) -> None:
    with store.transaction() as conn:  # make the version insert fail after the raw event and edges
        conn.execute("ALTER TABLE dataset_versions ADD CONSTRAINT no_big CHECK (row_count < 10)")
    with pytest.raises(psycopg.errors.CheckViolation):
        store.ingest_openlineage(_event())
    assert set(store.counts().values()) == {0}


def test_raw_events_are_append_only(store: LineageStore) -> None:
    store.ingest_openlineage(_event())
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"), store.transaction() as conn:
        conn.execute("UPDATE openlineage_events SET event_type = 'OTHER'")


def test_times_no_client_can_read_are_repaired_by_the_migration_and_refused_after(empty_db: str) -> None:
    store_at_version(empty_db, 3)
    with psycopg.connect(empty_db) as conn:  # the columns of migrations 5, 6, 8 and 12 that today's writes name,
        # for now
        conn.execute("ALTER TABLE pipeline_runs ADD COLUMN name text, ADD COLUMN uid text")
        conn.execute("ALTER TABLE dataset_versions ADD COLUMN published boolean NOT NULL DEFAULT true")
        conn.execute("ALTER TABLE dataset_versions ADD COLUMN logical_time timestamptz")
        conn.execute("ALTER TABLE jobs ADD COLUMN namespace text NOT NULL DEFAULT ''")
    with LineageStore.open(empty_db, apply_migrations=False) as old:
        old.ingest_openlineage(_event())  # a COMPLETE of raw.a -> clean.a at T0
    with psycopg.connect(empty_db) as conn:  # back to the schema of version 3, its rows kept
        conn.execute("ALTER TABLE pipeline_runs DROP COLUMN name, DROP COLUMN uid")
        conn.execute("ALTER TABLE dataset_versions DROP COLUMN published")
        conn.execute("ALTER TABLE dataset_versions DROP COLUMN logical_time")
        conn.execute("ALTER TABLE jobs DROP COLUMN namespace")
    with psycopg.connect(empty_db) as conn:  # what an unbounded eventTime left behind before
        conn.execute("ALTER TABLE openlineage_events DISABLE TRIGGER openlineage_events_append_only")
        for table, column in [("openlineage_events", "event_time"), ("lineage_edges", "last_seen"),
                              ("dataset_versions", "written_at"), ("step_runs", "finished_at")]:
            conn.execute(f"UPDATE {table} SET {column} = '9999-12-31T23:59:59-14:00'")  # type: ignore[arg-type]
        conn.execute("ALTER TABLE openlineage_events ENABLE TRIGGER openlineage_events_append_only")
    with LineageStore.open(empty_db) as store:
        assert {n.dataset.name for n in store.upstream("clean.a").nodes} == {"raw.a"}
        [clean] = [n for n in store.explain("clean.a").nodes if n.dataset.name == "clean.a"]
        assert clean.latest_version is not None
        with store.transaction() as conn:
            latest = conn.execute("SELECT max(event_time) FROM openlineage_events").fetchone()
        assert latest is not None and latest[0] <= datetime.now(UTC)
        with pytest.raises(psycopg.errors.CheckViolation), store.transaction() as conn:
            conn.execute("UPDATE lineage_edges SET last_seen = '9999-06-01T00:00:00Z'")
