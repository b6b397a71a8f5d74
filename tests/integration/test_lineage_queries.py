"""Upstream, downstream, explain, datasets and runs over the revenue example, on a real PostgreSQL."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from headwater.lineage import (
    AmbiguousDatasetError,
    DatasetNotFoundError,
    DatasetRef,
    DatasetVersionRecord,
    EdgeRecord,
    LineageGraph,
    LineageStore,
    RunNotFoundError,
    queries,
)
from headwater.lineage.queries import Cursor
from headwater.lineage.records import dataset_key
from lineage_support import (
    ORDERS_SOURCE,
    STRIPE_SOURCE,
    WAREHOUSE,
    record_revenue_day,
    wh,
)

pytestmark = pytest.mark.integration

DAY1 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


@pytest.fixture
def revenue(store: LineageStore) -> LineageStore:
    """Two days of both pipelines, every step succeeding with the usual row counts."""
    record_revenue_day(store, DAY1)
    record_revenue_day(store, DAY2)
    return store


def _depths(graph: LineageGraph) -> dict[DatasetRef, int]:
    return {n.dataset: n.depth for n in graph.nodes}


def test_upstream_of_business_metrics_reaches_the_sources_with_their_depths(revenue: LineageStore) -> None:
    graph = revenue.upstream("analytics.business_metrics")
    assert _depths(graph) == {
        wh("analytics.daily_revenue"): 1, wh("raw.orders"): 2, wh("raw.stripe_payments"): 2,
        ORDERS_SOURCE: 3, STRIPE_SOURCE: 3,
    }
    steps = {(e.input.name, e.output.name): (e.pipeline, e.step) for e in graph.edges}
    transform = ("revenue-pipeline", "transform-revenue")
    assert steps[("raw.stripe_payments", "analytics.daily_revenue")] == transform
    assert steps[("payments", "raw.stripe_payments")] == ("revenue-pipeline", "extract-payments")
    assert len(graph.edges) == 5


def test_downstream_of_stripe_payments_crosses_into_the_reporting_pipeline(revenue: LineageStore) -> None:
    graph = revenue.downstream("raw.stripe_payments")
    assert _depths(graph) == {
        wh("analytics.daily_revenue"): 1, wh("analytics.business_metrics"): 2,
        wh("reporting.revenue_dashboard"): 2,
    }
    assert {e.pipeline for e in graph.edges} == {"revenue-pipeline", "revenue-reporting"}


def test_depth_limits_the_walk(revenue: LineageStore) -> None:
    graph = revenue.upstream("analytics.business_metrics", depth=1)
    assert _depths(graph) == {wh("analytics.daily_revenue"): 1}
    assert [(e.input.name, e.output.name) for e in graph.edges] == [
        ("analytics.daily_revenue", "analytics.business_metrics")
    ]


def test_depth_outside_one_to_a_hundred_is_refused(revenue: LineageStore) -> None:
    for depth in (0, 101):
        with pytest.raises(ValueError, match="depth must be between 1 and 100"):
            revenue.upstream("raw.orders", depth=depth)


def test_lineage_with_cycles_terminates_and_reports_each_dataset_once(store: LineageStore) -> None:
    ring = [wh(f"ring.{i}") for i in range(5)]
    for i, dataset in enumerate(ring):
        store.record(EdgeRecord("r", "loop", f"s{i}", (dataset,), (ring[(i + 1) % 5],)))
    store.record(EdgeRecord("r", "loop", "self", (ring[0],), (ring[0],)))
    graph = store.downstream("ring.0", depth=100)
    assert _depths(graph) == {ring[1]: 1, ring[2]: 2, ring[3]: 3, ring[4]: 4}
    assert len(graph.edges) == 6
    assert _depths(store.upstream("ring.0", depth=2)) == {ring[4]: 1, ring[3]: 2}


def test_a_dense_diamond_lattice_is_walked_without_path_explosion(store: LineageStore) -> None:
    layers = [[wh(f"l{layer}.{i}") for i in range(6)] for layer in range(40)]
    for layer, (above, below) in enumerate(itertools.pairwise(layers)):
        store.record(EdgeRecord("r", "lattice", f"s{layer}", tuple(above), tuple(below)))
    graph = store.downstream("l0.0", depth=100)  # 6^39 paths; (dataset, depth) pairs: 39 x 6
    assert len(graph.nodes) == 39 * 6
    assert max(n.depth for n in graph.nodes) == 39


def _reference(edges: set[tuple[DatasetRef, str, DatasetRef]], root: DatasetRef, direction: str,
               depth: int) -> tuple[dict[DatasetRef, int], set[tuple[DatasetRef, str, DatasetRef]]]:
    """A breadth-first walk in Python: each dataset at its smallest depth, and the edges the walk followed."""
    near, far = (2, 0) if direction == "upstream" else (0, 2)
    depths = {root: 0}
    frontier = [root]
    for hop in range(1, depth + 1):
        frontier = sorted({e[far] for e in edges if e[near] in frontier and e[far] not in depths}, key=repr)
        depths.update(dict.fromkeys(frontier, hop))
    followed = {e for e in edges if depths.get(e[near], depth) < depth and e[far] in depths}
    return depths, followed


@pytest.mark.parametrize("direction", ["upstream", "downstream"])
def test_the_pages_of_a_tangled_graph_join_to_a_breadth_first_walk_of_its_edges(
        store: LineageStore, direction: str) -> None:
    rng = random.Random(11)
    datasets = [wh(f"t.{i}") for i in range(40)]
    edges = {(rng.choice(datasets), f"s{rng.randrange(4)}", rng.choice(datasets)) for _ in range(120)}
    for i, step, o in edges:  # cycles, self-loops, several jobs between the same datasets
        store.record(EdgeRecord("r", "tangle", step, (i,), (o,)))
    for root, depth in [(datasets[0], 3), (datasets[7], 100), (datasets[13], 1)]:
        nodes: list[tuple[int, DatasetRef]] = []
        found: list[tuple[DatasetRef, str, DatasetRef]] = []
        cursor = None
        while True:
            walk = store.upstream if direction == "upstream" else store.downstream
            page = walk(root.name, namespace=root.namespace, depth=depth, limit=7, cursor=cursor)
            nodes += [(n.depth, n.dataset) for n in page.nodes]
            found += [(e.input, e.step, e.output) for e in page.edges]
            assert len(page.nodes) <= 7 and len(page.edges) <= 7
            if page.next_cursor is None:
                break
            cursor = Cursor.decode(page.next_cursor)
        depths, followed = _reference(edges, root, direction, depth)
        assert {d: n for n, d in nodes} == {d: n for d, n in depths.items() if d != root}
        assert len(nodes) == len(depths) - 1 and [n for n, _ in nodes] == sorted(n for n, _ in nodes)
        assert sorted(found, key=repr) == sorted(followed, key=repr)


def _wide_layers(conn: psycopg.Connection[Any], width: int, layers: int) -> int:
    """``layers`` layers of ``width`` datasets, each after the first written from two of the layer before; the
    first dataset's id.  Loaded with COPY and analysed, so the planner knows the table is not small."""
    names = [f"w{layer}.{k}" for layer in range(layers) for k in range(width)]
    with conn.cursor() as cur:
        with cur.copy("COPY datasets (ident, namespace, name) FROM STDIN") as copy:
            for name in names:
                copy.write_row((dataset_key(WAREHOUSE, name), WAREHOUSE, name))
        ids = dict(cur.execute("SELECT name, id FROM datasets WHERE name LIKE 'w%'").fetchall())
        with cur.copy("COPY jobs (ident, pipeline, step) FROM STDIN") as copy:
            for name in names[width:]:
                copy.write_row((dataset_key("wide", name), "wide", name))
        jobs = dict(cur.execute("SELECT step, id FROM jobs WHERE pipeline = 'wide'").fetchall())
        with cur.copy("COPY lineage_edges (input_id, job_id, output_id, first_seen, last_seen, last_run_id) "
                      "FROM STDIN") as copy:
            for layer in range(1, layers):
                for k in range(width):
                    out = f"w{layer}.{k}"
                    for near in {k, (k + 1) % width}:
                        copy.write_row((ids[f"w{layer - 1}.{near}"], jobs[out], ids[out], DAY1, DAY1, "r"))
    conn.execute("ANALYZE")
    return int(ids["w0.0"])


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.parametrize("direction", ["upstream", "downstream"])
def test_a_prepared_graph_page_sorts_the_edges_it_found_rather_than_scanning_all_edges_in_order(
        store: LineageStore, direction: str) -> None:
    """A page's statement is prepared after a few calls and PostgreSQL may then keep one generic plan for it:
    that plan too must find the edges through the walk and sort them, not read every edge in key order until the
    page is full (with a few thousand edges, a generic plan did that and took 10-20 times longer)."""
    statement = queries._GRAPH_UP if direction == "upstream" else queries._GRAPH_DOWN
    with store.transaction() as conn:
        root = _wide_layers(conn, width=200, layers=10)
        params = {"root": root, "depth": 10, "limit": 1001, "nodes": True, "node_depth": 0, "node_id": 0,
                  "edges": True, "i": 0, "j": 0, "o": 0}
        text = statement
        for k, name in enumerate(params, 1):
            text = text.replace(f"%({name})s", f"${k}")
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE graph_page AS {text}")
        explained = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE graph_page ({})").format(
            sql.SQL(", ").join(sql.Literal(v) for v in params.values()))).fetchone()
    assert explained is not None
    nodes = list(_plan_nodes(explained[0][0]["Plan"]))
    page = next(n for n in nodes if n.get("Subplan Name") == "CTE edges")
    assert page["Node Type"] == "Limit"
    assert [n["Node Type"] for n in page["Plans"]] == ["Sort"]


