"""The lineage API is secure by default, bounded, and never poisoned by one event (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from aiohttp import ClientTimeout
from aiohttp.test_utils import TestClient, TestServer

from api_support import READ, WRITE, Client, bearer, get, post_event, post_json, serve
from headwater.lineage import DatasetRef, EdgeRecord, LineageStore, build_run_event
from headwater.lineage.api import ApiAuth, create_app
from helpers import fresh_database, wait_for
from lineage_support import WAREHOUSE, wh

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
PROBES = ["/livez", "/healthz", "/readyz"]


def _complete(inputs: list[str], outputs: list[str], when: str | None = None) -> dict[str, Any]:
    event = build_run_event("COMPLETE", run_id="ns/r1", pipeline="etl", step="load", event_time=NOW,
                            inputs=[wh(n) for n in inputs], outputs=[wh(n) for n in outputs])
    if when is not None:
        event["eventTime"] = when
    return event


# --- authentication ----------------------------------------------------------------------------------

def test_without_tokens_only_the_probes_answer(store: LineageStore) -> None:
    """create_app's default (and the operator's without tokens): required tokens, none set."""
    closed = ApiAuth()
    for path in PROBES:
        assert get(store, path, headers={}, auth=closed)[0] == 200, path
    status, body = get(store, "/v1/datasets", headers=bearer("anything"), auth=closed)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert "no read token configured" in body["error"]["message"]
    status, body = post_json(store, "/api/v1/lineage", _complete(["a"], ["b"]), headers=bearer(WRITE), auth=closed)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert set(store.counts().values()) == {0}


@pytest.mark.parametrize("path", PROBES)
def test_the_probes_answer_without_a_token_when_tokens_are_set(store: LineageStore, path: str) -> None:
    assert get(store, path, headers={}) == (200, {"status": "alive" if path == "/livez" else "ok"})


def test_the_write_token_cannot_read_and_the_read_token_cannot_write(store: LineageStore) -> None:
    status, body = get(store, "/v1/datasets", headers=bearer(WRITE))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = post_json(store, "/api/v1/lineage", _complete(["a"], ["b"]), headers=bearer(READ))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert post_json(store, "/api/v1/lineage", _complete(["a"], ["b"]), headers={})[0] == 401
    assert set(store.counts().values()) == {0}
    assert post_event(store, _complete(["a"], ["b"]))[0] == 201
    assert get(store, "/v1/lineage/upstream/b")[0] == 200


def test_with_auth_switched_off_every_route_is_open(store: LineageStore) -> None:
    opened = ApiAuth(enabled=False)
    assert post_json(store, "/api/v1/lineage", _complete(["a"], ["b"]), headers={}, auth=opened)[0] == 201
    assert get(store, "/v1/lineage/upstream/b", headers={}, auth=opened)[0] == 200


# --- one event never poisons a dataset ------------------------------------------------------------------

@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "1969-07-20T20:17:40Z"])
def test_an_event_time_out_of_range_is_refused_and_reads_keep_working(store: LineageStore, when: str) -> None:
    assert post_event(store, _complete(["a"], ["b"]))[0] == 201
    status, body = post_event(store, _complete(["a"], ["b"], when))
    assert (status, body["error"]["code"]) == (400, "invalid_event")
    assert "eventTime: must be between 1970-01-01T00:00:00Z and" in body["error"]["message"]
    for path in ["/v1/lineage/upstream/b", "/v1/lineage/downstream/a", "/v1/explain/b", "/v1/datasets",
                 "/v1/datasets/b"]:
        assert get(store, path)[0] == 200, path


def test_an_event_of_more_than_ten_thousand_edges_is_refused_whole(store: LineageStore) -> None:
    status, body = post_event(store, _complete([f"in{i}" for i in range(101)], [f"out{o}" for o in range(100)]))
    assert (status, body["error"]["code"]) == (400, "invalid_event")
    assert "at most 10000 lineage edges per event (got 101 distinct inputs x 100 distinct outputs = 10100)" in (
        body["error"]["message"])
    assert set(store.counts().values()) == {0}


# --- graph answers are pages ----------------------------------------------------------------------------

@pytest.fixture
def fan(store: LineageStore) -> LineageStore:
    """root -> 30 datasets, each of them -> root (a cycle): 30 nodes and 60 edges around root."""
    outs = tuple(wh(f"o{k:02d}") for k in range(30))
    store.record(EdgeRecord("r1", "p", "fan-out", (wh("root"),), outs),
                 *(EdgeRecord("r1", "p", f"back-{k}", (o,), (wh("root"),)) for k, o in enumerate(outs)))
    return store


def _pages(store: LineageStore, path: str, limit: int) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = f"&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, page = get(store, path + query)
        assert status == 200, page
        pages.append(page)
        cursor = page["nextCursor"]
        if not page["truncated"]:
            assert cursor is None
            return pages
        assert len(pages) < 100


def _edge(e: dict[str, Any]) -> tuple[str, str, str]:
    return e["input"]["name"], e["step"], e["output"]["name"]


def test_a_graph_larger_than_the_limit_is_truncated_and_paged_through_completely(fan: LineageStore) -> None:
    status, whole = get(fan, "/v1/lineage/downstream/root?depth=2")
    assert status == 200 and not whole["truncated"] and whole["nextCursor"] is None
    assert (len(whole["nodes"]), len(whole["edges"])) == (30, 60)
    pages = _pages(fan, "/v1/lineage/downstream/root?depth=2", 7)
    assert pages[0]["truncated"] is True and pages[0]["limit"] == 7
    assert all(len(p["nodes"]) <= 7 and len(p["edges"]) <= 7 for p in pages)
    nodes = [n["dataset"]["name"] for p in pages for n in p["nodes"]]
    edges = [_edge(e) for p in pages for e in p["edges"]]
    assert sorted(nodes) == sorted(n["dataset"]["name"] for n in whole["nodes"]) and len(set(nodes)) == 30
    assert sorted(edges) == sorted(_edge(e) for e in whole["edges"]) and len(set(edges)) == 60


def test_explain_scores_at_most_limit_datasets_and_says_it_was_truncated(fan: LineageStore) -> None:
    status, body = get(fan, "/v1/explain/root?limit=5")
    assert status == 200
    assert body["truncated"] is True and body["limit"] == 5
    assert len(body["nodes"]) == 6  # the root itself and the nearest 5


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=x", "cursor=bm9wZQ", "cursor=%00",
                                   "cursor=eyJuIjpbMSwtMV0sImUiOm51bGx9"])
def test_a_bad_limit_or_cursor_is_a_bad_request(fan: LineageStore, query: str) -> None:
    status, body = get(fan, f"/v1/lineage/upstream/root?{query}")
    assert (status, body["error"]["code"]) == (400, "bad_request")


# --- every query under a statement timeout ------------------------------------------------------------

@pytest.fixture
def impatient_store(database_url: str) -> Iterator[tuple[LineageStore, str]]:
    with fresh_database(database_url) as url, LineageStore.open(url, statement_timeout=0.3) as opened:
        yield opened, url


def test_a_query_that_runs_past_the_statement_timeout_answers_422_naming_it(
        impatient_store: tuple[LineageStore, str]) -> None:
    store, url = impatient_store
    store.record(EdgeRecord("r", "p", "s", (wh("a"),), (wh("b"),)))
    with psycopg.connect(url) as blocker:  # holds every reader of datasets until this transaction ends
        blocker.execute("LOCK TABLE datasets IN ACCESS EXCLUSIVE MODE")
        status, body = get(store, "/v1/lineage/upstream/b")
    assert (status, body["error"]["code"]) == (422, "query_timeout")
    assert "statement_timeout (0.3 s)" in body["error"]["message"]
    assert get(store, "/v1/lineage/upstream/b")[0] == 200


# --- any dataset name can be asked for -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["line\nbreak", "tab\there", "x" * 9000, "%2F/?#;'\"", "漢字\u2028"])
def test_a_name_of_any_length_and_content_is_queryable(store: LineageStore, name: str) -> None:
    store.record(EdgeRecord("r", "p", "s", (wh(name),), (wh("out"),)))
    for kind in ("downstream", "dataset", "explain"):
        status, body = post_json(store, f"/v1/query/{kind}", {"name": name, "namespace": WAREHOUSE})
        assert status == 200, (kind, body)
        assert body["dataset"]["name"] == name
    if len(name) < 4000:  # within a URL's limits the path form works too
        status, body = get(store, f"/v1/lineage/downstream/{quote(name, safe='')}")
        assert (status, [n["dataset"]["name"] for n in body["nodes"]]) == (200, ["out"])


@pytest.mark.parametrize("path", ["/v1/datasets/a%00b", "/v1/lineage/upstream/a%00b", "/v1/runs/r%00",
                                  "/v1/datasets/a?namespace=x%00y"])
def test_a_name_postgresql_cannot_hold_is_not_found(store: LineageStore, path: str) -> None:
    status, body = get(store, path)
    assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("document", [{"name": "a\u0000b"}, {"name": "\ud800"}, {"name": "a", "namespace": "\ud800"}])
def test_a_posted_name_postgresql_cannot_hold_is_not_found(store: LineageStore, document: dict[str, str]) -> None:
    assert post_json(store, "/v1/query/upstream", document)[0] == 404


@pytest.mark.parametrize("document", [[], {"name": ""}, {"name": 3}, {"name": "a", "depth": "deep"},
                                      {"name": "a", "extra": 1}, {"name": "a", "limit": True}])
def test_a_posted_query_that_is_not_one_is_a_bad_request(store: LineageStore, document: object) -> None:
    status, body = post_json(store, "/v1/query/upstream", document)
    assert (status, body["error"]["code"]) == (400, "bad_request")


# --- the API never waits on the operator's threads --------------------------------------------------------

def test_the_api_answers_while_the_event_loops_default_executor_is_busy(store: LineageStore) -> None:
    """The operator's periodic loops run on the default executor; the API must not queue behind them."""
    store.record(EdgeRecord("r", "p", "s", (wh("a"),), (wh("b"),)))

    async def scenario(client: Client) -> int:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        gate = threading.Event()
        busy = [loop.run_in_executor(None, gate.wait) for _ in range(2)]
        try:
            async with client.get("/v1/lineage/upstream/b", headers=bearer(READ),
                                  timeout=ClientTimeout(total=20)) as response:
                return response.status
        finally:
            gate.set()
            await asyncio.gather(*busy)

    assert serve(store, scenario) == 200


def _api_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lineage-api") and t.is_alive()]


def test_the_api_stops_its_threads_with_the_application(store: LineageStore) -> None:
    async def main() -> None:
        async with TestClient(TestServer(create_app(store, auth=ApiAuth(enabled=False)), host="127.0.0.1")) as c:
            async with c.get("/v1/datasets") as response:
                assert response.status == 200
            assert _api_threads()

    asyncio.run(main())
    wait_for(lambda: not _api_threads(), timeout=10, message="the API's threads to end")


def test_event_times_up_to_a_day_ahead_are_accepted(store: LineageStore) -> None:
    soon = (NOW + timedelta(hours=23)).isoformat()
    assert post_event(store, _complete(["a"], ["b"], soon))[0] == 201
    assert DatasetRef(WAREHOUSE, "b") in {n.dataset for n in store.downstream("a").nodes}
