"""Lineage records: validation, stable idempotency keys and a lossless JSON form for durable queues."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from headwater.lineage.records import (
    DatasetRef,
    DatasetVersionRecord,
    EdgeRecord,
    RunRecord,
    StepRecord,
    dataset_key,
    jsonable,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
A, B, C = DatasetRef("postgres://w", "a"), DatasetRef("postgres://w", "b"), DatasetRef("s3://lake", "c")

def test_keys_are_stable_and_name_the_fact_not_the_moment() -> None:
    first = EdgeRecord("r", "p", "s", (A, B), (C,), seen_at=T0)
    again = EdgeRecord("r", "p", "s", (B, A, A), (C,), seen_at=T0 + timedelta(hours=1))
    assert first.key == again.key
    assert first.key.startswith("edge:")
    assert EdgeRecord("r2", "p", "s", (A, B), (C,)).key != first.key


def test_an_input_and_an_output_of_the_same_name_do_not_share_a_key() -> None:
    assert EdgeRecord("r", "p", "s", (A,), ()).key != EdgeRecord("r", "p", "s", (), (A,)).key


def test_a_steps_progress_changes_its_key() -> None:
    running = StepRecord("r", "p", "s", "Running", attempts=1)
    assert running.key != StepRecord("r", "p", "s", "Running", attempts=2).key
    assert running.key != StepRecord("r", "p", "s", "Succeeded", attempts=1).key


@pytest.mark.parametrize("make", [
    lambda: RunRecord("r", "p", "ns", "Done"),
    lambda: StepRecord("r", "p", "s", "Running", attempts=-1),
    lambda: StepRecord("r", "p", "s", "Running", started_at=datetime(2026, 1, 1)),
    lambda: DatasetVersionRecord(A, "r", "p", "s", T0, row_count=-5),
    lambda: DatasetRef("", "x"),
    lambda: DatasetRef("ns", "nul\0name"),
])
def test_impossible_records_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_dataset_keys_separate_namespace_from_name() -> None:
    assert dataset_key("a/b", "c") != dataset_key("a", "b/c")
    assert len(dataset_key("x" * 10_000, "y")) == 32


def test_jsonable_uses_camel_case_and_utc_times() -> None:
    later_zone = timezone(timedelta(hours=2))
    body = jsonable(RunRecord("r", "p", "ns", "Running", started_at=T0.astimezone(later_zone)))
    assert body["runId"] == "r"
    assert body["startedAt"] == "2026-11-23T06:00:00Z"

