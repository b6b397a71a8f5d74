"""Finished PipelineRuns in the lineage store: one run per Kubernetes object, whatever its name."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from headwater.lineage.migrations import MIGRATIONS, migrate
from headwater.lineage.records import DatasetRef, EdgeRecord, dataset_key, job_key
from headwater.lineage.run_records import records_for_run
from headwater.lineage.store import LineageStore
from helpers import fresh_database
from lineage_support import store_at_version

pytestmark = pytest.mark.integration

WAREHOUSE = "postgres://warehouse"
FIRST_UID = "0f3c9a1e-5d2b-4c8e-9f10-2a3b4c5d6e7f"
SECOND_UID = "7d41e0b2-0000-4000-8000-000000000000"


def finished_run(uid: str, finished: str, rows: int) -> dict[str, Any]:
    step = {"id": "load", "type": "container", "image": "busybox",
            "outputs": [{"namespace": WAREHOUSE, "name": "analytics.revenue"}]}
    return {
        "metadata": {"name": "rev-1", "namespace": "data", "uid": uid},
        "spec": {"pipelineRef": {"name": "rev"}},
        "status": {"phase": "Succeeded", "startedAt": finished, "finishedAt": finished,
                   "pipelineSpec": {"steps": [step]},
                   "steps": [{"name": "load", "phase": "Succeeded", "attempts": 1, "startedAt": finished,
                              "finishedAt": finished, "result": {"rowsAffected": rows}}]},
    }


def test_a_run_deleted_and_created_again_under_its_name_is_recorded_as_a_second_run(store: LineageStore) -> None:
    store.record(*records_for_run(finished_run(FIRST_UID, "2026-11-23T06:00:00Z", 100)))
    store.record(*records_for_run(finished_run(SECOND_UID, "2026-11-24T06:00:00Z", 200)))
    assert store.counts()["pipeline_runs"] == 2
    versions = store.dataset("analytics.revenue").versions
    assert [(v.run_id, v.row_count) for v in versions] == [("data/rev-1/7d41e0b2", 200), ("data/rev-1/0f3c9a1e", 100)]
    assert store.run("data/rev-1/0f3c9a1e").uid == FIRST_UID
    latest = store.run("data/rev-1")  # the name alone: the latest run that had it
    assert (latest.id, latest.name, latest.uid) == ("data/rev-1/7d41e0b2", "rev-1", SECOND_UID)


@pytest.mark.parametrize("version", [3, 4])
def test_runs_recorded_before_uids_keep_their_ids_and_are_found_by_name(database_url: str, version: int) -> None:
    """From a store of either earlier version, the migrations still to come apply in order."""
    with fresh_database(database_url) as url:
        store_at_version(url, version)
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO pipeline_runs (id, pipeline, namespace, phase, trigger) "
                         "VALUES ('data/old-run', 'rev', 'data', 'Succeeded', 'manual')")
        assert migrate(url) == [m.version for m in MIGRATIONS if m.version > version]
        with LineageStore.open(url) as store:
            old = store.run("data/old-run")
            assert (old.id, old.name, old.uid) == ("data/old-run", "old-run", None)


def test_a_version_records_the_logical_time_of_the_run_that_wrote_it(store: LineageStore) -> None:
    backfilled = finished_run(FIRST_UID, "2026-12-01T09:00:00Z", 100)
    backfilled["spec"] = {"pipelineRef": {"name": "rev"}, "trigger": "backfill", "scheduledFor": "2026-11-05T06:00:00Z"}
    backfilled["status"]["logicalTime"] = "2026-11-05T06:00:00Z"
    store.record(*records_for_run(backfilled))
    [version] = store.dataset("analytics.revenue").versions
    assert version.logical_time is not None and version.logical_time.isoformat() == "2026-11-05T06:00:00+00:00"


def test_jobs_recorded_before_namespaces_take_the_one_namespace_their_pipeline_ran_in(database_url: str) -> None:
    with fresh_database(database_url) as url:
        store_at_version(url, len(MIGRATIONS) - 1)  # every migration but the jobs' namespace
        table = DatasetRef(WAREHOUSE, "analytics.revenue")
        with psycopg.connect(url) as conn:
            for run, pipeline, namespace in [("data/rev-0", "rev", "data"), ("team-a/etl-0", "etl", "team-a"),
                                             ("team-b/etl-0", "etl", "team-b")]:
                conn.execute("INSERT INTO pipeline_runs (id, pipeline, namespace, phase, trigger) "
                             "VALUES (%s, %s, %s, 'Succeeded', 'manual')", (run, pipeline, namespace))
            for pipeline in ["rev", "etl", "not-run-yet"]:  # keyed as before: sha256(pipeline NUL step)
                conn.execute("INSERT INTO jobs (ident, pipeline, step) VALUES (%s, %s, 'load')",
                             (dataset_key(pipeline, "load"), pipeline))
            conn.execute("INSERT INTO datasets (ident, namespace, name) VALUES (%s, %s, %s)",
                         (dataset_key(table.namespace, table.name), table.namespace, table.name))
            conn.execute("INSERT INTO step_outputs (job_id, dataset_id, last_run_id) SELECT j.id, d.id, r FROM "
                         "jobs j, datasets d, (VALUES ('rev', 'data/rev-0'), ('not-run-yet', NULL)) AS x (p, r) "
                         "WHERE j.pipeline = x.p")
        assert migrate(url) == [MIGRATIONS[-1].version]
        with psycopg.connect(url) as conn:
            jobs = conn.execute("SELECT namespace, pipeline, step, ident FROM jobs ORDER BY pipeline").fetchall()
            declared = conn.execute("SELECT j.pipeline, o.last_run_id FROM step_outputs o "
                                    "JOIN jobs j ON j.id = o.job_id").fetchall()
        assert [(ns, p, s, bytes(ident) == job_key(ns, p, s)) for ns, p, s, ident in jobs] == [
            ("", "etl", "load", True), ("", "not-run-yet", "load", True), ("data", "rev", "load", True)]
        assert declared == [("rev", "data/rev-0")]  # a declaration of no run is written again by the operator
        with LineageStore.open(url) as store:
            store.record(EdgeRecord("data/rev-1", "rev", "load", (), (table,), namespace="data"))
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM jobs WHERE pipeline = 'rev'").fetchone() == (1,)
