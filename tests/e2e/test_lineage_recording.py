"""The operator records runs and lineage in PostgreSQL, and never loses a record while it is down."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from conftest_e2e import OperatorProcess, free_port, scrape, wait_run
from headwater.lineage.store import LineageStore
from helpers import ROOT, Cluster, fresh_database, throwaway_postgres, wait_for
from manifests import pipeline, run, step

pytestmark = pytest.mark.e2e

# The recorder's warning (its error may span lines); the backlog cannot shrink while the database is away.
LONGEST_BACKOFF = re.compile(r"recording paused \(5 runs waiting\).*?retrying in 30s", re.DOTALL)
READ_TOKEN = "e2e-read-token"


@pytest.fixture
def lineage_url(database_url: str) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server."""
    with fresh_database(database_url) as url:
        yield url


def with_results(manifest: dict[str, Any], rows: dict[str, int]) -> dict[str, Any]:
    """The example with simulated step results (rows written), as the steps would report them."""
    for s in manifest["spec"]["steps"]:
        annotations = s.setdefault("podMetadata", {}).setdefault("annotations", {})
        annotations["headwater.dev/test-termination-message"] = json.dumps({"rowsAffected": rows.get(s["id"], 10)})
    return manifest


def example(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if d]
    return with_results(docs[0], {})


def recorded(cluster: Cluster, namespace: str, name: str) -> bool:
    conds = (cluster.get("pipelinerun", name, namespace).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Recorded" and c["status"] == "True" for c in conds)


def start_recording_operator(cluster: Cluster, namespace: str, tmp_path: Path, url: str,
                             api_port: int = 0, metrics_port: int = 0) -> OperatorProcess:
    proc = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_DATABASE_URL=url,
                           HEADWATER_RECORD_RESCAN_SECONDS="2", HEADWATER_API_PORT=str(api_port),
                           HEADWATER_API_HOST="127.0.0.1", HEADWATER_METRICS_PORT=str(metrics_port),
                           HEADWATER_API_TOKEN=READ_TOKEN, HEADWATER_API_WRITE_TOKEN="e2e-write-token")
    proc.start()
    return proc


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def headwater(*args: str) -> str:
    """Run the ``headwater`` CLI of this environment (with the API's read token); its stdout when it succeeds."""
    proc = subprocess.run([str(Path(sys.executable).parent / "headwater"), *args], capture_output=True,
                          text=True, check=False, timeout=60, env={**os.environ, "HEADWATER_API_TOKEN": READ_TOKEN})
    return proc.stdout if proc.returncode == 0 else ""


