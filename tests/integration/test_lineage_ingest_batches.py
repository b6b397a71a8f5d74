"""OpenLineage events stored in batches (group commit) on a real PostgreSQL: isolation, order, bounds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from api_support import WRITE, Client, bearer, serve
from headwater.lineage import LineageStore, build_run_event
from headwater.lineage.api import INGEST_PATH
from headwater.lineage.ingest_queue import IngestQueue, IngestQueueFullError
from headwater.lineage.openlineage import ParsedEvent, parse_run_event
from headwater.lineage.store import IngestResult
from lineage_support import wh

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def _event(k: int, rows: int = 5, event_type: str = "COMPLETE") -> dict[str, Any]:
    return build_run_event(event_type, run_id=f"ns/r{k}", pipeline="etl", step=f"load-{k}",
                           event_time=T0 + timedelta(minutes=k), inputs=[wh(f"raw.{k}")],
                           outputs=[wh(f"clean.{k}")], row_counts={wh(f"clean.{k}"): rows})


def _refuse_big_row_counts(store: LineageStore) -> None:
    """A rule of this database only: a version of 10 rows or more is refused (a CheckViolation)."""
    with store.transaction() as conn:
        conn.execute("ALTER TABLE dataset_versions ADD CONSTRAINT no_big CHECK (row_count < 10)")


def test_an_event_the_database_refuses_fails_alone_and_the_rest_of_its_batch_is_stored(
        store: LineageStore) -> None:
    _refuse_big_row_counts(store)
    events = [parse_run_event(_event(k, rows)) for k, rows in enumerate([1, 2, 42, 3])]
    results = store.ingest_batch(events)
    assert [type(r) for r in results] == [IngestResult, IngestResult, psycopg.errors.CheckViolation, IngestResult]
    assert [r.run_id for r in results if isinstance(r, IngestResult)] == [events[k].run_id for k in (0, 1, 3)]
    counts = store.counts()
    assert (counts["openlineage_events"], counts["dataset_versions"], counts["lineage_edges"]) == (3, 3, 3)
    with pytest.raises(LookupError):
        store.dataset("clean.2")  # nothing of the refused event is left, not even its datasets
    assert store.upstream("clean.3").edges[0].input == wh("raw.3")


def test_an_event_twice_in_one_batch_is_a_duplicate_the_second_time(store: LineageStore) -> None:
    event = parse_run_event(_event(1))
    results = store.ingest_batch([event, parse_run_event(_event(2)), event])
    assert [r.duplicate for r in results if isinstance(r, IngestResult)] == [False, False, True]
    assert store.counts()["openlineage_events"] == 2
    assert store.ingest_batch([event])[0] == IngestResult("COMPLETE", event.run_id, True, 4)


def test_events_of_one_run_in_one_batch_apply_in_order(store: LineageStore) -> None:
    start, complete = (parse_run_event(_event(1, event_type=t)) for t in ("START", "COMPLETE"))
    store.ingest_batch([start, complete])
    assert store.run(start.run_id).steps[0].phase == "Succeeded"
    again = parse_run_event({**_event(1, event_type="START"), "eventTime": "2026-11-23T07:00:00Z"})
    store.ingest_batch([again])  # a late START never moves a finished step back
    assert store.run(start.run_id).steps[0].phase == "Succeeded"


class _Gate:
    """Runs the queue's batches on threads, holding each until the test lets it go; records their sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.open = asyncio.Event()

    async def run(self, function: Callable[..., Any], events: list[ParsedEvent]) -> Any:
        self.sizes.append(len(events))
        await self.open.wait()
        return await asyncio.to_thread(function, events)


def test_events_waiting_while_a_batch_is_stored_go_together_and_each_request_hears_its_own_answer(
        store: LineageStore) -> None:
    _refuse_big_row_counts(store)

    async def scenario() -> list[Any]:
        gate = _Gate()
        queue = IngestQueue(store, gate.run)
        first = asyncio.create_task(queue.submit(parse_run_event(_event(0)), 100))
        await asyncio.sleep(0)  # the first batch starts alone and is held
        rest = [asyncio.create_task(queue.submit(parse_run_event(_event(k, rows)), 100))
                for k, rows in [(1, 1), (2, 42), (3, 3)]]
        await asyncio.sleep(0)
        gate.open.set()
        answers = await asyncio.gather(first, *rest, return_exceptions=True)
        assert gate.sizes == [1, 3]
        return answers

    answers = asyncio.run(scenario())
    assert [type(a) for a in answers] == [IngestResult, IngestResult, psycopg.errors.CheckViolation, IngestResult]
    assert store.counts()["openlineage_events"] == 3


def test_the_queue_refuses_an_event_beyond_its_bound_in_bytes_and_takes_a_lone_large_one(
        store: LineageStore) -> None:
    async def scenario() -> None:
        gate = _Gate()
        queue = IngestQueue(store, gate.run, max_queue_bytes=1000)
        held = asyncio.create_task(queue.submit(parse_run_event(_event(0)), 600))
        await asyncio.sleep(0)
        with pytest.raises(IngestQueueFullError, match="at most 1000 bytes of OpenLineage events wait"):
            await queue.submit(parse_run_event(_event(1)), 600)
        gate.open.set()
        assert not (await held).duplicate
        assert not (await queue.submit(parse_run_event(_event(2)), 5000)).duplicate  # alone: always taken

    asyncio.run(scenario())
    assert store.counts()["openlineage_events"] == 2


def test_concurrent_posts_are_each_answered_for_their_own_event(store: LineageStore) -> None:
    _refuse_big_row_counts(store)

    async def scenario(client: Client) -> list[int]:
        async def post(k: int, rows: int) -> int:
            body = json.dumps(_event(k, rows)).encode()
            async with client.post(INGEST_PATH, data=body, headers=bearer(WRITE)) as response:
                return response.status

        return list(await asyncio.gather(*(post(k, 42 if k == 5 else 1) for k in range(12))))

    statuses = serve(store, scenario)
    assert statuses == [201] * 5 + [500] + [201] * 6
    assert store.counts()["openlineage_events"] == 11


def test_the_stored_event_is_the_event_as_sent(store: LineageStore) -> None:
    event = _event(1)
    event["job"]["facets"] = {"documentation": {"description": "Zürich \\u0000 — 東京", "nested": [1, 2.5, None]}}
    store.ingest_batch([parse_run_event(event)])
    with store.transaction() as conn:
        row = conn.execute("SELECT event FROM openlineage_events").fetchone()
    assert row is not None and row[0] == event


def test_datasets_and_jobs_known_already_take_no_new_id(store: LineageStore) -> None:
    store.ingest_batch([parse_run_event(_event(1))])
    for _ in range(3):  # the same datasets and job again: the events are new, the datasets and job are not
        store.ingest_batch([parse_run_event({**_event(1), "eventTime": f"2026-11-23T07:0{_}:00Z"})])
    store.ingest_batch([parse_run_event(_event(2))])
    with store.transaction() as conn:
        datasets = conn.execute("SELECT name, id FROM datasets ORDER BY id").fetchall()
        jobs = conn.execute("SELECT step, id FROM jobs ORDER BY id").fetchall()
    assert sorted(name for name, _ in datasets[2:]) == ["clean.2", "raw.2"]
    assert [i - datasets[0][1] for _, i in datasets] == [0, 1, 2, 3]
    assert [i - jobs[0][1] for _, i in jobs] == [0, 1]
