"""The pydantic models: camelCase on the wire, defaults, cross-field rules, helpers for the run engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from headwater.spec import dag, parsing
from headwater.spec.constants import DEFAULT_IMAGE
from headwater.spec.models import (
    Dataset,
    EnvVar,
    Freshness,
    Notifications,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    Resources,
    RunPhase,
    StepPhase,
    StepSpec,
    StepType,
    Trigger,
)
from manifests import pipeline, step

pytestmark = pytest.mark.unit


def errors(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[int | str, ...], str]]:
    return [(tuple(e["loc"]), e["msg"]) for e in exc.value.errors()]


def test_a_camel_case_spec_round_trips_with_defaults_filled_in() -> None:
    wire = pipeline()["spec"]
    spec = PipelineSpec.model_validate(wire)
    dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["steps"][1]["dependsOn"] == ["extract"]
    assert dumped["steps"][0]["outputs"] == [{"namespace": "postgres://warehouse", "name": "raw.orders"}]
    assert PipelineSpec.model_validate(dumped) == spec


def test_python_code_uses_snake_case_names() -> None:
    built = StepSpec(id="load", type=StepType.CONTAINER, image="busybox:1.36", depends_on=["extract"],
                     timeout_seconds=60)
    assert built.model_dump(by_alias=True, exclude_none=True)["timeoutSeconds"] == 60
    assert built.depends_on == ["extract"]


def test_spec_defaults_match_the_api_reference() -> None:
    spec = PipelineSpec.model_validate({"steps": [step("a")]})
    assert (spec.concurrency_policy, spec.suspend, spec.fail_fast) == ("Forbid", False, False)
    assert (spec.successful_runs_history_limit, spec.failed_runs_history_limit) == (10, 10)
    assert spec.max_parallelism is None
    only = spec.steps[0]
    assert (only.retries, only.timeout_seconds, only.depends_on) == (2, 300, [])
    run = PipelineRunSpec.model_validate({"pipelineRef": {"name": "orders"}})
    assert (run.trigger, run.cancel) == (Trigger.MANUAL, False)


def test_unknown_fields_in_a_spec_are_rejected_but_ignored_in_a_status() -> None:
    with pytest.raises(ValidationError) as raised:
        PipelineSpec.model_validate({"steps": [step("a", imag="x")]})
    assert errors(raised) == [(("steps", 0, "imag"), "Extra inputs are not permitted")]
    status = PipelineRunStatus.model_validate({"phase": "Running", "addedLater": 1})
    assert status.phase == RunPhase.RUNNING


def test_phase_enums_have_the_kubernetes_spelling() -> None:
    assert [p.value for p in RunPhase] == ["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
    assert [p.value for p in StepPhase] == [
        "Pending", "Running", "Succeeded", "Failed", "Skipped", "Cancelled"
    ]
    assert isinstance(StepPhase.SKIPPED, str)
    assert str(StepPhase.SKIPPED) == "Skipped"


def test_a_sql_step_defaults_to_the_headwater_image() -> None:
    assert StepSpec.model_validate(step("a", type="sql")).resolved_image() == DEFAULT_IMAGE
    assert StepSpec.model_validate(step("b", type="python", image="python:3.12-slim")).resolved_image() == (
        "python:3.12-slim")


@pytest.mark.parametrize(("fields", "loc", "message"), [
    ({"type": "container"}, ("image",), "step 'x' of type container needs an image"),
    ({"type": "sql"}, ("sql",), "step 'x' of type sql needs sql: the statement to run"),
    ({"type": "python", "image": "python:3.12", "sql": "SELECT 1"}, ("sql",),
     "step 'x' of type python cannot have sql; sql is only for steps of type sql"),
    ({"type": "python", "image": "python:3.12", "connectionSecretRef": {"name": "db", "key": "url"}},
     ("connectionSecretRef",),
     "step 'x' of type python cannot have connectionSecretRef; it is only for steps of type sql"),
])
def test_step_type_rules_name_the_field_and_the_step(
    fields: dict[str, Any], loc: tuple[str], message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        StepSpec.model_validate({"id": "x", **fields})
    assert errors(raised) == [(loc, message)]


def test_graph_problems_reject_the_spec_with_every_detail() -> None:
    with pytest.raises(ValidationError) as raised:
        PipelineSpec.model_validate({"steps": [step("a", dependsOn=["a"]), step("a", dependsOn=["zz"])]})
    [(loc, message)] = errors(raised)
    assert loc == ("steps",)
    assert "steps[1].id: step id 'a' is used by more than one step" in message
    assert "step 'a' depends on unknown step 'zz'" in message
    assert "step 'a' depends on itself" in message


def test_a_cycle_parses_so_that_the_operator_can_report_it() -> None:
    spec = PipelineSpec.model_validate({"steps": [step("a", dependsOn=["b"]), step("b", dependsOn=["a"])]})
    assert dag.find_cycle(spec.steps) == ["a", "b", "a"]


@pytest.mark.parametrize(("schedule", "ok"), [
    ("0 6 * * *", True), ("*/15 1-5 * JAN MON-FRI", True), ("@daily", True),
    ("61 6 * * *", False), ("0 6 * *", False), ("every day", False), ("0 6 * * * *", False),
])
def test_schedules_need_five_valid_cron_fields(schedule: str, ok: bool) -> None:
    data = {"schedule": schedule, "steps": [step("a")]}
    if ok:
        assert PipelineSpec.model_validate(data).schedule == schedule
    else:
        with pytest.raises(ValidationError, match="schedule"):
            PipelineSpec.model_validate(data)


def test_an_unknown_time_zone_is_rejected_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Europe/Berlinn'; use an IANA name"):
        PipelineSpec.model_validate({"timeZone": "Europe/Berlinn", "steps": [step("a")]})


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", timedelta(minutes=30)), ("6h", timedelta(hours=6)), ("1d", timedelta(days=1)),
    ("1h30m", timedelta(minutes=90)), ("45s", timedelta(seconds=45)),
])
def test_durations_use_s_m_h_and_d(text: str, expected: timedelta) -> None:
    assert parsing.parse_duration(text) == expected
    assert Freshness(max_age=text).max_age_delta == expected


@pytest.mark.parametrize("text", ["6", "1w", "1.5h", "h", "", "6 h"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parsing.parse_duration(text)


@pytest.mark.parametrize(("fields", "message"), [
    ({"maxAge": "6h", "deadline": "07:00"}, "set exactly one of maxAge or deadline"),
    ({}, "set exactly one of maxAge or deadline"),
    ({"maxAge": "6h", "timeZone": "Europe/Berlin"}, "timeZone applies only to a deadline"),
    ({"maxAge": "0m"}, "maxAge must be longer than 0s"),
    ({"deadline": "25:00"}, "String should match pattern"),
])
def test_freshness_is_a_max_age_or_a_daily_deadline(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Freshness.model_validate(fields)


def test_a_deadline_freshness_keeps_its_time_zone() -> None:
    sla = Freshness.model_validate({"deadline": "07:00", "timeZone": "Europe/Berlin"})
    assert (sla.deadline, sla.time_zone, sla.max_age_delta) == ("07:00", "Europe/Berlin", None)


def test_datasets_are_hashable_and_print_as_namespace_slash_name() -> None:
    orders = Dataset(namespace="postgres://warehouse", name="raw.orders")
    same = Dataset.model_validate({"namespace": "postgres://warehouse", "name": "raw.orders"})
    assert {orders, same} == {orders}
    assert str(orders) == "postgres://warehouse/raw.orders"


def test_resources_take_integers_and_quantity_strings_only() -> None:
    ok = Resources.model_validate({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}})
    assert ok.limits == {"cpu": 2}
    with pytest.raises(ValidationError, match=r"0\.5 is not a quantity"):
        Resources.model_validate({"requests": {"cpu": 0.5}})
    with pytest.raises(ValidationError, match="'lots' is not a quantity"):
        Resources.model_validate({"limits": {"memory": "lots"}})


def test_an_env_var_has_a_value_or_a_value_from_not_both() -> None:
    with pytest.raises(ValidationError, match="env var 'TOKEN' has both value and valueFrom"):
        EnvVar.model_validate({"name": "TOKEN", "value": "x",
                               "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})
    with pytest.raises(ValidationError, match="exactly one of secretKeyRef or configMapKeyRef"):
        EnvVar.model_validate({"name": "TOKEN", "valueFrom": {}})


def test_notifications_name_a_channel_and_no_longer_take_a_webhook_secret() -> None:
    with pytest.raises(ValidationError, match="slackChannel"):
        Notifications.model_validate({})
    assert Notifications.model_validate({"slackChannel": "#data-alerts"}).slack_channel == "#data-alerts"
    with pytest.raises(ValidationError, match="webhookSecretRef"):
        Notifications.model_validate({"slackChannel": "#a", "webhookSecretRef": {"name": "s", "key": "url"}})


@pytest.mark.parametrize(("spec", "message"), [
    ({"retryOf": "orders-1"}, "retryOf is only allowed with trigger: retry"),
    ({"trigger": "retry"}, "trigger: retry needs retryOf"),
    ({"scheduledFor": "2026-11-23T06:00:00Z"}, "scheduledFor is only allowed with trigger: schedule"),
    ({"trigger": "schedule", "scheduledFor": "tomorrow"}, "'tomorrow' is not an RFC 3339 date-time"),
])
def test_run_spec_rules(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PipelineRunSpec.model_validate({"pipelineRef": {"name": "orders"}, **spec})


def test_timestamps_are_rfc3339_strings_and_datetimes_are_converted() -> None:
    moment = datetime(2026, 11, 23, 6, 0, 30, 123456, tzinfo=UTC)
    status = PipelineRunStatus(started_at=moment, phase=RunPhase.RUNNING)
    assert status.started_at == "2026-11-23T06:00:30Z"
    spec = PipelineRunSpec.model_validate({"pipelineRef": {"name": "orders"}, "trigger": "schedule",
                                           "scheduledFor": "2026-11-23T06:00:00+01:00"})
    assert spec.scheduled_for == "2026-11-23T06:00:00+01:00"


def test_a_run_status_round_trips_with_a_free_form_result_and_a_snapshot() -> None:
    wire = {
        "phase": "Running", "progress": "1/3", "startedAt": "2026-11-23T06:00:00Z",
        "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running", "message": "",
                        "lastTransitionTime": "2026-11-23T06:00:00Z"}],
        "steps": [{"name": "extract", "phase": "Succeeded", "job": "orders-1-extract", "attempts": 1,
                   "result": {"rowsAffected": 1234, "tables": ["raw.orders"]}}],
        "pipelineSpec": pipeline()["spec"],
    }
    status = PipelineRunStatus.model_validate(wire)
    assert status.steps[0].result == {"rowsAffected": 1234, "tables": ["raw.orders"]}
    dumped = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["steps"][0]["result"] == {"rowsAffected": 1234, "tables": ["raw.orders"]}
    assert PipelineRunStatus.model_validate(dumped) == status


def test_a_step_is_found_by_id_and_a_missing_one_raises() -> None:
    spec = PipelineSpec.model_validate(pipeline()["spec"])
    assert spec.step("load").type == "container"
    with pytest.raises(KeyError):
        spec.step("missing")