def test_unknown_dataset_is_not_found(revenue: LineageStore) -> None:
    with pytest.raises(DatasetNotFoundError, match="no dataset named 'nope'"):
        revenue.upstream("nope")
    with pytest.raises(DatasetNotFoundError):
        revenue.dataset("raw.orders", namespace="postgres://elsewhere")


def test_a_name_in_two_namespaces_needs_its_namespace(revenue: LineageStore) -> None:
    twin = DatasetRef("s3://lake", "raw.orders")
    revenue.record(EdgeRecord("r", "lake", "copy", (wh("raw.orders"),), (twin,)))
    with pytest.raises(AmbiguousDatasetError) as caught:
        revenue.upstream("raw.orders")
    assert caught.value.candidates == [wh("raw.orders"), twin]
    assert _depths(revenue.upstream("raw.orders", namespace="s3://lake", depth=1)) == {wh("raw.orders"): 1}


def test_explain_points_first_at_the_extract_that_wrote_forty_percent_fewer_rows(store: LineageStore) -> None:
    record_revenue_day(store, DAY1)
    record_revenue_day(store, DAY2, rows={"extract-payments": 600, "transform-revenue": 29})
    answer = store.explain("analytics.business_metrics", now=DAY2 + timedelta(hours=2))
    first = answer.nodes[0]
    assert first.dataset == wh("raw.stripe_payments")
    assert first.row_count_change_pct == -40.0
    assert [r.code for r in first.reasons] == ["row_count_drop"]
    assert first.latest_version is not None and first.latest_version.step == "extract-payments"
    assert first.producer_run_phase == "Succeeded"
    assert {n.dataset for n in answer.nodes} == {
        wh("analytics.business_metrics"), wh("analytics.daily_revenue"), wh("raw.orders"),
        wh("raw.stripe_payments"), ORDERS_SOURCE, STRIPE_SOURCE,
    }


