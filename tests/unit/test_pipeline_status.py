"""What admission refuses in a schedule, and what the operator reports for what admission cannot see."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.pipelines.status import pipeline_status
from headwater.spec.conditions import is_ready
from headwater.spec.crdgen import pipeline_crd
from manifests import step

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def _schema() -> dict[str, Any]:
    spec: dict[str, Any] = pipeline_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


@pytest.mark.parametrize("schedule", ["0 25 * * *", "60 * * * *", "0 0 32 * *", "0 0 * 13 *", "0 0 * * 8",
                                      "*/0 * * * *"])
def test_admission_refuses_cron_fields_out_of_range(schedule: str) -> None:
    assert not re.fullmatch(_schema()["properties"]["schedule"]["pattern"], schedule)


@pytest.mark.parametrize("schedule", ["0 6 * * *", "*/5 9-17 * * MON-FRI", "0 0 L * *", "0 0 * * 5#3",
                                      "30 4 1,15 JAN-MAR *", "0 0 ? * 7", "@daily"])
def test_admission_accepts_cron_schedules_in_range(schedule: str) -> None:
    assert re.fullmatch(_schema()["properties"]["schedule"]["pattern"], schedule)


def test_admission_refuses_time_zones_outside_the_known_areas() -> None:
    pattern = _schema()["properties"]["timeZone"]["pattern"]
    assert not re.fullmatch(pattern, "Mars/Olympus")
    assert all(re.fullmatch(pattern, z) for z in ("UTC", "Europe/Berlin", "America/Argentina/Salta", "US/Eastern"))


def _ready(spec: dict[str, Any]) -> dict[str, Any]:
    status = pipeline_status(spec, None, 3, NOW)
    assert status is not None
    cond: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == "Ready")
    return cond


def test_a_schedule_that_never_fires_makes_the_pipeline_not_ready_naming_it() -> None:
    ready = _ready({"schedule": "0 0 31 2 *", "steps": [step("a")]})
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSchedule")
    assert "'0 0 31 2 *' never fires" in ready["message"]


def test_an_unknown_time_zone_makes_the_pipeline_not_ready_naming_it() -> None:
    ready = _ready({"schedule": "* * * * *", "timeZone": "Mars", "steps": [step("a")]})
    assert (ready["status"], ready["reason"]) == ("False", "InvalidTimeZone")
    assert ready["message"].startswith("spec.timeZone: unknown time zone 'Mars'")


def test_an_out_of_range_cron_is_named_in_words() -> None:
    ready = _ready({"schedule": "0 25 * * *", "steps": [step("a")]})
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSchedule")
    assert "hour 0-23" in ready["message"]


def test_the_spec_status_writer_leaves_the_schedule_fields_to_the_scheduler() -> None:
    status = pipeline_status({"schedule": "* * * * *", "steps": [step("a")]}, None, 1, NOW)
    assert status is not None
    assert set(status) == {"observedGeneration", "steps", "conditions"}


def _pipeline(generation: int, ready: str, seen: int) -> dict[str, Any]:
    return {"metadata": {"generation": generation},
            "status": {"conditions": [{"type": "Ready", "status": ready, "observedGeneration": seen}]}}


def test_the_scheduler_takes_only_a_pipeline_ready_for_its_current_generation() -> None:
    assert is_ready(_pipeline(2, "True", 2))
    assert not is_ready(_pipeline(3, "True", 2))  # edited, not checked yet
    assert not is_ready(_pipeline(2, "False", 2))
    assert not is_ready({"metadata": {}, "status": {}})


def test_an_edit_that_keeps_the_pipeline_valid_confirms_ready_for_the_new_generation() -> None:
    spec = {"schedule": "* * * * *", "steps": [step("a")]}
    first = pipeline_status(spec, None, 1, NOW)
    assert first is not None
    edited = pipeline_status({**spec, "suspend": True}, first, 2, NOW)
    assert edited is not None, "the Ready condition still names generation 1"
    assert is_ready({"metadata": {"generation": 2}, "status": edited})