def test_the_revenue_examples_lineage_is_traced_upstream_and_downstream_across_pipelines(
        cluster: Cluster, namespace: str, lineage_url: str, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    operator = start_recording_operator(cluster, namespace, tmp_path, lineage_url, api_port=port,
                                        metrics_port=metrics_port)
    try:
        cluster.apply(example("revenue-pipeline.yaml"), example("revenue-reporting.yaml"), namespace=namespace)
        cluster.apply(run("revenue-1", "revenue"), namespace=namespace)
        assert wait_run(cluster, namespace, "revenue-1")["status"]["phase"] == "Succeeded"
        cluster.apply(run("reporting-1", "revenue-reporting"), namespace=namespace)
        assert wait_run(cluster, namespace, "reporting-1")["status"]["phase"] == "Succeeded"
        for name in ("revenue-1", "reporting-1"):
            wait_for(lambda name=name: recorded(cluster, namespace, name), timeout=120, message=f"{name} recorded")
        tree = wait_for(lambda: headwater("lineage", "upstream", "analytics.business_metrics",
                                          "--api", f"http://127.0.0.1:{port}"),
                        timeout=120, message="the operator's lineage API to answer")
        assert tree.splitlines()[0] == "postgres://warehouse/analytics.business_metrics"
        assert "postgres://warehouse/analytics.daily_revenue  <- revenue/aggregate-metrics" in tree
        assert "api://stripe/payments  <- revenue/extract-payments" in tree
        # the run's metrics are counted after its final status is written (Recorded may come first), and a
        # rescan that read the runs just before they were marked may count one in the backlog for a moment
        expected = {'headwater_runs_total{phase="Succeeded",pipeline="revenue"}': 1.0,
                    'headwater_step_handoff_seconds_count{pipeline="revenue"}': 2.0, "headwater_lineage_backlog": 0.0}
        wait_for(lambda: (now := scrape(metrics_port)) and {k: now.get(k) for k in expected} == expected,
                 message=f"the metrics to read {expected}")
    finally:
        operator.stop()
    with LineageStore.open(lineage_url) as store:
        up = {(n.dataset.name, n.depth) for n in store.upstream("analytics.business_metrics").nodes}
        assert {("analytics.daily_revenue", 1), ("raw.orders", 2), ("raw.stripe_payments", 2),
                ("public.orders", 3), ("payments", 3)} <= up
        down = {n.dataset.name for n in store.downstream("raw.stripe_payments").nodes}
        assert {"analytics.daily_revenue", "analytics.business_metrics", "reporting.finance_daily"} <= down
        assert store.run(f"{namespace}/revenue-1").phase == "Succeeded"


def test_runs_finish_while_postgres_is_down_and_are_recorded_exactly_once_when_it_returns(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    chain = [step("extract", outputs=[{"namespace": "postgres://warehouse", "name": "raw.events"}]),
             step("load", "extract", inputs=[{"namespace": "postgres://warehouse", "name": "raw.events"}],
                  outputs=[{"namespace": "postgres://warehouse", "name": "analytics.events"}])]
    names = [f"outage-{i}" for i in range(5)]
    with throwaway_postgres() as server:
        LineageStore.open(server.url).close()  # migrated while up
        server.stop()
        port = free_port()
        operator = start_recording_operator(cluster, namespace, tmp_path, server.url, api_port=port)
        try:
            assert wait_for(lambda: http_status(port, "/livez") == 200, timeout=120, message="/livez")
            assert http_status(port, "/healthz") == 503  # the operator is alive; its store is not reachable
            cluster.apply(pipeline("outage", chain), *[run(n, "outage") for n in names], namespace=namespace)
            finished = [wait_run(cluster, namespace, n) for n in names]
            assert [r["status"]["phase"] for r in finished] == ["Succeeded"] * 5
            assert not any(recorded(cluster, namespace, n) for n in names)
            # a long outage: the database stays away until the recorder, with all five runs waiting,
            # has backed off to its longest delay (1 + 2 + 4 + 8 + 16 s of failed attempts)
            wait_for(lambda: LONGEST_BACKOFF.search(operator.logs()), timeout=300, interval=1,
                     message="the recorder to back off to 30 s with five runs waiting")
            assert not any(recorded(cluster, namespace, n) for n in names)
            server.start()
            wait_for(lambda: all(recorded(cluster, namespace, n) for n in names), timeout=180, interval=1,
                     message="every run to be recorded after the database returned")
        finally:
            operator.stop()
        with psycopg.connect(server.url) as conn:
            runs = conn.execute("SELECT namespace || '/' || name, count(*) FROM pipeline_runs GROUP BY 1").fetchall()
            steps = conn.execute("SELECT count(*), count(DISTINCT (run_id, step)) FROM step_runs").fetchone()
            edges = conn.execute("SELECT count(*) FROM lineage_edges").fetchone()
            versions = conn.execute("SELECT count(*) FROM dataset_versions").fetchone()
        assert sorted(runs) == sorted((f"{namespace}/{n}", 1) for n in names)
        assert steps == (10, 10)
        assert edges == (1,)  # raw.events -> load -> analytics.events, deduplicated across the 5 runs
        assert versions == (10,)


def owned_run(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    """A run owned by its Pipeline, as scheduled runs are: deleting the Pipeline garbage-collects it."""
    manifest = run(name, owner["metadata"]["name"])
    manifest["metadata"]["ownerReferences"] = [{
        "apiVersion": owner["apiVersion"], "kind": "Pipeline", "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    return manifest


def run_names(cluster: Cluster, namespace: str) -> set[str]:
    return {r["metadata"]["name"] for r in cluster.list("pipelineruns", namespace)}


def test_runs_garbage_collected_with_their_pipeline_while_postgres_is_down_are_all_recorded(
        cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    chain = [step("extract", outputs=[{"namespace": "postgres://warehouse", "name": "raw.gc"}])]
    names = {f"gc-{i}" for i in range(10)}
    with throwaway_postgres() as server:
        LineageStore.open(server.url).close()  # migrated while up
        server.stop()
        operator = start_recording_operator(cluster, namespace, tmp_path, server.url)
        try:
            cluster.apply(pipeline("gc", chain, successfulRunsHistoryLimit=100), namespace=namespace)
            owner = cluster.get("pipeline", "gc", namespace)
            cluster.apply(*[owned_run(n, owner) for n in sorted(names)], namespace=namespace)
            finished = [wait_run(cluster, namespace, n, timeout=90) for n in sorted(names)]
            assert {r["status"]["phase"] for r in finished} == {"Succeeded"}
            assert all(r["metadata"]["finalizers"] == ["headwater.dev/lineage"] for r in finished)
            cluster.kubectl("-n", namespace, "delete", "pipeline", "gc", "--wait=false")
            wait_for(lambda: all(r["metadata"].get("deletionTimestamp")
                                 for r in cluster.list("pipelineruns", namespace)) and
                     len(cluster.list("pipelineruns", namespace)) == 10,
                     timeout=60, message="the garbage collector to delete the 10 runs (held by the finalizer)")
            server.start()
            wait_for(lambda: not run_names(cluster, namespace), timeout=120, interval=1,
                     message="every run to be recorded and let go")
        finally:
            operator.stop()
        with psycopg.connect(server.url) as conn:
            stored = conn.execute("SELECT name, phase FROM pipeline_runs").fetchall()
            versions = conn.execute("SELECT count(*) FROM dataset_versions").fetchone()
        assert sorted(stored) == sorted((n, "Succeeded") for n in names)
        assert versions == (10,)


def test_a_run_deleted_and_created_again_under_its_name_is_recorded_as_two_runs(
        cluster: Cluster, namespace: str, lineage_url: str, tmp_path: Path) -> None:
    operator = start_recording_operator(cluster, namespace, tmp_path, lineage_url)
    uids = []
    try:
        cluster.apply(pipeline("again", [step("load", outputs=[{"namespace": "postgres://warehouse",
                                                                  "name": "analytics.again"}])]),
                      namespace=namespace)
        for _ in range(2):
            cluster.apply(run("again-1", "again"), namespace=namespace)
            uids.append(wait_run(cluster, namespace, "again-1")["metadata"]["uid"])
            wait_for(lambda: recorded(cluster, namespace, "again-1"), timeout=60, message="the run recorded")
            cluster.kubectl("-n", namespace, "delete", "pipelinerun", "again-1", "--timeout=60s")
    finally:
        operator.stop()
    assert uids[0] != uids[1]
    with LineageStore.open(lineage_url) as store:
        first, second = (store.run(f"{namespace}/again-1/{uid[:8]}") for uid in uids)
        assert (first.uid, second.uid) == (uids[0], uids[1])
        assert store.run(f"{namespace}/again-1").uid == uids[1]
        versions = store.dataset("analytics.again").versions
        assert sorted(v.run_id for v in versions) == sorted(f"{namespace}/again-1/{uid[:8]}" for uid in uids)
