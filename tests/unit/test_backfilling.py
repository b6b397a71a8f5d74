"""Backfills decided as data: the slots of a range, which slots get a run next, and the progress shown."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.pipelines.backfilling import (
    TooManySlotsError,
    backfill_run,
    plan,
    run_name_for_slot,
    slots,
)
from headwater.spec.models import BackfillSpec, PipelineRunSpec

pytestmark = pytest.mark.unit

NOV1, NOV30 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 30, 23, 59, tzinfo=UTC)


def spec(max_concurrent: int = 3, **more: Any) -> BackfillSpec:
    return BackfillSpec.model_validate({"pipelineRef": {"name": "revenue"}, "from": "2026-11-01T00:00:00Z",
                                        "to": "2026-11-30T23:59:00Z", "maxConcurrent": max_concurrent, **more})


def run(name: str, phase: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase} if phase else {}}


DAILY = slots("0 6 * * *", None, NOV1, NOV30)


def test_the_slots_of_a_range_are_every_schedule_time_in_it_inclusive_oldest_first() -> None:
    assert len(DAILY) == 30
    assert DAILY[0] == datetime(2026, 11, 1, 6, tzinfo=UTC) and DAILY[-1] == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert slots("0 6 * * *", None, DAILY[0], DAILY[0]) == [DAILY[0]]
    assert slots("0 6 * * *", "Europe/Berlin", NOV1, NOV1.replace(hour=23))[0] == datetime(2026, 11, 1, 5, tzinfo=UTC)


def test_a_range_with_more_slots_than_the_limit_is_refused_naming_the_limit() -> None:
    with pytest.raises(TooManySlotsError, match="more than 1000 schedule slots"):
        slots("* * * * *", None, NOV1, NOV30)


def test_the_first_pass_creates_the_oldest_slots_up_to_the_cap() -> None:
    out = plan("nov", spec(3), DAILY, [])
    assert out.create == DAILY[:3]
    assert out.status["phase"] == "Running"
    assert (out.status["created"], out.status["active"], out.status["progress"]) == (3, 3, "0/30")
    assert out.status["nextSlot"] == "2026-11-04T06:00:00Z"
    assert out.status["lastRun"] == "nov-202611030600"


def test_a_finished_run_frees_its_place_for_the_next_slot_in_order() -> None:
    runs = [run(run_name_for_slot("nov", s), "Succeeded") for s in DAILY[:2]] + \
        [run(run_name_for_slot("nov", DAILY[2]), "Running")]
    out = plan("nov", spec(3), DAILY, runs)
    assert out.create == DAILY[3:5]
    assert (out.status["succeeded"], out.status["progress"]) == (2, "2/30")


def test_every_slot_finished_ends_the_backfill_failed_if_any_run_failed() -> None:
    runs = [run(run_name_for_slot("nov", s), "Succeeded") for s in DAILY]
    assert plan("nov", spec(), DAILY, runs).status["phase"] == "Succeeded"
    runs[7] = run(run_name_for_slot("nov", DAILY[7]), "Failed")
    out = plan("nov", spec(), DAILY, runs)
    assert (out.create, out.status["phase"], out.status["failed"], out.status["progress"]) == ([], "Failed", 1, "30/30")


def test_a_slot_with_a_run_never_gets_another_and_a_suspended_backfill_creates_none() -> None:
    runs = [run(run_name_for_slot("nov", DAILY[0]), None)]
    assert plan("nov", spec(1), DAILY, runs).create == []
    assert plan("nov", spec(3, suspend=True), DAILY, []).create == []


def test_a_slots_run_carries_the_slot_as_its_logical_time_and_belongs_to_the_backfill() -> None:
    backfill = {"metadata": {"name": "nov", "namespace": "data", "uid": "u1"}, "spec": spec().model_dump(
        by_alias=True, mode="json")}
    body = backfill_run(backfill, DAILY[4])
    parsed = PipelineRunSpec.model_validate(body["spec"])
    assert (parsed.trigger, parsed.scheduled_for) == ("backfill", "2026-11-05T06:00:00Z")
    assert body["metadata"]["name"] == "nov-202611050600"
    assert body["metadata"]["labels"]["headwater.dev/backfill"] == "nov"
    assert body["metadata"]["ownerReferences"][0]["kind"] == "Backfill"


def test_the_cli_dry_run_lists_the_slots_of_the_pipelines_schedule_and_names_the_backfill() -> None:
    from headwater.cli.backfill import backfill_manifest, plan_slots  # noqa: PLC0415

    revenue = {"metadata": {"name": "revenue"},
               "spec": {"schedule": "0 6 * * *", "steps": [{"id": "a", "type": "container", "image": "b"}]}}
    assert plan_slots(revenue, NOV1, NOV30) == DAILY
    manifest = backfill_manifest("revenue", NOV1, NOV30, 3)
    assert manifest["metadata"]["name"] == "revenue-backfill-20261101-20261130"
    assert BackfillSpec.model_validate(manifest["spec"]).max_concurrent == 3
    with pytest.raises(ValueError, match="has no schedule"):
        plan_slots({"metadata": {"name": "adhoc"}, "spec": {**revenue["spec"], "schedule": None}}, NOV1, NOV30)
