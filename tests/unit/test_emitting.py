"""OpenLineage RunEvents for step transitions, with stable run ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from headwater.lineage.emitting import step_events
from headwater.lineage.openlineage import parse_run_event, step_run_uuid
from headwater.lineage.run_records import run_id
from headwater.runs.jobs import JobObservation, JobSettings, RunRef
from headwater.runs.planning import plan, start
from headwater.spec.models import PipelineRunSpec, PipelineSpec, StepPhase
from manifests import step

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
RUN = RunRef("rev-1", "data", "0f3c9a1e-5d2b-4c8e-9f10-2a3b4c5d6e7f", "rev")
RUN_ID = run_id(RUN.namespace, RUN.name, RUN.uid)
SPEC = PipelineRunSpec.model_validate({"pipelineRef": {"name": "rev"}})
PIPELINE = PipelineSpec.model_validate({"steps": [
    step("extract", outputs=[{"namespace": "postgres://wh", "name": "raw.orders"}]),
    step("load", "extract", inputs=[{"namespace": "postgres://wh", "name": "raw.orders"}])]})


def test_a_step_emits_start_when_its_job_is_created_and_complete_with_its_row_count() -> None:
    first = start(SPEC, PIPELINE, NOW)
    created = plan(RUN, SPEC, first, {}, NOW, JobSettings("img")).status
    assert created is not None
    events = step_events(RUN, first, created, NOW)
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [("START", "extract")]
    assert events[0]["run"]["runId"] == step_run_uuid("data/rev-1/0f3c9a1e", "extract")
    done = JobObservation("rev-1-extract", StepPhase.SUCCEEDED, 1, result={"rowsAffected": 42})
    after = plan(RUN, SPEC, created, {"extract": done}, NOW, JobSettings("img")).status
    assert after is not None
    events = step_events(RUN, created, after, NOW)
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [("COMPLETE", "extract"), ("START", "load")]
    complete = parse_run_event(events[0])  # a valid OpenLineage event by our own strict parser
    assert complete.event_type == "COMPLETE"
    assert events[0]["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 42


def test_a_failed_step_emits_fail_with_its_message_and_skipped_steps_emit_nothing() -> None:
    first = start(SPEC, PIPELINE, NOW)
    created = plan(RUN, SPEC, first, {}, NOW, JobSettings("img")).status
    assert created is not None
    broken = JobObservation("rev-1-extract", StepPhase.FAILED, 3, reason="BackoffLimitExceeded", message="boom")
    after = plan(RUN, SPEC, created, {"extract": broken}, NOW, JobSettings("img")).status
    assert after is not None
    events = step_events(RUN, created, after, NOW)
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [("FAIL", "extract")]
    assert events[0]["run"]["facets"]["errorMessage"]["message"] == "boom"


def test_a_run_created_again_under_the_same_name_gets_other_openlineage_run_ids() -> None:
    first = start(SPEC, PIPELINE, NOW)
    created = plan(RUN, SPEC, first, {}, NOW, JobSettings("img")).status
    assert created is not None
    again = RunRef("rev-1", "data", "7d41e0b2-0000-4000-8000-000000000000", "rev")
    before = step_events(RUN, first, created, NOW)
    after = step_events(again, first, created, NOW)
    assert before[0]["run"]["runId"] != after[0]["run"]["runId"]
    assert before[0]["run"]["facets"]["parent"]["run"]["runId"] != after[0]["run"]["facets"]["parent"]["run"]["runId"]
    assert step_events(RUN, first, created, NOW)[0]["run"]["runId"] == before[0]["run"]["runId"]


def test_check_verdicts_travel_as_data_quality_assertions_on_the_output_of_a_fail_event() -> None:
    checked = PipelineSpec.model_validate({"steps": [
        step("extract", outputs=[{"namespace": "postgres://wh", "name": "raw.orders", "checks": [
            {"name": "enough", "rowCount": {"min": 100}},
            {"name": "no-drop", "change": {"maxDropPercent": 30}}]}]),
        step("load", "extract")]})
    created = plan(RUN, SPEC, start(SPEC, checked, NOW), {}, NOW, JobSettings("img")).status
    assert created is not None
    done = JobObservation("rev-1-extract", StepPhase.SUCCEEDED, 1, result={"rowsAffected": 42})
    after = plan(RUN, SPEC, created, {"extract": done}, NOW, JobSettings("img")).status
    assert after is not None
    [fail] = [e for e in step_events(RUN, created, after, NOW) if e["job"]["name"] == "extract"]
    assert fail["eventType"] == "FAIL"
    facet = fail["outputs"][0]["facets"]["dataQualityAssertions"]
    assert facet["assertions"] == [{"assertion": "enough", "success": False}]  # no-drop: no baseline, no assertion
    assert facet["_schemaURL"].endswith("DataQualityAssertionsDatasetFacet")
    parse_run_event(fail)


def test_two_pipelines_of_one_name_in_two_namespaces_emit_jobs_that_never_meet() -> None:
    first = start(SPEC, PIPELINE, NOW)
    created = plan(RUN, SPEC, first, {}, NOW, JobSettings("img")).status
    assert created is not None
    other = RunRef("rev-1", "team-b", RUN.uid.replace("0f3c", "1f3c"), "rev")
    ours, theirs = step_events(RUN, first, created, NOW)[0], step_events(other, first, created, NOW)[0]
    assert (ours["job"]["namespace"], ours["job"]["name"]) == ("data/rev", "extract")
    assert (theirs["job"]["namespace"], theirs["job"]["name"]) == ("team-b/rev", "extract")
    assert ours["run"]["facets"]["parent"]["job"] == {"namespace": "data/rev", "name": "rev"}
    assert theirs["run"]["facets"]["parent"]["job"] == {"namespace": "team-b/rev", "name": "rev"}
    parse_run_event(theirs)
