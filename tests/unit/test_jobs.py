"""Step Jobs: names, manifests, and the step state read back from a Job and its pods."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.runs.jobs import JobSettings, RunRef, build_job, job_name, observe_job
from headwater.spec.models import StepPhase, StepSpec
from manifests import step

pytestmark = pytest.mark.unit

RUN = RunRef(name="revenue-202611230600", namespace="data", uid="u-1", pipeline="revenue")
SETTINGS = JobSettings(step_image="ghcr.io/headwater-dev/headwater:0.1.0", ttl_seconds=600)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_short_names_are_run_dash_step() -> None:
    assert job_name("revenue-1", "extract-orders") == "revenue-1-extract-orders"


@given(run=st.from_regex(r"[a-z][a-z0-9-]{0,200}[a-z0-9]", fullmatch=True),
       step_id=st.from_regex(r"[a-z][a-z0-9-]{0,38}[a-z0-9]", fullmatch=True))
def test_every_job_name_is_a_stable_dns_label_of_at_most_63_characters(run: str, step_id: str) -> None:
    name = job_name(run, step_id)
    assert len(name) <= 63
    assert DNS_LABEL.match(name)
    assert job_name(run, step_id) == name


def test_long_names_that_share_a_prefix_still_differ() -> None:
    run = "a-very-long-pipeline-name-that-goes-on-and-on-202611230600"
    assert job_name(run, "extract-orders") != job_name(run, "extract-ordersx")


def test_a_container_step_becomes_a_job_with_retries_timeout_and_owner() -> None:
    spec = StepSpec.model_validate(step("extract", "container", retries=3, timeoutSeconds=120,
                                        command=["python", "-m", "extract"],
                                        podMetadata={"labels": {"team": "data"}, "annotations": {"a": "b"}}))
    job = build_job(RUN, spec, SETTINGS)
    assert job["metadata"]["name"] == "revenue-202611230600-extract"
    assert job["metadata"]["labels"]["headwater.dev/step"] == "extract"
    assert job["metadata"]["ownerReferences"][0] == {
        "apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun", "name": RUN.name, "uid": "u-1",
        "controller": True, "blockOwnerDeletion": True}
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 120
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"] == [{"type": "DisruptionTarget"}]
    pod = job["spec"]["template"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["labels"]["headwater.dev/run"] == RUN.name
    assert pod["metadata"]["annotations"] == {"a": "b"}
    assert pod["spec"]["containers"][0]["command"] == ["python", "-m", "extract"]


def test_a_sql_step_runs_the_headwater_sql_runner_with_the_connection_from_a_secret() -> None:
    spec = StepSpec.model_validate(step("load", "sql", sql="INSERT INTO t SELECT 1",
                                        connectionSecretRef={"name": "warehouse", "key": "url"}))
    container = build_job(RUN, spec, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == SETTINGS.step_image
    assert container["command"] == ["headwater", "step", "sql"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HEADWATER_SQL"]["value"] == "INSERT INTO t SELECT 1"
    assert env["HEADWATER_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "warehouse", "key": "url"}}


def _job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "r-s"}, "status": {"conditions": conditions or [], **status}}


def _pod(phase: str, message: str, created: str = "2026-11-23T06:00:00Z") -> dict[str, Any]:
    return {"metadata": {"creationTimestamp": created}, "status": {"phase": phase, "containerStatuses": [
        {"state": {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1, "message": message}}}]}}


def test_a_complete_job_reports_success_attempts_and_the_json_result() -> None:
    job = _job([{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-23T06:01:00Z"}],
               succeeded=1, failed=1, startTime="2026-11-23T06:00:00Z")
    seen = observe_job(job, [_pod("Failed", "boom"), _pod("Succeeded", json.dumps({"rowsAffected": 7}))])
    assert seen.phase == StepPhase.SUCCEEDED
    assert seen.attempts == 2
    assert seen.result == {"rowsAffected": 7}
    assert seen.finished_at == "2026-11-23T06:01:00Z"


def test_a_failed_job_reports_the_reason_and_the_last_attempts_message() -> None:
    job = _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}], failed=3)
    pods = [_pod("Failed", json.dumps({"error": "relation raw.orders does not exist"}), f"2026-11-23T06:0{i}:00Z")
            for i in range(3)]
    seen = observe_job(job, pods)
    assert seen.phase == StepPhase.FAILED
    assert seen.reason == "BackoffLimitExceeded"
    assert seen.attempts == 3
    assert seen.message is not None and "relation raw.orders does not exist" in seen.message


def test_a_job_with_an_active_pod_is_running_and_counts_earlier_failures() -> None:
    seen = observe_job(_job(active=1, failed=1), [])
    assert (seen.phase, seen.attempts) == (StepPhase.RUNNING, 2)


def test_a_job_without_pods_yet_is_pending() -> None:
    assert observe_job(_job(), []).phase == StepPhase.PENDING


def test_a_job_between_a_failed_attempt_and_its_retry_stays_running() -> None:
    seen = observe_job(_job(failed=1), [])
    assert (seen.phase, seen.attempts) == (StepPhase.RUNNING, 1)


def test_a_succeeded_pod_not_yet_counted_by_the_job_controller_keeps_the_step_running() -> None:
    job = _job()
    job["status"]["uncountedTerminatedPods"] = {"succeeded": ["uid-1"]}
    seen = observe_job(job, [])
    assert (seen.phase, seen.attempts) == (StepPhase.RUNNING, 1)


def test_text_from_a_pod_loses_its_nul_and_control_characters_and_is_bounded() -> None:
    job = _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}],
               failed=1)
    seen = observe_job(job, [_pod("Failed", "bad\x00 byte\x1b[31m " + "x" * 5000)])
    assert seen.message is not None and "\x00" not in seen.message and "\x1b" not in seen.message
    assert seen.message.startswith("limit; last attempt: bad byte[31m x")
    assert len(seen.message) <= 2 * 1024 and seen.message.endswith("[cut]")


def test_a_json_result_with_nul_in_its_strings_is_cleaned_and_an_oversized_one_dropped() -> None:
    done = _job([{"type": "Complete", "status": "True"}], succeeded=1)
    seen = observe_job(done, [_pod("Succeeded", json.dumps({"rowsAffected": 3, "note": "a\u0000b\ud800"}))])
    assert seen.result == {"rowsAffected": 3, "note": "ab\ufffd"}
    failed = _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}], failed=1)
    huge = observe_job(failed, [_pod("Failed", json.dumps({"error": "e" * 10_000}))])
    assert huge.result is None
    assert huge.message == "the step's result was dropped: it takes more than 4096 bytes"
