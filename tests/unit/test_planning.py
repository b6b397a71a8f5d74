"""The planner decides everything from the run, its snapshot, the observed Jobs and the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.runs.jobs import JobObservation, JobSettings, RunRef, job_name
from headwater.runs.planning import plan, start
from headwater.spec.models import (
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    RunPhase,
    StepPhase,
    StepReason,
)
from manifests import step

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
RUN = RunRef(name="rev-1", namespace="data", uid="uid-1", pipeline="rev")
SETTINGS = JobSettings(step_image="headwater:test", ttl_seconds=3600)


def job(step_id: str) -> str:
    return job_name(RUN.name, step_id)


def container(step_id: str, *deps: str) -> dict[str, Any]:
    return step(step_id, *deps)


def diamond(**spec: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"steps": [
        container("a"), container("b", "a"), container("c", "a"), container("d", "b", "c")], **spec})


def run_spec(**fields: Any) -> PipelineRunSpec:
    return PipelineRunSpec.model_validate({"pipelineRef": {"name": "rev"}, **fields})


def done(step_id: str, attempts: int = 1, result: dict[str, Any] | None = None) -> JobObservation:
    return JobObservation(job(step_id), StepPhase.SUCCEEDED, attempts, "2026-11-23T06:00:00Z",
                          "2026-11-23T06:00:05Z", "Completed", None, result)


def failed(step_id: str, reason: str = "BackoffLimitExceeded") -> JobObservation:
    return JobObservation(job(step_id), StepPhase.FAILED, 3, "2026-11-23T06:00:00Z",
                          "2026-11-23T06:00:09Z", reason, "Job has reached the specified backoff limit")


def running(step_id: str) -> JobObservation:
    return JobObservation(job(step_id), StepPhase.RUNNING, 1, "2026-11-23T06:00:00Z")


def advance(status: PipelineRunStatus, observed: dict[str, JobObservation], spec: PipelineRunSpec | None = None,
            at: datetime = NOW) -> tuple[PipelineRunStatus, list[str], list[str]]:
    """One planning pass; returns the new status and the names of Jobs created and deleted."""
    out = plan(RUN, spec or run_spec(), status, observed, at, SETTINGS)
    new = out.status or status
    return new, [j["metadata"]["name"] for j in out.create], out.delete


def phases(status: PipelineRunStatus) -> dict[str, str]:
    return {s.name: s.phase.value for s in status.steps}


def test_a_new_run_snapshots_the_pipeline_and_starts_every_step_pending() -> None:
    status = start(run_spec(), diamond(), NOW)
    assert status.phase == RunPhase.RUNNING
    assert status.pipeline_spec == diamond()
    assert phases(status) == dict.fromkeys("abcd", "Pending")


def test_only_steps_whose_dependencies_succeeded_get_jobs() -> None:
    status, created, _ = advance(start(run_spec(), diamond(), NOW), {})
    assert created == [job("a")]
    status, created, _ = advance(status, {"a": running("a")})
    assert created == []
    status, created, _ = advance(status, {"a": done("a")})
    assert created == [job("b"), job("c")]  # independent steps run in parallel
    status, created, _ = advance(status, {"b": done("b"), "c": running("c")})
    assert created == []
    status, created, _ = advance(status, {"c": done("c")})
    assert created == [job("d")]
    status, created, _ = advance(status, {"d": done("d")})
    assert status.phase == RunPhase.SUCCEEDED
    assert status.progress == "4/4"
    assert status.conditions[0].status == "True"


def test_planning_twice_on_the_same_observation_changes_nothing_the_second_time() -> None:
    first = plan(RUN, run_spec(), start(run_spec(), diamond(), NOW), {}, NOW, SETTINGS)
    assert first.status is not None
    pending = {"a": JobObservation(job("a"), StepPhase.PENDING, reason="JobCreated")}
    second = plan(RUN, run_spec(), first.status, pending, NOW, SETTINGS)
    assert second.status is None
    assert second.create == []


def test_a_failed_step_skips_everything_downstream_while_an_independent_branch_finishes() -> None:
    spec = PipelineSpec.model_validate({"steps": [
        container("a"), container("b", "a"), container("c"), container("d", "b")]})
    status, created, _ = advance(start(run_spec(), spec, NOW), {})
    assert created == [job("a"), job("c")]
    status, _, _ = advance(status, {"a": failed("a"), "c": running("c")})
    assert phases(status) == {"a": "Failed", "b": "Skipped", "c": "Running", "d": "Skipped"}
    assert status.steps[3].reason == "UpstreamFailed"
    assert status.phase == RunPhase.RUNNING
    status, _, _ = advance(status, {"c": done("c")})
    assert status.phase == RunPhase.FAILED
    assert status.steps[0].reason == "BackoffLimitExceeded"
    assert status.progress == "1/4"


def test_fail_fast_cancels_running_steps_and_skips_pending_ones() -> None:
    spec = PipelineSpec.model_validate({"failFast": True, "steps": [
        container("a"), container("b"), container("c", "b")]})
    status, _, _ = advance(start(run_spec(), spec, NOW), {})
    status, _, deleted = advance(status, {"a": failed("a"), "b": running("b")})
    assert deleted == [job("b")]
    assert phases(status) == {"a": "Failed", "b": "Cancelled", "c": "Skipped"}
    assert status.phase == RunPhase.FAILED


def test_cancel_deletes_running_jobs_and_ends_the_run_cancelled() -> None:
    status, _, _ = advance(start(run_spec(), diamond(), NOW), {})
    status, _, _ = advance(status, {"a": done("a")})
    status, created, deleted = advance(status, {"b": running("b"), "c": running("c")}, run_spec(cancel=True))
    assert created == []
    assert sorted(deleted) == [job("b"), job("c")]
    assert phases(status) == {"a": "Succeeded", "b": "Cancelled", "c": "Cancelled", "d": "Cancelled"}
    assert status.phase == RunPhase.CANCELLED


def test_max_parallelism_bounds_the_jobs_running_at_once() -> None:
    spec = PipelineSpec.model_validate({"maxParallelism": 2, "steps": [container(x) for x in "abcde"]})
    status, created, _ = advance(start(run_spec(), spec, NOW), {})
    assert created == [job("a"), job("b")]
    status, created, _ = advance(status, {"a": done("a"), "b": running("b")})
    assert created == [job("c")]
    assert "maxParallelism 2" in (status.steps[3].message or "")


def test_retry_of_reruns_only_failed_and_skipped_steps() -> None:
    earlier, _, _ = advance(start(run_spec(), diamond(), NOW), {})
    earlier, _, _ = advance(earlier, {"a": done("a", result={"rowsAffected": 5})})
    earlier, _, _ = advance(earlier, {"b": failed("b"), "c": done("c")})
    assert earlier.phase == RunPhase.FAILED
    retry = run_spec(retryOf="rev-1", trigger="retry")
    status = start(retry, diamond(), NOW, earlier)
    assert phases(status) == {"a": "Succeeded", "b": "Pending", "c": "Succeeded", "d": "Pending"}
    assert status.steps[0].reason == "Reused"
    assert status.steps[0].result == {"rowsAffected": 5}
    status, created, _ = advance(status, {}, retry)
    assert created == [job("b")]


def test_from_step_runs_exactly_its_downstream_closure() -> None:
    spec = run_spec(fromStep="b")
    status = start(spec, diamond(), NOW)
    assert phases(status) == {"a": "Skipped", "b": "Pending", "c": "Skipped", "d": "Pending"}
    status, created, _ = advance(status, {}, spec)
    assert created == [job("b")]
    status, created, _ = advance(status, {"b": done("b")}, spec)
    assert created == [job("d")]
    status, _, _ = advance(status, {"d": done("d")}, spec)
    assert status.phase == RunPhase.SUCCEEDED
    assert status.progress == "2/2"


def test_an_invalid_pipeline_fails_the_run_without_creating_jobs() -> None:
    cyclic = PipelineSpec.model_validate({"steps": [container("a", "c"), container("b", "a"), container("c", "b")]})
    status = start(run_spec(), cyclic, NOW)
    assert status.phase == RunPhase.FAILED
    assert "dependency cycle" in status.conditions[0].message
    assert status.conditions[0].reason == "InvalidPipeline"
    out = plan(RUN, run_spec(), status, {}, NOW, SETTINGS)
    assert out.create == [] and out.status is None


def test_unknown_from_step_and_missing_retry_target_are_reported() -> None:
    status = start(run_spec(fromStep="nope"), diamond(), NOW)
    assert status.phase == RunPhase.FAILED
    assert "spec.fromStep: unknown step 'nope'" in status.conditions[0].message
    status = start(run_spec(retryOf="gone", trigger="retry"), diamond(), NOW, None)
    assert "spec.retryOf: PipelineRun 'gone' was not found" in status.conditions[0].message


def test_a_job_deleted_before_it_finished_fails_the_step_instead_of_running_it_again() -> None:
    status, _, _ = advance(start(run_spec(), diamond(), NOW), {})
    status, created, _ = advance(status, {})
    assert created == []
    assert status.steps[0].phase == StepPhase.FAILED
    assert status.steps[0].reason == "JobDeleted"


def test_finished_step_outcomes_survive_their_jobs_being_garbage_collected() -> None:
    status, _, _ = advance(start(run_spec(), diamond(), NOW), {})
    status, _, _ = advance(status, {"a": done("a")})
    status, created, _ = advance(status, {"b": running("b"), "c": running("c")})
    assert created == []
    assert status.steps[0].phase == StepPhase.SUCCEEDED


def test_events_name_the_jobs_and_the_failures() -> None:
    status = start(run_spec(), diamond(), NOW)
    out = plan(RUN, run_spec(), status, {}, NOW, SETTINGS)
    assert [e.message for e in out.events] == [f"Created Job {job('a')} for step a"]
    assert out.status is not None
    out = plan(RUN, run_spec(), out.status, {"a": failed("a")}, NOW + timedelta(seconds=9), SETTINGS)
    messages = [e.message for e in out.events]
    assert messages[0].startswith("Step a failed: BackoffLimitExceeded")
    assert "Step b skipped: upstream step a failed" in messages
    assert out.events[-1].reason == "RunFailed"
    assert out.status is not None and out.status.duration == "9s"


def test_a_finished_run_plans_nothing() -> None:
    status, _, _ = advance(start(run_spec(), diamond(), NOW), {})
    status, _, _ = advance(status, {"a": failed("a")})
    assert status.phase == RunPhase.FAILED
    out = plan(RUN, run_spec(), status, {"a": failed("a")}, NOW, SETTINGS)
    assert out.status is None and out.create == [] and out.events == []


PSA = 'pods "x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true'


def test_a_step_whose_pods_cannot_be_created_shows_why_and_says_so_once_in_an_event() -> None:
    status = start(run_spec(), diamond(), NOW)
    out = plan(RUN, run_spec(), status, {}, NOW, SETTINGS)
    assert out.status is not None and out.recheck_after is not None  # the Job has no pod yet: look again soon
    blocked = {"a": JobObservation(job("a"), StepPhase.PENDING, reason="FailedCreate", message=PSA)}
    out = plan(RUN, run_spec(), out.status, blocked, NOW, SETTINGS)
    assert out.status is not None
    step = out.status.steps[0]
    assert (step.phase, step.reason, step.message) == (StepPhase.PENDING, "FailedCreate", PSA)
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "FailedCreate")]
    assert PSA in out.events[0].message
    assert out.recheck_after is None  # the reason is known; the Job's own events and the resync follow it
    again = plan(RUN, run_spec(), out.status, blocked, NOW, SETTINGS)
    assert again.status is None and again.events == []


def test_the_failure_at_the_deadline_of_a_step_that_never_started_names_why_it_never_did() -> None:
    status = start(run_spec(), diamond(), NOW)
    status = plan(RUN, run_spec(), status, {}, NOW, SETTINGS).status or status
    pulling = {"a": JobObservation(job("a"), StepPhase.RUNNING, 1, reason="ImagePullBackOff",
                                   message='Back-off pulling image "nope:1"', starting=True)}
    status = plan(RUN, run_spec(), status, pulling, NOW, SETTINGS).status or status
    deadline = {"a": JobObservation(job("a"), StepPhase.FAILED, 1, reason="DeadlineExceeded",
                                    message="Job was active longer than specified deadline")}
    out = plan(RUN, run_spec(), status, deadline, NOW + timedelta(seconds=300), SETTINGS)
    assert out.status is not None and out.status.phase == RunPhase.FAILED
    step = out.status.steps[0]
    assert step.reason == "ImagePullBackOff"
    assert step.message == ('Job was active longer than specified deadline (DeadlineExceeded); the step never '
                            'started: Back-off pulling image "nope:1"')
    assert out.status.conditions[0].message == "failed steps: a (ImagePullBackOff)"


def test_a_step_naming_a_service_account_off_the_allow_list_fails_without_a_job_and_says_why() -> None:
    pipeline = PipelineSpec.model_validate({"steps": [
        container("a"), {**container("b", "a"), "serviceAccountName": "cluster-admin"}, container("c", "b")]})
    settings = JobSettings(step_image="headwater:test", allowed_service_accounts=frozenset({"etl"}))
    status = start(run_spec(), pipeline, NOW)
    out = plan(RUN, run_spec(), status, {"a": done("a")}, NOW, settings)
    assert out.create == []
    assert out.status is not None
    steps = {s.name: s for s in out.status.steps}
    assert (steps["b"].phase, steps["b"].reason) == (StepPhase.FAILED, StepReason.SERVICE_ACCOUNT_NOT_ALLOWED)
    assert steps["b"].message is not None and "'cluster-admin' is not allowed" in steps["b"].message
    assert (steps["c"].phase, steps["c"].reason) == (StepPhase.SKIPPED, StepReason.UPSTREAM_FAILED)
    assert out.status.phase == RunPhase.FAILED
    assert any(e.reason == "StepFailed" and "ServiceAccountNotAllowed" in e.message for e in out.events)


def test_the_pipelines_security_context_reaches_every_steps_job() -> None:
    pipeline = diamond(securityContext={"runAsUser": 1000})
    out = plan(RUN, run_spec(), start(run_spec(), pipeline, NOW), {}, NOW, SETTINGS)
    [job] = out.create
    assert job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] == 1000


def test_the_status_that_ends_a_run_says_its_after_finish_effects_are_still_to_be_applied() -> None:
    status, _, _ = advance(start(run_spec(), diamond(), NOW), {})
    assert "Settled" not in {c.type for c in status.conditions}
    status, _, _ = advance(status, {"a": failed("a")})
    assert status.phase == RunPhase.FAILED
    settled = next(c for c in status.conditions if c.type == "Settled")
    assert (settled.status, settled.reason) == ("False", "Pending")
