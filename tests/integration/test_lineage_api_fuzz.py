"""Property-based fuzzing of the lineage API over a real PostgreSQL: ingest and every query route.

Thousands of generated requests (valid events, malformed ones, extreme dates, fan-outs past the limit,
Unicode, NUL, newlines, injection-shaped names, random JSON, random query parameters and cursors) must
never answer 5xx, an accepted event must never break a later read, and the store must stay consistent.
HEADWATER_FUZZ_EXAMPLES sets the examples per test (default 300: with the read-backs, some 2,500
requests in under a minute); raise it (e.g. 10000) for a longer hunt.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_support import AUTH, READ, WRITE
from headwater.lineage import LineageStore
from headwater.lineage.api import create_app
from helpers import fresh_database

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("HEADWATER_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
NOW = datetime.now(UTC)


@dataclass
class Api:
    """The API served from a thread of its own on 127.0.0.1, and a keep-alive client to it."""

    port: int
    url: str
    store: LineageStore
    stored: int = 0  # events the API stored (201, not a duplicate)
    answers: dict[str, int] = field(default_factory=dict)  # the ingest answers seen, by status (and duplicates)
    runs: set[str] = field(default_factory=set)  # run ids an accepted event other than OTHER created
    conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = READ
                ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.conn.connect()  # without Nagle: headers and body go out at once, no delayed-ACK stalls
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        if response.will_close:
            self.conn.close()
            self.conn = None
        assert response.status < 500, f"{method} {path[:300]} answered {response.status}: {raw[:1000]!r}"
        assert response.getheader("Content-Type", "").startswith("application/json"), raw[:300]
        return response.status, json.loads(raw)


@pytest.fixture(scope="module")
def api(database_url: str) -> Iterator[Api]:
    with fresh_database(database_url) as url, LineageStore.open(url) as store:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        holder: dict[str, Any] = {}

        async def start() -> None:
            runner = web.AppRunner(create_app(store, auth=AUTH), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            holder["runner"] = runner
            holder["port"] = runner.addresses[0][1]
            started.set()

        thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()),
                                  daemon=True)
        thread.start()
        assert started.wait(30)
        client = Api(holder["port"], url, store)
        try:
            yield client
        finally:
            if client.conn is not None:
                client.conn.close()
            asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()


# --- what is generated ------------------------------------------------------------------------------------

HOSTILE = ["raw.orders", "a/b", "a%2Fb", "o'brien\"; DROP TABLE datasets; --", "%s %(x)s {0} $1", "line\nbreak",
           "tab\tand\r\nreturn", "漢字.表", "emoji 🚀", "\u2028\u2029", "../../etc/passwd", "?x=1#frag", " ", "null",
           "a\u0000b", "\ud800", "x" * 9000, "Robert'); DROP TABLE lineage_edges;--", "\\", "%00", "%0A"]
NAMESPACES = ["postgres://warehouse", "s3://lake", "api://stripe", "ns with space", "ä", "a\u0000", ""]
names = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=0, max_size=40),
                  st.text(alphabet="ab./\n\x00", min_size=1, max_size=6))
small_names = st.sampled_from(["a", "b", "c", "d", "e", "raw.orders", "line\nbreak", "漢字.表", "o'brien"])
namespaces = st.one_of(st.sampled_from(NAMESPACES), st.text(max_size=20))
TIMES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+00:00", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
         "2026-13-45T99:99:99Z", "2026-11-23T06:00:00", "yesterday", "", "1e10", "2262-04-11T23:47:16Z"]
event_times = st.one_of(
    st.sampled_from(TIMES),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
        lambda d: d.isoformat()),
    st.integers(-3 * 86400, 2 * 86400).map(lambda s: (NOW + timedelta(seconds=s)).isoformat()),
    st.none(), st.integers(), st.floats(allow_nan=False),
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _dataset(namespace: Any, name: Any, rows: Any = None, fields: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"namespace": namespace, "name": name, "facets": {}}
    if rows is not None:
        out["outputFacets"] = {"outputStatistics": {"rowCount": rows}}
    if fields is not None:
        out["facets"]["schema"] = {"fields": fields}
    return out


datasets = st.builds(_dataset, st.one_of(st.sampled_from(NAMESPACES[:3]), namespaces),
                     st.one_of(small_names, names),
                     st.one_of(st.none(), st.integers(-5, 2**70), st.text(max_size=3)),
                     st.one_of(st.none(), st.lists(st.fixed_dictionaries({"name": st.one_of(names, st.integers()),
                                                                          "type": st.text(max_size=8)}),
                                                   max_size=3), json_values))


@st.composite
def events(draw: st.DrawFn) -> Any:
    """Mostly well-formed RunEvents with hostile content; sometimes broken anywhere."""
    event: dict[str, Any] = {
        "eventType": draw(st.one_of(st.sampled_from(["START", "RUNNING", "COMPLETE", "COMPLETE", "FAIL", "ABORT",
                                                     "OTHER"]), st.text(max_size=10))),
        "eventTime": draw(event_times),
        "producer": draw(st.one_of(st.just("https://fuzz.test"), st.text(max_size=10))),
        "run": {"runId": draw(st.one_of(st.uuids().map(str), st.text(max_size=40))), "facets": {}},
        "job": {"namespace": draw(st.one_of(st.just("fuzz"), names)), "name": draw(names), "facets": {}},
        "inputs": draw(st.lists(datasets, max_size=4)),
        "outputs": draw(st.lists(datasets, max_size=4)),
    }
    if draw(st.integers(0, 19)) == 0:  # a fan-out around the 10,000-edge limit
        fan_in, fan_out = draw(st.sampled_from([(100, 100), (101, 100), (120, 120), (1, 10_001)]))
        event["eventType"], event["eventTime"] = "COMPLETE", NOW.isoformat()
        event["inputs"] = [_dataset("fan://in", f"i{i}") for i in range(fan_in)]
        event["outputs"] = [_dataset("fan://out", f"o{o}") for o in range(fan_out)]
    if draw(st.booleans()):
        event["run"]["facets"]["errorMessage"] = {"message": draw(st.one_of(names, st.integers()))}
    mutation = draw(st.integers(0, 9))
    if mutation == 0:
        key = draw(st.sampled_from(sorted(event)))
        event.pop(key)
    elif mutation == 1:
        event[draw(st.sampled_from(sorted(event)))] = draw(json_values)
    elif mutation == 2:
        return draw(json_values)
    return event


def _raw(value: Any) -> bytes:
    return json.dumps(value).encode()  # lone surrogates travel as \ud800 escapes, as JSON allows


bodies = st.one_of(events().map(_raw), st.binary(max_size=64),
                   st.sampled_from([b"", b"{", b"[" * 50_000, b'{"eventType": NaN}', b"\xff\xfe", b"null"]))


def _reads_of(event: Any) -> list[tuple[str, str]]:
    """(namespace, name) of some datasets an accepted event named, to be read back."""
    return [(item["namespace"], item["name"]) for side in ("inputs", "outputs") for item in (event.get(side) or [])[:2]]


@FUZZ
@given(body=bodies)
def test_ingest_never_fails_and_never_stores_what_cannot_be_read_back(api: Api, body: bytes) -> None:
    status, answer = api.request("POST", "/api/v1/lineage", body, token=WRITE)
    seen = f"{status} duplicate" if status == 201 and answer.get("duplicate") else str(status)
    api.answers[seen] = api.answers.get(seen, 0) + 1
    if status != 201:
        assert status in (400, 413), answer
        assert answer["error"]["code"] in ("invalid_event", "bad_request", "body_too_large"), answer
        return
    event = json.loads(body)
    api.stored += 0 if answer["duplicate"] else 1
    for namespace, name in _reads_of(event):
        for kind in ("upstream", "downstream", "explain", "dataset"):
            status, read = api.request("POST", f"/v1/query/{kind}", json.dumps(
                {"name": name, "namespace": namespace, "limit": 50}).encode())
            assert status == 200, (kind, read)
    if event["eventType"] != "OTHER":
        api.runs.add(answer["runId"])
    status, _ = api.request("GET", f"/v1/runs/{quote(answer['runId'], safe='')}")
    # OTHER creates no run; one an earlier example created (generated run ids repeat) is still there
    assert status == (200 if answer["runId"] in api.runs else 404)


params = st.dictionaries(st.sampled_from(["namespace", "depth", "limit", "cursor", "offset", "q", "pipeline", "x"]),
                         st.one_of(st.text(max_size=12), st.integers(-5, 20_000).map(str),
                                   st.sampled_from(["eyJuIjpudWxsLCJlIjpudWxsfQ", "eyJuIjoiZG9uZSIsImUiOiJkb25lIn0",
                                                    "eyJuIjpbMSwyXSwiZSI6WzEsMiwzXX0", "%%%", "1e3", "100", "1"])),
                         max_size=3)
ROUTES = ["/v1/lineage/upstream/", "/v1/lineage/downstream/", "/v1/explain/", "/v1/datasets/", "/v1/runs/",
          "/v1/graph/", "/v1/columns/"]


def _in_a_url(name: str) -> bool:
    """Short enough for a request line (longer ones go by POST /v1/query/...), and encodable as UTF-8: a lone
    surrogate (kept in HOSTILE for JSON bodies) cannot be percent-encoded by any client."""
    return len(name) < 2000 and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in name)


url_names = st.one_of(small_names, names).filter(_in_a_url)


@FUZZ
@given(route=st.sampled_from([*ROUTES, "/v1/datasets", "/v1/runs", "/v1/search", "/v1/flow", "/v1/freshness",
                              "/healthz", "/readyz", "/livez", "/metrics", "/v2/x"]),
       name=url_names, query=params, encode=st.booleans())
def test_every_get_route_answers_any_parameters_without_a_server_error(
        api: Api, route: str, name: str, query: dict[str, str], encode: bool) -> None:
    path = route + (quote(name, safe="") if route in ROUTES else "")
    if not encode and route in ROUTES:
        path = route + quote(name, safe="/%?&=#")  # half-encoded names, as careless clients send them
    status, answer = api.request("GET", path + ("?" + urlencode(query) if query else ""))
    assert status in (200, 400, 404, 405, 409, 422), answer


@FUZZ
@given(kind=st.sampled_from(["upstream", "downstream", "explain", "dataset", "nothing"]),
       document=st.one_of(st.fixed_dictionaries({"name": st.one_of(small_names, names)},
                                                optional={"namespace": namespaces, "depth": json_values,
                                                          "limit": st.one_of(st.integers(-1, 20_000), json_values),
                                                          "cursor": st.one_of(st.text(max_size=40), json_values)}),
                          json_values))
def test_every_post_query_answers_any_body_without_a_server_error(api: Api, kind: str, document: Any) -> None:
    status, answer = api.request("POST", f"/v1/query/{kind}", json.dumps(document).encode())
    assert status in (200, 400, 404, 405, 409, 422), answer


def test_afterwards_every_stored_dataset_reads_back_and_the_store_is_consistent(api: Api) -> None:
    """Runs after the fuzzing above (file order): nothing stored may break a read or a relation.

    Every dataset is listed; every one outside the fan-outs (and a sample of those) is read back whole."""
    offset, seen = 0, 0
    while True:
        status, page = api.request("GET", f"/v1/datasets?limit=500&offset={offset}")
        assert status == 200
        for k, item in enumerate(page["datasets"]):
            if item["dataset"]["namespace"].startswith("fan://") and k % 50:
                continue
            ref = {"name": item["dataset"]["name"], "namespace": item["dataset"]["namespace"], "limit": 20}
            for kind in ("upstream", "downstream", "explain", "dataset"):
                assert api.request("POST", f"/v1/query/{kind}", json.dumps(ref).encode())[0] == 200
        seen += len(page["datasets"])
        if len(page["datasets"]) < 500:
            break
        offset += 500
    with psycopg.connect(api.url) as conn:
        counts = dict(conn.execute("SELECT 'datasets', count(*) FROM datasets").fetchall())
        assert counts["datasets"] == seen
        orphans = conn.execute(
            "SELECT count(*) FROM openlineage_events e WHERE e.event_type <> 'OTHER' "
            "AND NOT EXISTS (SELECT 1 FROM pipeline_runs r WHERE r.id = e.run_id)").fetchone()
        assert orphans == (0,), "an accepted event without its run"
        bad_steps = conn.execute("SELECT count(*) FROM step_runs s WHERE NOT EXISTS "
                                 "(SELECT 1 FROM pipeline_runs r WHERE r.id = s.run_id)").fetchone()
        assert bad_steps == (0,)
        too_many = conn.execute(
            "SELECT count(*) FROM (SELECT job_id, last_run_id FROM lineage_edges GROUP BY 1, 2 "
            "HAVING count(*) > 10000) x").fetchone()
        assert too_many == (0,), "an event made more edges than the limit"
        out_of_range = conn.execute(
            "SELECT count(*) FROM openlineage_events WHERE event_time < '1970-01-01Z' "
            "OR event_time > now() + interval '1 day'").fetchone()
        assert out_of_range == (0,)
        stored = conn.execute("SELECT count(*) FROM openlineage_events").fetchone()
        assert stored is not None and stored[0] == api.stored
    assert api.stored > 0 and seen > 0, f"the fuzzing stored nothing; ingest answers: {api.answers}"
