"""Dataset triggers on the local control plane: a Pipeline runs on new versions of its inputs, written by
Headwater's own runs or announced by another tool's OpenLineage events, exactly once per firing, through
operator crashes."""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest_e2e import OperatorProcess, free_port, scrape, wait_run
from headwater.lineage.store import LineageStore
from helpers import Cluster, fresh_database, paced, wait_for
from manifests import pipeline, run, step

pytestmark = pytest.mark.e2e

WH = "postgres://warehouse"
REVENUE, ORDERS = "analytics.revenue", "analytics.orders"
WRITE_TOKEN = "e2e-write-token"


@pytest.fixture
def lineage_url(database_url: str) -> Iterator[str]:
    with fresh_database(database_url) as url:
        LineageStore.open(url).close()  # migrated before the operator starts, so tests can write at once
        yield url


@pytest.fixture
def trigger_operator(cluster: Cluster, namespace: str, tmp_path: Path, lineage_url: str,
                     request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """An operator with a lineage store and its API (ingest token ``WRITE_TOKEN``) and /metrics."""
    port, metrics_port = free_port(), free_port()
    proc = OperatorProcess(cluster, namespace, tmp_path / "operator.log", HEADWATER_DATABASE_URL=lineage_url,
                           HEADWATER_RECORD_RESCAN_SECONDS="2", HEADWATER_API_PORT=str(port),
                           HEADWATER_API_HOST="127.0.0.1", HEADWATER_API_TOKEN="e2e-read-token",
                           HEADWATER_API_WRITE_TOKEN=WRITE_TOKEN, HEADWATER_METRICS_PORT=str(metrics_port))
    proc.api_port = port  # type: ignore[attr-defined]
    proc.start()
    yield proc
    proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log ({proc.log_path}) ---\n{proc.logs()[-20000:]}")


def upstream(name: str, output: str) -> dict[str, Any]:
    return pipeline(name, [step("load", outputs=[{"namespace": WH, "name": output}])],
                    successfulRunsHistoryLimit=100)


def reporting(mode: str, *inputs: str) -> dict[str, Any]:
    return pipeline("reporting", [step("report")], successfulRunsHistoryLimit=100, triggers={"datasets": {
        "mode": mode, "inputs": [{"namespace": WH, "name": name} for name in inputs]}})


def ready(cluster: Cluster, namespace: str, name: str) -> None:
    def is_ready() -> bool:
        conds = (cluster.get("pipeline", name, namespace).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    wait_for(is_ready, timeout=60, message=f"Pipeline {name} to be Ready")


def triggered(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    runs = cluster.list("pipelineruns", namespace, "headwater.dev/trigger=dataset")
    return sorted(runs, key=lambda r: r["metadata"]["creationTimestamp"])


def inputs_of(triggered_run: dict[str, Any]) -> list[tuple[str, str]]:
    """(dataset, upstream run name) of each version that triggered the run."""
    return sorted((v["name"], v["run"].split("/")[1]) for v in triggered_run["spec"]["triggeredBy"])


def upstream_run(cluster: Cluster, namespace: str, name: str, pipeline_name: str) -> None:
    """Run an upstream pipeline once and wait until its versions are in the lineage store."""
    cluster.apply(run(name, pipeline_name), namespace=namespace)
    wait_run(cluster, namespace, name)

    def recorded() -> bool:
        conds = (cluster.get("pipelinerun", name, namespace).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Recorded" and c["status"] == "True" for c in conds)
    wait_for(recorded, timeout=120, message=f"{name} to be recorded")


def wait_triggered(cluster: Cluster, namespace: str, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    wait_for(lambda: len(triggered(cluster, namespace)) >= count, timeout=timeout,
             message=f"{count} dataset-triggered runs")
    return triggered(cluster, namespace)


def complete_event(run_id: str, dataset: str, producer: str = "https://github.com/dbt-labs/dbt-core"
                   ) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(), "producer": producer,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
        "run": {"runId": run_id}, "job": {"namespace": "dbt", "name": f"jaffle_shop.{dataset}"},
        "inputs": [], "outputs": [{"namespace": WH, "name": dataset}],
    }


def post_event(port: int, event: dict[str, Any]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/lineage", data=json.dumps(event).encode(),
                                     method="POST", headers={"Authorization": f"Bearer {WRITE_TOKEN}",
                                                             "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_mode_all_across_two_upstream_pipelines_fires_exactly_once_per_new_input_pair(
        cluster: Cluster, namespace: str, trigger_operator: OperatorProcess) -> None:
    cluster.apply(upstream("revenue", REVENUE), upstream("orders", ORDERS), reporting("all", REVENUE, ORDERS),
                  namespace=namespace)
    ready(cluster, namespace, "reporting")
    upstream_run(cluster, namespace, "revenue-1", "revenue")
    upstream_run(cluster, namespace, "orders-1", "orders")
    first = wait_triggered(cluster, namespace, 1)
    assert [inputs_of(r) for r in first] == [[(ORDERS, "orders-1"), (REVENUE, "revenue-1")]]
    upstream_run(cluster, namespace, "revenue-2", "revenue")  # half a pair: nothing fires
    upstream_run(cluster, namespace, "orders-2", "orders")
    both = wait_triggered(cluster, namespace, 2)
    assert [inputs_of(r) for r in both] == [[(ORDERS, "orders-1"), (REVENUE, "revenue-1")],
                                           [(ORDERS, "orders-2"), (REVENUE, "revenue-2")]]
    finished = wait_run(cluster, namespace, both[1]["metadata"]["name"])
    assert finished["status"]["phase"] == "Succeeded"
    assert inputs_of({"spec": finished["status"]}) == inputs_of(both[1])  # the status says it too


def trigger_metrics(operator: OperatorProcess, namespace: str, pipeline_name: str) -> dict[str, float]:
    """The Pipeline's trigger series on the operator's /metrics, by metric name."""
    labels = f'{{namespace="{namespace}",pipeline="{pipeline_name}"}}'
    return {name.removesuffix(labels): value for name, value in
            scrape(int(operator.env["HEADWATER_METRICS_PORT"])).items()
            if name.startswith("headwater_trigger_") and name.endswith(labels)}


def test_mode_any_fires_once_per_update(cluster: Cluster, namespace: str, trigger_operator: OperatorProcess) -> None:
    cluster.apply(upstream("revenue", REVENUE), upstream("orders", ORDERS), reporting("any", REVENUE, ORDERS),
                  namespace=namespace)
    ready(cluster, namespace, "reporting")
    upstream_run(cluster, namespace, "revenue-1", "revenue")
    upstream_run(cluster, namespace, "orders-1", "orders")
    upstream_run(cluster, namespace, "revenue-2", "revenue")
    runs = wait_triggered(cluster, namespace, 3)
    assert sorted(inputs_of(r)[0] for r in runs) == [(ORDERS, "orders-1"), (REVENUE, "revenue-1"),
                                                     (REVENUE, "revenue-2")]
    counted = wait_for(lambda: (m := trigger_metrics(trigger_operator, namespace, "reporting")).get(
        "headwater_trigger_firings_total") == 3 and m, timeout=30, message="the three firings on /metrics")
    assert (counted["headwater_trigger_latency_seconds_count"], counted["headwater_trigger_failures_total"]) == (3, 0)


def test_an_openlineage_complete_event_from_dbt_for_a_declared_input_triggers_the_pipeline(
        cluster: Cluster, namespace: str, trigger_operator: OperatorProcess) -> None:
    cluster.apply(reporting("any", REVENUE), namespace=namespace)
    ready(cluster, namespace, "reporting")
    port = trigger_operator.api_port  # type: ignore[attr-defined]
    dbt_run = str(uuid.uuid4())
    event = complete_event(dbt_run, REVENUE)
    wait_for(lambda: post_event(port, event) in (200, 201, 202), timeout=60, message="the API to take the event")
    post_event(port, event)  # a replay of the same event changes nothing
    runs = wait_triggered(cluster, namespace, 1)
    assert [(v["name"], v["run"]) for v in runs[0]["spec"]["triggeredBy"]] == [(REVENUE, dbt_run)]
    assert wait_run(cluster, namespace, runs[0]["metadata"]["name"])["status"]["phase"] == "Succeeded"
    assert len(triggered(cluster, namespace)) == 1


@pytest.mark.timeout(1200)
def test_fifty_upstream_completions_in_ten_seconds_with_two_sigkills_trigger_exactly_fifty_runs(
        cluster: Cluster, namespace: str, trigger_operator: OperatorProcess, lineage_url: str) -> None:
    cluster.apply(reporting("any", REVENUE), namespace=namespace)
    ready(cluster, namespace, "reporting")
    upstream_runs = [str(uuid.uuid4()) for _ in range(50)]
    errors: list[BaseException] = []
    ingested: list[str] = []

    def complete_all() -> None:  # 50 COMPLETE events over 10 s, as upstream tools announce them
        try:
            with LineageStore.open(lineage_url, apply_migrations=False) as store:
                for run_id in paced(upstream_runs, 10.0):
                    store.ingest_openlineage(complete_event(run_id, REVENUE))
                    ingested.append(run_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    writer = threading.Thread(target=complete_all)
    writer.start()
    for after in (12, 30):  # two SIGKILLs while completions arrive, at points set by the events stored
        wait_for(lambda after=after: len(ingested) >= after or errors, timeout=120,
                 message=f"{after} completions stored")
        trigger_operator.kill()
        trigger_operator.start()
    writer.join(timeout=60)
    assert errors == []
    runs = wait_triggered(cluster, namespace, 50, timeout=600)
    assert sorted(v["run"] for r in runs for v in r["spec"]["triggeredBy"]) == sorted(upstream_runs)
    assert len(runs) == 50
    with LineageStore.open(lineage_url, apply_migrations=False) as store, store.transaction() as conn:
        row = conn.execute("SELECT count(*), count(confirmed_at) FROM trigger_firings").fetchone()
    assert row == (50, 50)
    assert trigger_operator.starts == 3
