"""The lineage HTTP API on a real server on loopback, over a real PostgreSQL (with its tokens, as deployed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from api_support import READ, bearer, call, get, post_event
from headwater.lineage import DatasetRef, EdgeRecord, LineageStore, build_run_event
from lineage_support import WAREHOUSE, record_revenue_day, wh

pytestmark = pytest.mark.integration

DAY = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


@pytest.fixture
def revenue(store: LineageStore) -> LineageStore:
    record_revenue_day(store, DAY)
    return store


def _names(body: dict[str, Any]) -> dict[str, int]:
    return {n["dataset"]["name"]: n["depth"] for n in body["nodes"]}


def test_upstream_answers_nodes_with_depths_and_the_connecting_steps(revenue: LineageStore) -> None:
    status, body = get(revenue, "/v1/lineage/upstream/analytics.business_metrics?depth=2")
    assert status == 200
    assert body["dataset"] == {"namespace": WAREHOUSE, "name": "analytics.business_metrics"}
    assert _names(body) == {"analytics.daily_revenue": 1, "raw.orders": 2, "raw.stripe_payments": 2}
    assert {(e["pipeline"], e["step"]) for e in body["edges"]} == {
        ("revenue-pipeline", "aggregate-metrics"), ("revenue-pipeline", "transform-revenue"),
    }


def test_downstream_answers_across_pipelines(revenue: LineageStore) -> None:
    status, body = get(revenue, f"/v1/lineage/downstream/raw.stripe_payments?namespace={quote(WAREHOUSE)}")
    assert status == 200
    assert _names(body) == {"analytics.daily_revenue": 1, "analytics.business_metrics": 2,
                            "reporting.revenue_dashboard": 2}


@pytest.mark.parametrize("depth", ["0", "101", "-3", "ten", "1.5", ""])
def test_a_depth_outside_one_to_a_hundred_is_a_bad_request(revenue: LineageStore, depth: str) -> None:
    status, body = get(revenue, f"/v1/lineage/upstream/raw.orders?depth={depth}")
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert "depth must be an integer between 1 and 100" in body["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/lineage/upstream/missing", "/v1/lineage/downstream/missing",
                                  "/v1/datasets/missing", "/v1/explain/missing", "/v1/runs/data/missing"])
def test_unknown_datasets_and_runs_are_not_found(revenue: LineageStore, path: str) -> None:
    status, body = get(revenue, path)
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert "missing" in body["error"]["message"]


def test_an_unknown_route_answers_the_json_error_shape(revenue: LineageStore) -> None:
    status, body = get(revenue, "/v2/nothing")
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_an_ambiguous_name_answers_409_with_the_candidates(revenue: LineageStore) -> None:
    revenue.record(EdgeRecord("r", "lake", "copy", (wh("raw.orders"),), (DatasetRef("s3://lake",
                                                                                              "raw.orders"),)))
    status, body = get(revenue, "/v1/datasets/raw.orders")
    assert status == 409
    assert body["error"]["code"] == "ambiguous_dataset"
    assert body["error"]["candidates"] == [{"namespace": WAREHOUSE, "name": "raw.orders"},
                                           {"namespace": "s3://lake", "name": "raw.orders"}]
    status, body = get(revenue, "/v1/datasets/raw.orders?namespace=s3://lake")
    assert (status, body["dataset"]["namespace"]) == (200, "s3://lake")


def test_read_endpoints_require_the_bearer_token(revenue: LineageStore) -> None:
    assert get(revenue, "/v1/datasets", headers={})[0] == 401
    wrong = {"Authorization": "Bearer nope"}
    status, body = get(revenue, "/v1/datasets", headers=wrong)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert get(revenue, "/v1/datasets", headers=bearer(READ))[0] == 200


def test_datasets_run_and_explain_answer_json(revenue: LineageStore) -> None:
    status, listing = get(revenue, "/v1/datasets?limit=3")
    assert status == 200 and len(listing["datasets"]) == 3
    status, run = get(revenue, "/v1/runs/data/revenue-20261123-0600")
    assert (status, run["phase"], len(run["steps"])) == (200, "Succeeded", 4)
    status, explained = get(revenue, "/v1/explain/analytics.business_metrics")
    assert status == 200
    assert {n["dataset"]["name"] for n in explained["nodes"]} == {
        "analytics.business_metrics", "analytics.daily_revenue", "raw.orders", "raw.stripe_payments",
        "public.orders", "payments",
    }
    scores = [n["score"] for n in explained["nodes"]]
    assert scores == sorted(scores, reverse=True)


def test_hostile_names_round_trip_through_urls(store: LineageStore) -> None:
    name = "o'brien\"; DROP TABLE datasets; -- ü/漢字?#%20 & more"
    store.record(EdgeRecord("r", "p", "s", (wh(name),), (wh("out"),)))
    status, body = get(store, f"/v1/lineage/downstream/{quote(name, safe='')}")
    assert status == 200
    assert body["dataset"]["name"] == name
    assert _names(body) == {"out": 1}


def test_an_ingested_event_shows_up_in_upstream_and_downstream(store: LineageStore) -> None:
    event = build_run_event("COMPLETE", run_id="ns/r1", pipeline="etl", step="load", event_time=DAY,
                            inputs=[wh("raw.a")], outputs=[wh("clean.a")], row_counts={wh("clean.a"): 5})
    status, body = post_event(store, event)
    assert (status, body["duplicate"], body["eventType"]) == (201, False, "COMPLETE")
    assert _names(get(store, "/v1/lineage/upstream/clean.a")[1]) == {"raw.a": 1}
    assert _names(get(store, "/v1/lineage/downstream/raw.a")[1]) == {"clean.a": 1}


MALFORMED = [
    ({"eventType": "COMPLETE"}, "run: required"),
    ("drop", "run.runId: required"),
    ("bad-uuid", "run.runId: must be a UUID"),
    ("bad-type", "eventType: must be one of"),
    ("naive-time", "eventTime: must be an ISO 8601 date-time with a time zone"),
    ("nameless-output", "outputs[1].name: required"),
    ("negative-rows", "outputs[0].outputFacets.outputStatistics.rowCount: must be a non-negative integer"),
    ("nul", "job.name: must not contain NUL characters"),
]


def _malformed(kind: object) -> object:
    event = build_run_event("COMPLETE", run_id="ns/r1", pipeline="etl", step="load", event_time=DAY,
                            inputs=[wh("raw.a")], outputs=[wh("clean.a"), wh("clean.b")])
    if isinstance(kind, dict):
        return kind
    changes: dict[str, Callable[[], None]] = {
        "drop": lambda: event["run"].pop("runId"),
        "bad-uuid": lambda: event["run"].update(runId="not-a-uuid"),
        "bad-type": lambda: event.update(eventType="DONE"),
        "naive-time": lambda: event.update(eventTime="2026-11-23T06:00:00"),
        "nameless-output": lambda: event["outputs"][1].pop("name"),
        "negative-rows": lambda: event["outputs"][0].update(
            outputFacets={"outputStatistics": {"rowCount": -1}}),
        "nul": lambda: event["job"].update(name="lo\u0000ad"),
    }
    changes[str(kind)]()
    return event


@pytest.mark.parametrize(("kind", "message"), MALFORMED, ids=[str(k)[:12] for k, _ in MALFORMED])
def test_a_malformed_event_is_refused_naming_the_field_and_writes_nothing(
    store: LineageStore, kind: object, message: str
) -> None:
    status, body = post_event(store, _malformed(kind))
    assert status == 400
    assert body["error"]["code"] == "invalid_event"
    assert message in body["error"]["message"]
    assert set(store.counts().values()) == {0}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"eventType": NaN}', b"[" * 100_000])
def test_a_body_that_is_not_an_event_object_is_a_bad_request(store: LineageStore, body: bytes) -> None:
    status, answer = call(store, "POST", "/api/v1/lineage", body=body)
    assert status == 400
    assert answer["error"]["code"] in {"bad_request", "invalid_event"}
    assert set(store.counts().values()) == {0}
