"""Data checks: verdicts computed from what a step reported and the published versions before it, and what
the planner does with them (a blocking failure holds the version back and skips what depends on it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from headwater.lineage.records import DatasetVersionRecord, StepRecord
from headwater.lineage.run_records import records_for_run
from headwater.runs import checks
from headwater.runs.checks import Baseline
from headwater.runs.jobs import JobObservation, JobSettings, RunRef, job_name
from headwater.runs.planning import plan, start
from headwater.sla.alerts import step_cause
from headwater.spec.models import (
    CheckOutcome,
    CheckSeverity,
    OutputDataset,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    RunPhase,
    StepPhase,
    StepReason,
    StepSpec,
    StepStatus,
)
from manifests import step

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
WH = "postgres://warehouse"
RUN = RunRef(name="rev-2", namespace="data", uid="uid-2", pipeline="rev")
SETTINGS = JobSettings(step_image="headwater:test")


def output(*checks_: dict[str, Any], name: str = "raw.payments") -> OutputDataset:
    return OutputDataset.model_validate({"namespace": WH, "name": name, "checks": list(checks_)})


def verdict(check: dict[str, Any], result: dict[str, Any] | None, baseline: Baseline | None = None,
            written: datetime = NOW) -> Any:
    out = output(check)
    seen = checks.observe(result, out, only_output=True)
    return checks.evaluate(out, out.all_checks[0], seen, baseline, written)


# --- the pure verdicts --------------------------------------------------------------------------

def test_row_count_bounds_pass_inside_and_fail_outside_naming_the_observed_count() -> None:
    check = {"name": "some-rows", "rowCount": {"min": 1000, "max": 100000}}
    assert verdict(check, {"rowsAffected": 47980}).outcome == CheckOutcome.PASSED
    low = verdict(check, {"rowsAffected": 12})
    assert (low.outcome, low.observed) == (CheckOutcome.FAILED, "12 rows")
    assert "between 1000 and 100000" in low.message


def test_a_value_the_step_did_not_report_fails_the_check_rather_than_passing_it() -> None:
    assert verdict({"name": "some-rows", "rowCount": {"min": 1}}, {}).outcome == CheckOutcome.FAILED
    assert verdict({"name": "fresh", "freshness": {"maxAge": "1h"}}, None).outcome == CheckOutcome.FAILED


def test_a_drop_beyond_the_limit_against_the_median_of_published_versions_fails() -> None:
    check = {"name": "no-drop", "change": {"maxDropPercent": 30, "versions": 3}}
    baseline = Baseline(rows=(47980, 48000, 47500, 10))  # the 4th is beyond versions: not in the median
    dropped = verdict(check, {"rowsAffected": 28788}, baseline)
    assert dropped.outcome == CheckOutcome.FAILED
    assert dropped.observed == "28788 rows (40.0% below)"
    assert dropped.baseline == "median 47980 rows of the last 3 published version(s)"
    assert "max drop 30%" in dropped.message
    assert verdict(check, {"rowsAffected": 40000}, baseline).outcome == CheckOutcome.PASSED


def test_growth_is_judged_only_when_a_growth_limit_is_set() -> None:
    baseline = Baseline(rows=(100,))
    assert verdict({"name": "c", "change": {"maxDropPercent": 30}}, {"rowsAffected": 900}, baseline).outcome \
        == CheckOutcome.PASSED
    assert verdict({"name": "c", "change": {"maxGrowthPercent": 100}}, {"rowsAffected": 900}, baseline).outcome \
        == CheckOutcome.FAILED


def test_without_a_published_version_to_compare_with_a_change_check_is_skipped_not_failed() -> None:
    check = {"name": "no-drop", "change": {"maxDropPercent": 30}}
    assert verdict(check, {"rowsAffected": 5}, Baseline()).outcome == CheckOutcome.SKIPPED
    assert verdict(check, {"rowsAffected": 5}, None).outcome == CheckOutcome.SKIPPED


def test_schema_unchanged_compares_the_reported_columns_with_the_last_published_version() -> None:
    check = {"name": "same-columns", "schemaUnchanged": True}
    before = Baseline(schema=checks.schema_fingerprint(["id", "amount"]))
    assert verdict(check, {"columns": ["id", "amount"]}, before).outcome == CheckOutcome.PASSED
    changed = verdict(check, {"columns": ["id", "amount_cents"]}, before)
    assert changed.outcome == CheckOutcome.FAILED and "now id, amount_cents" in changed.message
    assert verdict(check, {"columns": ["id"]}, Baseline()).outcome == CheckOutcome.SKIPPED


def test_a_sql_assertion_fails_when_its_query_returned_rows() -> None:
    check = {"name": "no-negative", "sql": "SELECT * FROM raw.payments WHERE amount < 0"}
    assert verdict(check, {"checks": {"no-negative": 0}}).outcome == CheckOutcome.PASSED
    bad = verdict(check, {"checks": {"no-negative": 3}})
    assert (bad.outcome, bad.observed) == (CheckOutcome.FAILED, "3 row(s)")


def test_freshness_at_write_time_compares_the_newest_record_with_the_time_of_the_write() -> None:
    check = {"name": "fresh", "freshness": {"maxAge": "2h"}}
    recent = {"newestRecordAt": (NOW - timedelta(minutes=30)).isoformat()}
    old = {"newestRecordAt": (NOW - timedelta(hours=5)).isoformat()}
    assert verdict(check, recent).outcome == CheckOutcome.PASSED
    stale = verdict(check, old)
    assert (stale.outcome, stale.observed) == (CheckOutcome.FAILED, "newest record 300 min old")


def test_a_step_with_several_outputs_reports_each_under_outputs() -> None:
    spec = StepSpec.model_validate(step("x", outputs=[
        {"namespace": WH, "name": "a", "checks": [{"name": "rows", "rowCount": {"min": 10}}]},
        {"namespace": WH, "name": "b", "checks": [{"name": "rows", "rowCount": {"min": 10}}]}]))
    results = checks.evaluate_step(spec, {"rowsAffected": 99, "outputs": {"a": {"rowCount": 50},
                                                                           f"{WH}/b": {"rowCount": 5}}}, NOW, {})
    assert [(r.dataset, r.outcome) for r in results] == [(f"{WH}/a", CheckOutcome.PASSED),
                                                          (f"{WH}/b", CheckOutcome.FAILED)]


def test_only_a_failed_check_of_severity_error_blocks() -> None:
    out = output({"name": "w", "severity": "warn", "rowCount": {"min": 10}}, {"name": "e", "rowCount": {"max": 1}})
    seen = checks.observe({"rowsAffected": 5}, out, True)
    results = [checks.evaluate(out, c, seen, None, NOW) for c in out.all_checks]
    assert [(r.severity, r.outcome) for r in results] == [(CheckSeverity.WARN, CheckOutcome.FAILED),
                                                          (CheckSeverity.ERROR, CheckOutcome.FAILED)]
    assert checks.blocking(results[:1]) is None
    assert checks.blocking(results) is results[1]
    assert checks.failed_warnings(results) == results[:1]


def test_dataset_labels_split_back_into_namespace_and_name() -> None:
    assert checks.split_label("postgres://warehouse:5432/analytics.daily/x") == \
        ("postgres://warehouse:5432", "analytics.daily/x")


# --- the spec -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("check", "message"), [
    ({"name": "x"}, "exactly one of rowCount, change, schemaUnchanged, sql or freshness"),
    ({"name": "x", "rowCount": {"min": 1}, "schemaUnchanged": True}, "exactly one of"),
    ({"name": "x", "rowCount": {}}, "rowCount needs min, max or both"),
    ({"name": "x", "rowCount": {"min": 5, "max": 1}}, "min <= max"),
    ({"name": "x", "change": {"versions": 3}}, "change needs maxDropPercent, maxGrowthPercent or both"),
    ({"name": "x", "change": {"maxDropPercent": 30, "versions": 31}}, "less than or equal to 30"),
])
def test_invalid_checks_are_refused_with_the_rule_they_break(check: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        output(check)


def test_check_names_are_unique_within_an_output() -> None:
    with pytest.raises(ValidationError, match="check names must be unique"):
        output({"name": "x", "rowCount": {"min": 1}}, {"name": "x", "rowCount": {"max": 9}})


def test_sql_checks_are_only_for_sql_steps() -> None:
    sql_check = [{"namespace": WH, "name": "t", "checks": [{"name": "q", "sql": "SELECT 1 WHERE false"}]}]
    StepSpec.model_validate(step("s", type="sql", outputs=sql_check))
    with pytest.raises(ValidationError, match="cannot have a check with sql"):
        StepSpec.model_validate(step("c", outputs=sql_check))


def test_an_output_without_checks_dumps_as_before() -> None:
    dumped = OutputDataset(namespace=WH, name="t").model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped == {"namespace": WH, "name": "t"}


# --- the planner --------------------------------------------------------------------------------

def chain() -> PipelineSpec:
    """extract (with an error check and a warn check) -> transform -> report; audit beside them."""
    return PipelineSpec.model_validate({"steps": [
        step("extract", outputs=[{"namespace": WH, "name": "raw.payments", "checks": [
            {"name": "no-drop", "change": {"maxDropPercent": 30}},
            {"name": "enough", "severity": "warn", "rowCount": {"min": 40000}}]}]),
        step("transform", "extract", outputs=[{"namespace": WH, "name": "analytics.revenue"}]),
        step("report", "transform"),
        step("audit"),
    ]})


def done(step_id: str, rows: int) -> JobObservation:
    return JobObservation(job_name(RUN.name, step_id), StepPhase.SUCCEEDED, 1, "2026-11-23T06:00:00Z",
                          "2026-11-23T06:00:05Z", "Completed", None, {"rowsAffected": rows})


def run_extract(rows: int, baseline: tuple[int, ...]) -> tuple[PipelineRunStatus, list[Any]]:
    spec = PipelineRunSpec.model_validate({"pipelineRef": {"name": "rev"}})
    status = start(spec, chain(), NOW)
    status = plan(RUN, spec, status, {}, NOW, SETTINGS).status or status
    out = plan(RUN, spec, status, {"extract": done("extract", rows), "audit": done("audit", 1)}, NOW, SETTINGS,
               {f"{WH}/raw.payments": Baseline(rows=baseline)})
    assert out.status is not None
    return out.status, out.events


def test_a_blocking_check_failure_fails_its_step_and_skips_exactly_the_downstream_closure() -> None:
    status, events = run_extract(28788, (47980,) * 7)
    steps = {s.name: s for s in status.steps}
    assert (steps["extract"].phase, steps["extract"].reason) == (StepPhase.FAILED, StepReason.CHECK_FAILED)
    assert "check no-drop (change, error) on postgres://warehouse/raw.payments failed: 28788 rows, 40.0% below" \
        in (steps["extract"].message or "")
    assert "not published" in (steps["extract"].message or "")
    for name in ("transform", "report"):
        assert (steps[name].phase, steps[name].reason) == (StepPhase.SKIPPED, StepReason.CHECK_FAILED), name
        assert "upstream step extract: check no-drop" in (steps[name].message or "")
    assert steps["audit"].phase == StepPhase.SUCCEEDED
    assert status.phase == RunPhase.FAILED
    assert [e.reason for e in events if e.reason == "CheckWarning"] == ["CheckWarning"]  # enough: 28788 < 40000


def test_a_passing_check_lets_downstream_run_and_the_verdicts_stay_on_the_step() -> None:
    status, events = run_extract(47000, (47980,) * 7)
    steps = {s.name: s for s in status.steps}
    assert steps["extract"].phase == StepPhase.SUCCEEDED
    assert [(c.name, c.outcome) for c in steps["extract"].checks or []] == [
        ("no-drop", CheckOutcome.PASSED), ("enough", CheckOutcome.PASSED)]
    assert steps["transform"].phase == StepPhase.PENDING and steps["transform"].job
    assert not [e for e in events if e.reason == "CheckWarning"]


def test_a_warning_check_failure_lets_the_run_go_on_with_an_event() -> None:
    status, events = run_extract(35000, (40000,) * 7)  # 12.5% below: no-drop passes; enough (warn) fails
    steps = {s.name: s for s in status.steps}
    assert steps["extract"].phase == StepPhase.SUCCEEDED
    assert steps["transform"].job
    [warning] = [e for e in events if e.reason == "CheckWarning"]
    assert "check enough (rowCount, warn)" in warning.message and "35000 rows" in warning.message


def test_the_first_version_has_no_baseline_and_is_published() -> None:
    status, _ = run_extract(28788, ())
    extract = next(s for s in status.steps if s.name == "extract")
    assert extract.phase == StepPhase.SUCCEEDED
    assert (extract.checks or [])[0].outcome == CheckOutcome.SKIPPED


def test_baselines_are_asked_only_for_steps_just_succeeded_with_change_or_schema_checks() -> None:
    spec = PipelineRunSpec.model_validate({"pipelineRef": {"name": "rev"}})
    status = start(spec, chain(), NOW)
    assert checks.baseline_requests(chain(), status, {"extract", "audit"}) == [f"{WH}/raw.payments"]
    assert checks.baseline_requests(chain(), status, {"transform"}) == []


# --- the lineage records and the alert ----------------------------------------------------------

def test_a_version_held_back_by_a_check_is_recorded_unpublished_with_its_verdicts() -> None:
    status, _ = run_extract(28788, (47980,) * 7)
    run = {"metadata": {"namespace": "data", "name": RUN.name, "uid": "0123456789"},
           "spec": {"pipelineRef": {"name": "rev"}}, "status": status.model_dump(by_alias=True, exclude_none=True)}
    records = records_for_run(run)
    [version] = [r for r in records if isinstance(r, DatasetVersionRecord)]
    assert (version.dataset.name, version.published, version.row_count) == ("raw.payments", False, 28788)
    assert [(c.name, c.outcome) for c in version.checks] == [("no-drop", "Failed"), ("enough", "Failed")]
    skipped = next(r for r in records if isinstance(r, StepRecord) and r.step == "transform")
    assert skipped.error is not None and "check no-drop" in skipped.error


def test_the_alert_cause_of_a_failed_step_leads_with_the_steps_own_error() -> None:
    failed = StepStatus(name="extract-payments", phase=StepPhase.FAILED, reason="BackoffLimitExceeded",
                        message="Job has reached the specified backoff limit; last attempt: Stripe API: 401 "
                                "Unauthorized", result={"error": "Stripe API: 401 Unauthorized"})
    cause = step_cause("revenue", "demo/revenue-day3", failed)
    assert cause.startswith("revenue/extract-payments failed in run demo/revenue-day3: Stripe API: 401 Unauthorized")
    assert cause.endswith("(BackoffLimitExceeded: Job has reached the specified backoff limit)")


def test_every_check_a_step_can_declare_fits_in_its_status() -> None:
    many = [{"namespace": WH, "name": f"t{i}", "checks": [{"name": f"c{j}", "rowCount": {"min": 1}}
                                                         for j in range(10)]} for i in range(32)]
    spec = StepSpec.model_validate(step("wide", outputs=many))
    results = checks.evaluate_step(spec, {}, NOW, {})
    assert len(results) == 320
    StepStatus.model_validate({"name": "wide", "checks": [r.model_dump(by_alias=True) for r in results]})
