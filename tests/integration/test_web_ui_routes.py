"""The web UI's routes over a real PostgreSQL: the page needs no token and holds no data; every data route
it calls needs the read token like the rest of the API, and answers bounded JSON."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api_support import AUTH, READ, WRITE, bearer, get
from browser_support import DROP_CHECK, seed_checks, seed_demo
from headwater.lineage import DatasetVersionRecord, EdgeRecord, LineageStore, RunRecord
from headwater.lineage.api import ApiAuth, create_app
from headwater.lineage.records import CheckRecord
from headwater.lineage.ui import WebUi
from headwater.lineage.views import MAX_CHECK_TEXT, MAX_NODE_CHECKS
from headwater.sla.board import freshness_board
from lineage_support import wh

pytestmark = pytest.mark.integration

DATA_ROUTES = ["/v1/graph/analytics.business_metrics", "/v1/columns/analytics.business_metrics", "/v1/runs",
               "/v1/search?q=revenue", "/v1/flow?pipeline=revenue-pipeline", "/v1/freshness",
               "/v1/datasets/analytics.business_metrics", "/v1/explain/analytics.business_metrics"]
UI = WebUi({"index.html": (b"<!doctype html><title>Headwater</title>", "text/html"),
            "app.js": (b"console.log('ui')", "text/javascript")})


def fetch(store: LineageStore, path: str, headers: dict[str, str] | None = None, *, ui: WebUi = UI,
          auth: ApiAuth = AUTH) -> tuple[int, dict[str, str], bytes]:
    """One GET of ``path`` with any answer (HTML too): status, headers and body."""
    async def main() -> tuple[int, dict[str, str], bytes]:
        async with TestClient(TestServer(create_app(store, auth=auth, ui=ui), host="127.0.0.1")) as client, \
                client.get(path, headers=headers or {}, allow_redirects=False) as response:
            return response.status, dict(response.headers), await response.read()

    return asyncio.run(main())


@pytest.fixture
def demo(store: LineageStore) -> LineageStore:
    seed_demo(store, day3_failure=True)
    return store


@pytest.mark.parametrize("path", DATA_ROUTES)
def test_every_data_route_of_the_ui_needs_the_read_token(demo: LineageStore, path: str) -> None:
    assert get(demo, path, headers={})[0] == 401
    assert get(demo, path, headers=bearer("Bearer nope"))[0] == 401
    status, body = get(demo, path, headers=bearer(WRITE))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert get(demo, path)[0] == 200


@pytest.mark.parametrize("path", ["/ui/", "/ui/app.js"])
def test_the_page_and_its_script_need_no_token_and_forbid_foreign_scripts_and_framing(
        demo: LineageStore, path: str) -> None:
    status, headers, body = fetch(demo, path)
    assert status == 200 and body in {content for content, _ in UI.files.values()}
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/ui/../v1/datasets", "/ui/%2e%2e/v1/datasets", "/ui/..%2fv1%2fdatasets",
                                  "/ui/%2e%2e%2fv1%2fdatasets", "/ui//v1/datasets", "/ui/app.js/../../v1/runs",
                                  "/ui/..%5cv1%5cdatasets", "/ui/.built-x", "/ui/missing.js"])
def test_no_path_through_the_ui_reaches_data_without_the_token(demo: LineageStore, path: str) -> None:
    status, _, body = fetch(demo, path)
    assert status in (401, 404), (status, body[:200])
    assert b"business_metrics" not in body and b"stripe" not in body


def test_ui_without_the_slash_redirects_to_the_page(demo: LineageStore) -> None:
    status, headers, _ = fetch(demo, "/ui")
    assert (status, headers["Location"]) == (302, "/ui/")


def test_an_installation_without_the_built_ui_says_how_to_build_it(demo: LineageStore) -> None:
    status, _, body = fetch(demo, "/ui/", ui=WebUi({}))
    assert status == 404 and b"ui_not_built" in body and b"hack/build-ui.sh" in body


def test_the_packaged_ui_is_built_and_served(demo: LineageStore) -> None:
    """hack/setup.sh builds the UI; the package serves exactly the built files."""
    built = WebUi.packaged()
    assert {"index.html", "app.js", "app.css"} <= set(built.files)
    status, headers, body = fetch(demo, "/ui/", ui=built)
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"app.js" in body


def test_the_runs_listing_is_newest_first_and_bounded(store: LineageStore) -> None:
    ids = seed_demo(store, day3_failure=True)
    status, page = get(store, "/v1/runs?limit=2")
    assert status == 200 and len(page["runs"]) == 2
    status, only = get(store, "/v1/runs?pipeline=revenue-pipeline&limit=500")
    assert status == 200 and {r["pipeline"] for r in only["runs"]} == {"revenue-pipeline"}
    days = [r["id"] for r in only["runs"] if r["id"] in ids.values()]
    assert days == [ids["day3"], ids["day2"], ids["day1"]]
    second = get(store, "/v1/runs?pipeline=revenue-pipeline&limit=1&offset=1")[1]["runs"]
    assert [r["id"] for r in second] == [only["runs"][1]["id"]]
    status, body = get(store, "/v1/runs?limit=501")
    assert (status, body["error"]["code"]) == (400, "bad_request") and "500" in body["error"]["message"]


def test_the_runs_listing_narrows_to_one_namespace_of_same_named_pipelines(store: LineageStore) -> None:
    for namespace in ("team-a", "team-b"):
        store.record(RunRecord(f"{namespace}/etl-1/0000", "etl", namespace, "Succeeded", trigger="schedule",
                               started_at=datetime(2026, 11, 23, 6, tzinfo=UTC)))
    both = get(store, "/v1/runs?pipeline=etl")[1]["runs"]
    assert sorted(r["namespace"] for r in both) == ["team-a", "team-b"]
    status, one = get(store, "/v1/runs?pipeline=etl&namespace=team-b")
    assert status == 200 and [r["id"] for r in one["runs"]] == ["team-b/etl-1/0000"]
    assert get(store, "/v1/runs?namespace=team-a")[1]["runs"][0]["id"] == "team-a/etl-1/0000"


def test_search_finds_datasets_pipelines_and_runs_and_escapes_wildcards(demo: LineageStore) -> None:
    status, hits = get(demo, "/v1/search?q=business_metrics")
    assert status == 200 and [d["name"] for d in hits["datasets"]] == ["analytics.business_metrics"]
    assert get(demo, "/v1/search?q=%25")[1]["datasets"] == []  # a literal %, not "anything"
    assert get(demo, "/v1/search?q=REVENUE")[1]["pipelines"] == ["revenue-pipeline", "revenue-reporting"]
    assert get(demo, "/v1/search?q=" + "x" * 201)[0] == 400


def test_search_finds_two_teams_pipelines_of_one_name_as_two_hits_each_in_its_namespace(
        store: LineageStore) -> None:
    at = datetime(2026, 11, 23, 6, tzinfo=UTC)
    for namespace in ("team-b", "team-a"):
        run_id = f"{namespace}/etl-1/0000"
        store.record(RunRecord(run_id, "etl", namespace, "Succeeded", trigger="schedule", started_at=at),
                     EdgeRecord(run_id, "etl", "load", (wh("raw.x"),), (wh(f"{namespace}.y"),), seen_at=at,
                                namespace=namespace))
    store.record(EdgeRecord("0f3c9a1e-5d2b-4c8e-9f10-2a3b4c5d6e7f", "etl", "load", (wh("raw.x"),), (wh("dbt.y"),),
                            seen_at=at))  # the same name from an OpenLineage event: no namespace
    hits = get(store, "/v1/search?q=etl")[1]
    assert hits["pipelineRefs"] == [{"namespace": "", "name": "etl"}, {"namespace": "team-a", "name": "etl"},
                                    {"namespace": "team-b", "name": "etl"}]
    assert hits["pipelines"] == ["etl"]


def test_the_graph_gives_each_node_its_latest_write_and_row_change(demo: LineageStore) -> None:
    status, graph = get(demo, "/v1/graph/analytics.daily_revenue?depth=1")
    assert status == 200
    nodes = {n["dataset"]["name"]: n for n in graph["nodes"]}
    assert {name: n["depth"] for name, n in nodes.items()} == {
        "analytics.daily_revenue": 0, "raw.orders": -1, "raw.stripe_payments": -1,
        "analytics.business_metrics": 1, "reporting.revenue_dashboard": 1}
    assert nodes["raw.stripe_payments"]["rowCountChangePct"] == -40.0
    assert get(demo, "/v1/graph/analytics.daily_revenue?depth=101")[0] == 400


def test_column_lineage_comes_from_the_producers_openlineage_events(demo: LineageStore) -> None:
    status, columns = get(demo, "/v1/columns/analytics.business_metrics")
    assert status == 200
    assert {(link["inputField"], link["field"]) for link in columns["links"]} == {
        ("net_cents", "net_revenue_cents"), ("orders", "orders")}
    assert get(demo, "/v1/columns/raw.orders")[1]["links"] == []


def test_the_run_flow_links_the_steps_that_read_what_others_wrote(demo: LineageStore) -> None:
    status, flow = get(demo, "/v1/flow?pipeline=revenue-pipeline")
    assert status == 200
    assert {(link["from"], link["to"]) for link in flow["links"]} == {
        ("extract-orders", "transform-revenue"), ("extract-payments", "transform-revenue"),
        ("transform-revenue", "aggregate-metrics")}


def test_the_run_flow_never_links_a_same_named_pipeline_in_another_namespace(demo: LineageStore) -> None:
    demo.record(EdgeRecord("team-b/revenue-pipeline-1/0000", "revenue-pipeline", "report",
                           (wh("analytics.business_metrics"),), (wh("team_b.report"),), namespace="team-b"))
    status, flow = get(demo, "/v1/flow?pipeline=revenue-pipeline")
    assert status == 200
    assert {(link["from"], link["to"]) for link in flow["links"]} == {
        ("extract-orders", "transform-revenue"), ("extract-payments", "transform-revenue"),
        ("transform-revenue", "aggregate-metrics")}
    assert get(demo, "/v1/flow?pipeline=revenue-pipeline&namespace=team-b")[1]["links"] == []


def test_the_freshness_board_says_when_this_server_reads_no_pipelines(demo: LineageStore) -> None:
    status, board = get(demo, "/v1/freshness")
    assert status == 200 and board["available"] is False and "operator" in board["reason"]


def test_the_freshness_board_orders_stale_then_at_risk_and_keeps_open_incidents() -> None:
    now = datetime.now(UTC).isoformat()
    pipeline = {"metadata": {"name": "revenue", "namespace": "data"},
                "spec": {"steps": [{"id": "a", "outputs": [
                    {"namespace": "w", "name": "fresh", "freshness": {"maxAge": "1h"}},
                    {"namespace": "w", "name": "stale", "freshness": {"maxAge": "1h"}},
                    {"namespace": "w", "name": "risky", "freshness": {"deadline": "07:00"}},
                    {"namespace": "w", "name": "no-sla"}]}]},
                "status": {"datasets": [{"namespace": "w", "name": "fresh", "lastUpdated": now},
                                        {"namespace": "w", "name": "stale", "lastUpdated": now, "stale": True},
                                        {"namespace": "w", "name": "risky", "atRisk": "x failed",
                                         "atRiskSource": "data/x"}],
                           "alerts": [{"id": "1", "source": "data/x", "cause": "x failed"},
                                      {"id": "2", "source": "data/old", "cause": "over"}]}}
    board = freshness_board([pipeline, {"bad": []}, {"spec": "nonsense", "status": 3}])
    assert [(d["name"], d["state"]) for d in board["datasets"]] == [("stale", "stale"), ("risky", "at_risk"),
                                                                   ("fresh", "fresh")]
    assert [i["id"] for i in board["incidents"]] == ["1"]


def test_the_image_recipe_copies_the_built_ui() -> None:
    root = Path(__file__).resolve().parents[2]
    assert "ui_static/index.html" in (root / "Dockerfile").read_text()
    assert "lineage/ui_static/*" in (root / "pyproject.toml").read_text()


def test_a_board_whose_source_fails_answers_503_naming_it(demo: LineageStore) -> None:
    def broken() -> dict[str, object]:
        raise ConnectionError("apiserver away")

    async def main() -> tuple[int, dict[str, Any]]:
        app = create_app(demo, auth=AUTH, ui=UI, freshness=broken)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client, \
                client.get("/v1/freshness", headers=bearer(READ)) as response:
            return response.status, await response.json()

    status, body = asyncio.run(main())
    assert (status, body["error"]["code"]) == (503, "board_unavailable")
    assert "apiserver" not in body["error"]["message"]


def test_the_graph_marks_a_version_held_back_by_a_failed_check_and_one_with_a_warning(store: LineageStore) -> None:
    seed_demo(store)
    seed_checks(store)
    status, graph = get(store, "/v1/graph/analytics.daily_revenue?depth=1")
    assert status == 200
    nodes = {n["dataset"]["name"]: n for n in graph["nodes"]}
    stripe, orders, centre = nodes["raw.stripe_payments"], nodes["raw.orders"], nodes["analytics.daily_revenue"]
    assert (stripe["checkStatus"], stripe["published"]) == ("failed", False)
    assert stripe["failedChecks"] == [{"name": "no-drop", "kind": "change", "severity": "error",
                                       "observed": "28788 rows", "baseline": DROP_CHECK.baseline,
                                       "message": DROP_CHECK.message}]
    assert stripe["latest"]["rowCount"] == 28788  # the held-back version is the latest write, shown as such
    assert (orders["checkStatus"], orders["published"]) == ("warning", True)
    assert [c["name"] for c in orders["failedChecks"]] == ["enough-orders"]
    assert (centre["checkStatus"], centre["published"], centre["failedChecks"]) == (None, True, [])


def test_a_nodes_failed_checks_are_bounded_in_number_and_length(store: LineageStore) -> None:
    many = tuple(CheckRecord(f"check-{i:02d}", "rowCount", "warn", "Failed", observed="x" * 2000, message="m")
                 for i in range(MAX_NODE_CHECKS + 5))
    at = datetime(2026, 11, 30, tzinfo=UTC)
    store.record(EdgeRecord("data/r1", "p", "s", (wh("a"),), (wh("b"),), seen_at=at),
                 DatasetVersionRecord(wh("b"), "data/r1", "p", "s", at, 1, checks=many))
    nodes = {n["dataset"]["name"]: n for n in get(store, "/v1/graph/a?depth=1")[1]["nodes"]}
    checks = nodes["b"]["failedChecks"]
    assert [c["name"] for c in checks] == [f"check-{i:02d}" for i in range(MAX_NODE_CHECKS)]
    assert {len(c["observed"]) for c in checks} == {MAX_CHECK_TEXT}
    assert nodes["b"]["checkStatus"] == "warning"