def test_explain_ranks_a_failed_upstream_step_first(store: LineageStore) -> None:
    record_revenue_day(store, DAY1)
    run_id = record_revenue_day(store, DAY2, rows={"extract-payments": 500},
                                failed=frozenset({"extract-orders"}))
    answer = store.explain("analytics.business_metrics", now=DAY2 + timedelta(hours=2))
    first = answer.nodes[0]
    assert first.dataset == wh("raw.orders")
    assert [(s.step, s.phase, s.run_id) for s in first.failed_steps] == [("extract-orders", "Failed", run_id)]
    assert first.reasons[0].code == "producer_failed"
    skipped = {n.dataset.name for n in answer.nodes if n.reasons and n.reasons[0].code == "producer_skipped"}
    assert skipped == {"analytics.daily_revenue", "analytics.business_metrics"}
    assert answer.nodes[1].score == answer.nodes[2].score == 90.0
    assert answer.nodes[3].dataset == wh("raw.stripe_payments")  # a 50 % drop ranks below the failures


def test_explain_reports_a_schema_change_and_staleness(store: LineageStore) -> None:
    for day, fingerprint in ((DAY1, "v1"), (DAY2, "v2")):
        store.record(DatasetVersionRecord(wh("t"), f"r{day:%d}", "p", "s", day, 10, fingerprint))
    node = store.explain("t", now=DAY2 + timedelta(days=3)).nodes[0]
    assert node.schema_changed
    assert [r.code for r in node.reasons] == ["schema_changed", "stale"]
    assert node.age_seconds == timedelta(days=3).total_seconds()


def test_datasets_lists_each_with_its_latest_write(revenue: LineageStore) -> None:
    listed = {s.dataset: s for s in revenue.datasets()}
    assert len(listed) == 7
    latest = listed[wh("raw.orders")].latest
    assert latest is not None
    assert (latest.run_id, latest.step, latest.row_count) == (
        "data/revenue-20261123-0600", "extract-orders", 5000)
    assert listed[STRIPE_SOURCE].latest is None
    assert [s.dataset for s in revenue.datasets(limit=2, offset=1)] == sorted(listed)[1:3]


def test_dataset_detail_names_its_producers_consumers_and_versions(revenue: LineageStore) -> None:
    detail = revenue.dataset("analytics.daily_revenue", namespace=WAREHOUSE)
    assert [(j.pipeline, j.step) for j in detail.producers] == [("revenue-pipeline", "transform-revenue")]
    assert [(j.pipeline, j.step) for j in detail.consumers] == [
        ("revenue-pipeline", "aggregate-metrics"), ("revenue-reporting", "build-dashboard"),
    ]
    assert [v.run_id for v in detail.versions] == ["data/revenue-20261123-0600", "data/revenue-20261122-0600"]


def test_a_run_lists_its_steps_and_an_unknown_run_is_not_found(store: LineageStore) -> None:
    run_id = record_revenue_day(store, DAY1, failed=frozenset({"extract-payments"}))
    run = store.run(run_id)
    assert run.phase == "Failed"
    assert [(s.step, s.phase) for s in run.steps] == [
        ("extract-orders", "Succeeded"), ("extract-payments", "Failed"),
        ("transform-revenue", "Skipped"), ("aggregate-metrics", "Skipped"),
    ]
    with pytest.raises(RunNotFoundError):
        store.run("data/nope")
